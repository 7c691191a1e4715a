"""The embedded stack's error: a :class:`~dslc.dev.console.CliError`, so `dslc up`, `down`
and `status` print it as one line that says what to do."""

from __future__ import annotations

from dslc.dev.console import CliError


class StackError(CliError):
    """A problem starting, stopping or reaching the embedded stack."""
