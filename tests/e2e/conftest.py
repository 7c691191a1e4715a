"""The real embedded stack (Airflow 3 + MLflow) on free loopback ports, once for tests/e2e.

The stack gets its own DSLC_HOME (so its own AIRFLOW_HOME, metadata DB, lake and logs) in a
temp dir; ``dslc.stack`` builds the child environment explicitly, so the test session's
AIRFLOW_HOME set by the root conftest never leaks into the stack's processes.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dslc.settings import Settings, get_settings

_KEYS = (
    "DSLC_HOME",
    "DSLC_AIRFLOW_PORT",
    "DSLC_MLFLOW_PORT",
    "DSLC_LAKE_URL",
    "DSLC_AIRFLOW_PASSWORD",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="package")
def e2e_stack() -> Iterator[Settings]:
    """Start the stack with ``dslc.stack.up()``; stop it with ``down()`` at the end."""
    from dslc import stack

    saved = {key: os.environ.get(key) for key in _KEYS}
    home = Path(tempfile.mkdtemp(prefix="dslc-e2e-"))
    airflow_port = free_port()
    mlflow_port = free_port()
    while mlflow_port == airflow_port:
        mlflow_port = free_port()
    os.environ["DSLC_HOME"] = str(home)
    os.environ["DSLC_AIRFLOW_PORT"] = str(airflow_port)
    os.environ["DSLC_MLFLOW_PORT"] = str(mlflow_port)
    os.environ.pop("DSLC_LAKE_URL", None)  # the stack's default lake: <home>/lake
    os.environ.pop("DSLC_AIRFLOW_PASSWORD", None)  # use the password the stack generates
    get_settings.cache_clear()
    settings = get_settings()
    try:
        stack.up(timeout=float(os.environ.get("DSLC_E2E_UP_TIMEOUT", "300")), settings=settings)
        yield settings
    finally:
        stack.down(settings=settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        if os.environ.get("DSLC_E2E_KEEP") != "1":
            shutil.rmtree(home, ignore_errors=True)
