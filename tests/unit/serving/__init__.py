"""Unit tests of dslc.serving."""
