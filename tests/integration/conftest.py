"""Integration fixtures: a migrated Airflow metadata DB (SQLite, per test session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Run ``airflow db migrate`` once for the session's AIRFLOW_HOME."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def dagbag(airflow_db: None):
    """Every DAG in dags/, parsed once."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag
