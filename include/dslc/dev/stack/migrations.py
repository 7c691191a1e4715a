"""The Airflow metadata DB's schema: ``airflow db migrate`` before the first start, and again
only after an Airflow upgrade (a marker in AIRFLOW_HOME records the version it ran for)."""

from __future__ import annotations

import subprocess
from importlib import metadata
from typing import TYPE_CHECKING

from dslc.dev.stack.environment import airflow_env
from dslc.dev.stack.errors import StackError
from dslc.dev.stack.paths import airflow_home, executable, log_path
from dslc.dev.stack.processes import print_tail

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from dslc.settings import Settings


def _migration_marker(settings: Settings) -> Path:
    return airflow_home(settings) / ".dslc-db-migrated"


def _airflow_version() -> str:
    try:
        return metadata.version("apache-airflow-core")
    except metadata.PackageNotFoundError:
        return metadata.version("apache-airflow")


def migrate_if_needed(settings: Settings, console: Console) -> None:
    """Run ``airflow db migrate`` once per DB and Airflow version."""
    home = airflow_home(settings)
    marker = _migration_marker(settings)
    version = _airflow_version()
    db = home / "airflow.db"
    if db.exists() and marker.exists() and marker.read_text().strip() == version:
        return
    home.mkdir(parents=True, exist_ok=True)
    log = log_path(settings, "db-migrate")
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        console.status("Migrating the Airflow metadata DB (first start only)..."),
        log.open("ab") as out,
    ):
        result = subprocess.run(
            [executable("airflow"), "db", "migrate"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=airflow_env(settings),
            cwd=settings.state_dir,
            check=False,
        )
    if result.returncode != 0:
        print_tail(console, settings, "db-migrate")
        raise StackError(f"`airflow db migrate` failed (exit {result.returncode}); see {log}")
    marker.write_text(version + "\n")
