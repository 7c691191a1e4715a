"""Structural tests: the package layout and its import rules."""
