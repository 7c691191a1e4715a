"""Where the stack keeps its state, all under ``<state>`` (``DSLC_HOME``): ``airflow/`` (the
Airflow home and metadata DB), ``logs/<name>.log``, ``pids/<name>.pid``; and where it finds the
programs it starts (the venv's ``bin``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dslc.dev.stack.errors import StackError

if TYPE_CHECKING:
    from dslc.settings import Settings

SIMPLE_AUTH_FILE_NAME = "simple_auth_manager_passwords.json.generated"


def airflow_home(settings: Settings) -> Path:
    """AIRFLOW_HOME: the metadata DB, the password file, task logs."""
    return settings.state_dir / "airflow"


def logs_dir(settings: Settings) -> Path:
    """Where each service logs (``<name>.log``)."""
    return settings.state_dir / "logs"


def _pids_dir(settings: Settings) -> Path:
    return settings.state_dir / "pids"


def log_path(settings: Settings, name: str) -> Path:
    """The log file of service ``name``."""
    return logs_dir(settings) / f"{name}.log"


def pid_path(settings: Settings, name: str) -> Path:
    """The record of service ``name``'s process (see ``processes.ProcessRecord``)."""
    return _pids_dir(settings) / f"{name}.pid"


def password_file(settings: Settings) -> Path:
    """Where SimpleAuthManager keeps (and we pre-seed) the admin password."""
    return airflow_home(settings) / SIMPLE_AUTH_FILE_NAME


def bin_dir() -> Path:
    """The venv's bin directory (Airflow spawns ``airflow`` by name, so it must be on PATH)."""
    return Path(sys.prefix) / "bin"


def executable(name: str) -> str:
    """The path of program ``name`` installed in the venv."""
    candidate = bin_dir() / name
    if candidate.exists():
        return str(candidate)
    sibling = Path(sys.executable).parent / name
    if sibling.exists():
        return str(sibling)
    raise StackError(f"`{name}` is not installed next to {sys.executable}: run `make install`")
