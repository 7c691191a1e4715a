"""Unit tests of the use case boundary and the flights use case."""
