"""Unit tests of dslc.monitoring."""
