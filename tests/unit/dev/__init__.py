"""Unit tests of dslc.dev."""
