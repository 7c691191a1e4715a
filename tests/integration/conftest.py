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
    """Run ``airflow db migrate`` and create the stack's pools once for the session's
    AIRFLOW_HOME (as ``dslc up`` does)."""
    from dslc.dev.stack.migrations import POOLS

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    airflow = str(Path(sys.executable).parent / "airflow")
    commands = [["db", "migrate"]]
    commands += [["pools", "set", name, str(slots), why] for name, (slots, why) in POOLS.items()]
    for args in commands:
        subprocess.run([airflow, *args], check=True, env=env, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def dagbag(airflow_db: None):
    """Every DAG in dags/, parsed once."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


# -- the train DAG: real feature partitions and a real MLflow server ---------------------------

TRAIN_FIRST_DAY = "2013-01-01"
TRAIN_LAST_DAY = "2013-01-21"


@pytest.fixture(scope="session")
def feature_lake(tmp_path_factory: pytest.TempPathFactory):
    """A file:// lake with 21 days of features built by the real ingest functions (once)."""
    import datetime as dt

    from dslc.data import ingest, sources
    from dslc.lake import Lake

    lake = Lake(f"file://{tmp_path_factory.mktemp('feature-lake') / 'lake'}")
    first, last = dt.date.fromisoformat(TRAIN_FIRST_DAY), dt.date.fromisoformat(TRAIN_LAST_DAY)
    sources.replay(lake, first, last)
    for d in sources.days(first, last):
        ingest.extract_day(lake, d.isoformat())
        ingest.validate_day(lake, d.isoformat())
        ingest.build_features(lake, d.isoformat())
    return lake


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow server on a free loopback port with a temp SQLite DB (session-wide)."""
    from tests.integration.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()
