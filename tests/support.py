"""Helpers shared by the tests and the benchmarks that start real services on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dslc.settings import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dslc_env(**overrides: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block, then restore them.

    The settings cache is cleared on the way in and out so code under test reads the block's
    values.
    """
    from dslc.settings import get_settings

    saved = {key: os.environ.get(key) for key in overrides}
    try:
        for key, value in overrides.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        get_settings.cache_clear()


@contextmanager
def ephemeral_stack(prefix: str = "dslc-stack-", up_timeout: float = 300.0) -> Iterator[Settings]:
    """The real embedded stack on free ports with its own DSLC_HOME; stopped and removed after.

    Set DSLC_E2E_KEEP=1 to keep the state dir (logs) for a post-mortem.
    """
    from dslc import stack
    from dslc.settings import get_settings

    home = Path(tempfile.mkdtemp(prefix=prefix))
    airflow_port = free_port()
    ports = {airflow_port}
    while len(ports) < 3:
        ports.add(free_port())
    mlflow_port, serving_port = sorted(ports - {airflow_port})
    with dslc_env(
        DSLC_HOME=str(home),
        DSLC_AIRFLOW_PORT=str(airflow_port),
        DSLC_MLFLOW_PORT=str(mlflow_port),
        DSLC_SERVING_PORT=str(serving_port),
        DSLC_SERVING_ADMIN_TOKEN=None,  # use the token the stack generates
        DSLC_SERVING_URL=None,  # the stack's own serving process
        DSLC_LAKE_URL=None,  # the stack's default lake: <home>/lake
        DSLC_AIRFLOW_PASSWORD=None,  # use the password the stack generates
    ):
        settings = get_settings()
        try:
            stack.up(timeout=up_timeout, settings=settings)
            yield settings
        finally:
            stack.down(settings=settings)
            if os.environ.get("DSLC_E2E_KEEP") != "1":
                shutil.rmtree(home, ignore_errors=True)
