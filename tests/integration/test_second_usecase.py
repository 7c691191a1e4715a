"""A use case the stages have never heard of runs the whole loop through the real DAGs.

``tests.usecases.sensors`` (synthetic machine readings, shifted from 2024-01-15 on) is selected
with ``DSLC_USECASE`` only. Through ``dag.test()``: ``ingest`` lands, validates and builds its
features day by day; ``train`` makes and promotes a first champion; ``drift_monitor`` finds the
shift, waits for it to persist, and triggers ``train``, whose run registers a new version
trained on the shifted days. No line of ``dslc`` or ``dags/`` names the use case.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from dslc.data import sources
from dslc.lake import Lake
from tests.integration.conftest import ROOT
from tests.support import dslc_env
from tests.usecases import sensors

pytestmark = pytest.mark.integration

TRAIN_DAYS = [dt.date(2024, 1, d) for d in range(1, 9)]  # before the shift
SHIFTED_DAYS = [dt.date(2024, 1, 15), dt.date(2024, 1, 16)]
RUN_PREFIX = "drift__"


def _train_runs() -> dict[str, dict[str, Any]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "train")).all()
        return {r.run_id: dict(r.conf or {}) for r in runs if "2024-01" in r.run_id}


def _delete_train_runs() -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for r in session.scalars(select(DagRun).where(DagRun.dag_id == "train")).all():
            if "2024-01" in r.run_id:
                session.delete(r)


@pytest.fixture
def sensors_stack(tmp_path, mlflow_server, airflow_db) -> Iterator[tuple[Lake, dict[str, Any]]]:
    """Settings selecting the sensors use case, a fresh lake, and every DAG parsed under them."""
    from airflow.dag_processing.dagbag import DagBag

    from dslc.settings import get_settings

    lake = Lake(f"file://{tmp_path / 'lake'}")
    with dslc_env(
        DSLC_USECASE="tests.usecases.sensors",
        DSLC_LAKE_URL=lake.url,
        DSLC_MLFLOW_TRACKING_URI=mlflow_server.url,
        DSLC_MODEL_NAME=None,
        DSLC_DATASET=None,
        DSLC_TRAIN_MIN_DAYS="3",
        DSLC_TRAIN_MIN_ROWS="1000",
        DSLC_LANDING_POKE_SECONDS="1",
        DSLC_LANDING_TIMEOUT_SECONDS="30",
    ):
        get_settings.cache_clear()
        _delete_train_runs()
        bag = DagBag(str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        yield lake, bag.dags
        _delete_train_runs()
    get_settings.cache_clear()


def _run(dag: Any, day: dt.date, conf: dict[str, Any] | None = None) -> dict[str, str]:
    when = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    dr = dag.test(logical_date=when, run_after=when, run_conf=conf or {})
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


TRAIN_CONF = {"max_iter": 30, "valid_days": 2, "holdout_days": 2, "deploy": False}
DRIFT_CONF = {"window_days": 1, "retrain": None, "persistence": 2, "cooldown_days": 7}


def test_an_unknown_use_case_runs_ingest_train_and_a_drift_triggered_retrain(sensors_stack):
    from dslc.model import registry
    from dslc.monitoring import monitor as dm
    from dslc.settings import get_settings

    lake, dags = sensors_stack
    settings = get_settings()
    assert (settings.dataset, settings.model_name) == ("readings", "sensors_failure")
    name = settings.model_name

    # ingest: land -> extract -> validate (GX suite derived from the use case) -> features
    for day in [*TRAIN_DAYS, *SHIFTED_DAYS]:
        sources.replay(lake, day, day)
        states = _run(dags["ingest"], day)
        assert set(states.values()) == {"success"}, (day, states)
    features = lake.read_partition(Lake.partition("features", "readings", "2024-01-16"))
    assert list(features.columns) == sensors.FEATURES.columns
    assert len(features) == sensors.ROWS_PER_DAY

    # train: the first champion, on the days before the shift
    conf = {**TRAIN_CONF, "window_end": "2024-01-08", "window_days": 8, "reason": "first"}
    states = _run(dags["train"], dt.date(2024, 1, 8), conf)
    assert states["promote"] == "success" and states["deploy"] == "skipped", states
    c = registry.client()
    champion = registry.get_alias(c, name, registry.CHAMPION)
    assert champion is not None
    assert c.get_registered_model(name).description.startswith("Machine failure")

    # drift_monitor: a day like the training data is stable; the shift drifts, and the second
    # drifted day in a row triggers `train`
    states = _run(dags["drift_monitor"], TRAIN_DAYS[-1], DRIFT_CONF)
    assert states["compute_drift"] == "success" and states["trigger_retraining"] == "skipped"
    stable = json.loads(lake.read_text(dm.report_key("2024-01-08"), dm.REPORT_JSON))
    assert stable["dataset"]["drifted"] is False
    _run(dags["drift_monitor"], SHIFTED_DAYS[0], DRIFT_CONF)
    first_drift = json.loads(lake.read_text(dm.report_key("2024-01-15"), dm.DECISION_JSON))
    assert first_drift["trigger"] is False
    states = _run(dags["drift_monitor"], SHIFTED_DAYS[1], DRIFT_CONF)
    assert states["trigger_retraining"] == "success", states
    report = json.loads(lake.read_text(dm.report_key("2024-01-16"), dm.REPORT_JSON))
    drifted = {f["feature"] for f in report["dataset"]["drifted_features"]}
    assert {"temperature", "vibration"} <= drifted

    triggered = _train_runs()
    run_id = dm.trigger_run_id("2024-01-16", str(champion.version))
    assert run_id in triggered, triggered
    retrain_conf = triggered[run_id]
    assert retrain_conf["window_end"] == "2024-01-16"

    # the triggered retrain: a new version, trained on the shifted days, says why it exists
    states = _run(dags["train"], SHIFTED_DAYS[1], {**TRAIN_CONF, **retrain_conf})
    assert states["register"] == "success", states
    versions = c.search_model_versions(f"name = '{name}'")
    newest = max(versions, key=lambda v: int(v.version))
    assert int(newest.version) == int(champion.version) + 1
    assert newest.tags["dslc.window"].endswith("..2024-01-16")
    assert "drift" in newest.tags["dslc.trigger_reason"]
    assert newest.tags["dslc.promotion"] in {"promoted", "rejected"}
