"""Unit tests of dslc.deploy."""
