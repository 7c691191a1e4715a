"""What the ``dslc`` commands print: their console, and the error a user can act on.

:class:`CliError` is the base of the tooling's errors (the stack's ``StackError``, the REST
client's ``AirflowApiError``); :func:`reported` prints one as a single line on stderr, and the
command exits 1 without a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer

from dslc.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console


class CliError(UserError, typer.Exit):
    """An error the user can act on: the CLI prints ``message`` (no traceback) and exits 1.

    It is a :class:`typer.Exit` so Typer exits quietly once :func:`reported` printed it;
    library callers and tests catch it like any exception and read ``message``.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Print a :class:`CliError`'s message on stderr before it propagates."""
    try:
        yield
    except CliError as e:
        from rich.console import Console
        from rich.text import Text

        error = Text.assemble(("Error: ", "bold red"), e.message)
        Console(stderr=True, highlight=False, soft_wrap=True).print(error)
        raise


def make_console() -> Console:
    """The stdout console of the commands: no highlighting, long lines left unbroken."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)
