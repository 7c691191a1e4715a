"""Unit tests of dslc.data."""
