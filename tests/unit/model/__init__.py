"""Unit tests of dslc.model."""
