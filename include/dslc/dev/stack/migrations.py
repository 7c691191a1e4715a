"""The Airflow metadata DB's schema and the pools the DAGs use: ``airflow db migrate`` and
``airflow pools set`` before the first start, and again only after an Airflow upgrade or a change
of the pools (a marker in AIRFLOW_HOME records what it ran for)."""

from __future__ import annotations

import subprocess
from importlib import metadata
from typing import TYPE_CHECKING

from dslc.dev.stack.distributed import load_profile
from dslc.dev.stack.environment import airflow_env
from dslc.dev.stack.errors import StackError
from dslc.dev.stack.paths import airflow_home, executable, log_path
from dslc.dev.stack.processes import print_tail
from dslc.model.registry import PROMOTE_POOL

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


# Pools the DAGs' tasks name (a task in a missing pool is never scheduled): name -> (slots, why).
POOLS = {
    PROMOTE_POOL: (
        1,
        "promote, deploy and drift_monitor's reconcile: one at a time, as each moves the "
        "champion alias or what is served",
    ),
}


def _run(settings: Settings, console: Console, args: list[str], what: str) -> None:
    log = log_path(settings, "db-migrate")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        result = subprocess.run(
            [executable("airflow"), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=airflow_env(settings),
            cwd=settings.state_dir,
            check=False,
        )
    if result.returncode != 0:
        print_tail(console, settings, "db-migrate")
        raise StackError(f"`airflow {what}` failed (exit {result.returncode}); see {log}")


def migrate_if_needed(settings: Settings, console: Console) -> None:
    """Run ``airflow db migrate`` and create the pools, once per DB, Airflow version and pools."""
    home = airflow_home(settings)
    marker = _migration_marker(settings)
    pools = " ".join(f"{name}:{slots}" for name, (slots, _) in sorted(POOLS.items()))
    version = f"{_airflow_version()} pools={pools}"
    profile = load_profile(settings)
    if profile is None:
        present = (home / "airflow.db").exists()
    else:
        # The marker names the database: a new one (another token) is migrated again.
        version += f" db={profile.airflow_db}"
        present = True
    if present and marker.exists() and marker.read_text().strip() == version:
        return
    home.mkdir(parents=True, exist_ok=True)
    with console.status("Migrating the Airflow metadata DB (first start only)..."):
        _run(settings, console, ["db", "migrate"], "db migrate")
        for name, (slots, why) in POOLS.items():
            _run(settings, console, ["pools", "set", name, str(slots), why], f"pools set {name}")
    marker.write_text(version + "\n")
