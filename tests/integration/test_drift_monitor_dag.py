"""The drift_monitor DAG with ``dag.test()`` against a real MLflow server holding a champion
trained on real feature partitions (its reference profile logged by ``register``).

Each test gets its own lake holding the days it scores, built from the champion's training
rows: a *stable* day is a sample of them (same distribution as the reference); a *shifted* day
is another sample with warmer, wetter, windier weather and a different carrier mix. What is
checked is what a user sees: the task states, the report and decision files in the lake, the
``train`` runs in Airflow's metadata DB (and their conf), the drift run in MLflow.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dslc.lake import Lake
from dslc.model.spec import features_of
from dslc.model.split import load_frame, read_split
from dslc.monitoring import monitor as dm
from tests.integration.conftest import ROOT, TRAIN_LAST_DAY
from tests.support import dslc_env, train_and_register

pytestmark = pytest.mark.integration

STABLE, SHIFTED, OTHER_SHIFTED = "2013-01-22", "2013-01-23", "2013-01-24"
TEST_RUN_PREFIXES = ("drift__", "manual__drift_test")
DEFAULT_CONF = {"window_days": 1, "retrain": None, "persistence": 2, "cooldown_days": 7}


@pytest.fixture(scope="module")
def champion(feature_lake: Lake, mlflow_server) -> dict[str, Any]:
    """A champion (version 1 of a fresh model) trained on 2013-01-01..21 through the same
    functions the train DAG calls; returns its name, version and training rows."""
    from dslc.model import registry

    name = f"flights_late_drift_{uuid.uuid4().hex[:8]}"
    with dslc_env(
        DSLC_LAKE_URL=feature_lake.url,
        DSLC_MLFLOW_TRACKING_URI=mlflow_server.url,
        DSLC_MODEL_NAME=name,
        DSLC_TRAIN_MIN_ROWS="1000",
    ):
        made = train_and_register(
            feature_lake,
            name,
            {"window_end": TRAIN_LAST_DAY, "window_days": 21, "max_iter": 50},
            run_prefix="manual__drift_champion",
            promote=True,
        )
        version = made["version"]
        split = read_split(feature_lake, made["split"])
        rows = load_frame(feature_lake, split, "train")
        model = registry.load_version(name, version)
    return {"name": name, "version": version, "rows": rows, "model": model}


def stable_day(rows: pd.DataFrame, ds: str, seed: int, n: int = 3000) -> pd.DataFrame:
    """``n`` training rows as day ``ds`` (unique flight keys): the reference's distribution."""
    day = rows.sample(n=n, random_state=seed).reset_index(drop=True)
    day["ds"] = ds
    day["flight"] = np.arange(1, n + 1, dtype="int64")
    return day


def shifted_day(rows: pd.DataFrame, ds: str, seed: int) -> pd.DataFrame:
    day = stable_day(rows, ds, seed)
    day["temp"] += 25
    day["dewp"] += 25
    day["humid"] = (day["humid"] + 30).clip(upper=100)
    day["pressure"] -= 25
    day["wind_speed"] += 15
    day.loc[day.index % 2 == 0, "carrier"] = "UA"  # half the flights move to one carrier
    return day


def publish(lake: Lake, day: pd.DataFrame) -> None:
    lake.publish(Lake.partition("features", "flights", day["ds"].iloc[0]), day)


@pytest.fixture
def drift(champion, mlflow_server, tmp_path, monkeypatch, airflow_db):
    """A fresh lake, settings pointing at it and the champion, the parsed DAG; cleans up the
    ``train`` runs a test made."""
    from airflow.dag_processing.dagbag import DagBag

    from dslc.settings import get_settings

    lake = Lake(f"file://{tmp_path / 'lake'}")
    monkeypatch.setenv("DSLC_LAKE_URL", lake.url)
    monkeypatch.setenv("DSLC_MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("DSLC_MODEL_NAME", champion["name"])
    monkeypatch.setenv("DSLC_LANDING_POKE_SECONDS", "1")
    monkeypatch.setenv("DSLC_LANDING_TIMEOUT_SECONDS", "60")
    monkeypatch.delenv("AIRFLOW_VAR_DSLC_DRIFT_RETRAIN_ENABLED", raising=False)
    get_settings.cache_clear()
    bag = DagBag(str(ROOT / "dags" / "drift_monitor.py"))
    assert not bag.import_errors, bag.import_errors
    _delete_test_train_runs()
    yield lake, bag.dags["drift_monitor"]
    _delete_test_train_runs()
    get_settings.cache_clear()


def run_day(dag, ds: str, caplog, **conf: Any) -> tuple[str, dict[str, str]]:
    """dag.test() for day ``ds``; returns the run state and each task's state."""
    caplog.clear()
    when = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
    # Every param explicit: in-process, dag.test() leaves a run's conf in the DAG's Param
    # objects for the next run (a real worker parses the DAG afresh for each task).
    dr = dag.test(logical_date=when, run_after=when, run_conf={**DEFAULT_CONF, **conf})
    return str(dr.state), {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def train_run_note(run_id: str) -> str | None:
    """The note of ``train`` run ``run_id``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == "train", DagRun.run_id == run_id)
        ).one()
        return run.note


def train_runs() -> dict[str, Any]:
    """The ``train`` runs these tests made (other tests share the DB): run id -> (state, conf)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "train")).all()
        return {
            r.run_id: (str(r.state), dict(r.conf or {}))
            for r in runs
            if r.run_id.startswith(TEST_RUN_PREFIXES)
        }


def _delete_test_train_runs() -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for r in session.scalars(select(DagRun).where(DagRun.dag_id == "train")).all():
            if r.run_id.startswith(TEST_RUN_PREFIXES):
                session.delete(r)


def decision(lake: Lake, ds: str) -> dict[str, Any]:
    return json.loads(lake.read_text(dm.report_key(ds), dm.DECISION_JSON))


SKIPPED_AFTER_DECIDE = {"trigger_retraining": "skipped", "record_trigger": "skipped"}


def test_stable_day_waits_for_features_reports_and_does_not_trigger(
    drift, champion, mlflow_server, caplog, monkeypatch
):
    lake, dag = drift
    caplog.set_level(logging.INFO)
    day = stable_day(champion["rows"], STABLE, seed=1)
    # The serving log of the day: the champion's own answers for those flights.
    log_rows = day.loc[:, ["ds", "carrier", "flight", "origin"]].copy()
    from dslc.lake import parquet_bytes

    log_rows["probability"] = champion["model"].predict_proba(features_of(day))[:, 1]
    log_rows["model_version"] = champion["version"]
    log_rows["request_time"] = pd.Timestamp(f"{STABLE}T08:00", tz="UTC")
    lake.write_bytes(
        parquet_bytes(log_rows), f"predictions/{champion['name']}/ds={STABLE}", "part-1.parquet"
    )
    # The features land while the sensor waits: it defers, dag.test runs the trigger inline.
    from dslc_airflow.sensors import PartitionSensor

    landed: list[threading.Timer] = []
    defer = PartitionSensor.defer

    def land_soon_then_defer(self, **kwargs):
        landed.append(threading.Timer(1.5, publish, args=(lake, day)))
        landed[0].start()
        defer(self, **kwargs)

    monkeypatch.setattr(PartitionSensor, "defer", land_soon_then_defer)
    state, tasks = run_day(dag, STABLE, caplog, persistence=1)
    landed[0].join()
    out = caplog.text
    assert state == "success", tasks
    assert tasks == {
        "wait_for_features": "success",
        "reconcile_deployment": "success",  # no deployment recorded: nothing to reconcile
        "compute_drift": "success",
        "report": "success",
        "decide": "success",
        **SKIPPED_AFTER_DECIDE,
    }
    # Deferred: the trigger polled the lake until the partition was published.
    assert landed and "running trigger in line" in out and "Trigger completed" in out

    report = dm.read_report(lake, STABLE)
    assert report["dataset"]["drifted"] is False, report["dataset"]
    assert max(f["psi"] for f in report["features"].values() if f["psi"] is not None) < 0.1
    assert report["reference"]["version"] == champion["version"]
    assert report["rows"]["current"] == 3000
    perf = report["performance"]
    assert perf["rows"] == 3000 and perf["drifted"] is False
    assert perf["roc_auc"] > report["reference"]["holdout"]["roc_auc"] - 0.05
    assert decision(lake, STABLE)["trigger"] is False
    html_uri = lake.uri(dm.report_key(STABLE), dm.REPORT_HTML)
    assert f"drift report html: {html_uri}" in out
    assert "data:image/svg+xml;base64," in lake.read_text(dm.report_key(STABLE), dm.REPORT_HTML)
    assert not train_runs()

    # MLflow: the day's metrics on the champion version's drift run, and its tags.
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    mv = c.get_model_version(champion["name"], champion["version"])
    assert mv.tags["dslc.drift.last_ds"] == STABLE
    assert mv.tags["dslc.drift.last_verdict"] == "stable"
    run = c.get_run(mv.tags["dslc.drift.run_id"])
    assert run.data.tags["dslc.model_version"] == champion["version"]
    assert run.data.metrics["psi.temp"] == pytest.approx(report["features"]["temp"]["psi"])
    assert run.data.metrics["performance.roc_auc"] == pytest.approx(perf["roc_auc"])
    assert {f.path for f in c.list_artifacts(run.info.run_id, f"ds={STABLE}")} == {
        f"ds={STABLE}/report.html",
        f"ds={STABLE}/report.json",
    }


def test_shifted_day_triggers_train_once_however_often_it_is_rerun(drift, champion, caplog):
    lake, dag = drift
    caplog.set_level(logging.INFO)
    publish(lake, shifted_day(champion["rows"], SHIFTED, seed=2))
    state, tasks = run_day(dag, SHIFTED, caplog, persistence=1)
    assert state == "success", tasks
    assert tasks["trigger_retraining"] == "success" and tasks["record_trigger"] == "success"

    report = dm.read_report(lake, SHIFTED)
    drifted = {d["feature"] for d in report["dataset"]["drifted_features"]}
    assert {"temp", "dewp", "humid", "pressure", "wind_speed", "carrier"} <= drifted
    run_id = f"drift__{SHIFTED}__v{champion['version']}"
    runs = train_runs()
    assert list(runs) == [run_id]
    run_state, conf = runs[run_id]
    assert run_state == "queued"
    assert conf["window_end"] == SHIFTED and conf["window_days"] == 60
    assert conf["champion_version"] == champion["version"]
    assert conf["report_uri"] == lake.uri(dm.report_key(SHIFTED), dm.REPORT_HTML)
    assert conf["reason"].startswith(f"drift_monitor {SHIFTED}: data drift in 1 consecutive")
    assert any(f.startswith("temp:psi=") for f in conf["drifted_features"])
    (record,) = dm.trigger_records(lake)
    assert record["run_id"] == run_id and record["conf"] == conf
    # The run says why in its note, on the run in the UI.
    note = train_run_note(run_id)
    assert note == dm.run_note(conf) and note.startswith("**Retrain triggered by drift.**")
    assert conf["reason"] in note and "`temp:psi=" in note and conf["report_uri"] in note

    # The same day again (a clear, a backfill): still one train run.
    state, tasks = run_day(dag, SHIFTED, caplog, persistence=1)
    assert state == "success", tasks
    assert (
        tasks["decide"] == "success"
        and {k: tasks[k] for k in SKIPPED_AFTER_DECIDE} == SKIPPED_AFTER_DECIDE
    )
    assert list(train_runs()) == [run_id]
    blocked = decision(lake, SHIFTED)["blocked_by"]
    assert blocked[0].startswith(f"already triggered for version {champion['version']}")
    assert "no retrain for" in caplog.text


def test_kill_switch_and_a_train_run_in_flight_block_the_trigger(
    drift, champion, caplog, monkeypatch
):
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType

    lake, dag = drift
    caplog.set_level(logging.INFO)
    publish(lake, shifted_day(champion["rows"], OTHER_SHIFTED, seed=3))
    # The Variable switches retraining off: the day is scored, reported, and nothing triggers.
    monkeypatch.setenv("AIRFLOW_VAR_DSLC_DRIFT_RETRAIN_ENABLED", "false")
    state, tasks = run_day(dag, OTHER_SHIFTED, caplog, persistence=1, cooldown_days=0)
    assert state == "success" and tasks["trigger_retraining"] == "skipped", tasks
    assert tasks["report"] == "success"
    assert decision(lake, OTHER_SHIFTED)["blocked_by"] == [
        "retraining is switched off (Variable dslc_drift_retrain_enabled)"
    ]
    assert not train_runs()

    # The run's param wins over the Variable; now a queued train run is all that is in the way.
    in_flight = trigger_dag(
        "train",
        run_id="manual__drift_test_in_flight",
        conf={"reason": "someone's manual run"},
        triggered_by=DagRunTriggeredByType.TEST,
    )
    assert in_flight is not None and str(in_flight.state) == "queued"
    state, tasks = run_day(dag, OTHER_SHIFTED, caplog, persistence=1, cooldown_days=0, retrain=True)
    assert state == "success" and tasks["trigger_retraining"] == "skipped", tasks
    assert decision(lake, OTHER_SHIFTED)["blocked_by"] == ["1 `train` run(s) queued or running"]
    assert list(train_runs()) == ["manual__drift_test_in_flight"]

    # Once it has finished, the same day triggers.
    with create_session() as session:
        session.get(DagRun, in_flight.id).state = DagRunState.FAILED
    state, tasks = run_day(dag, OTHER_SHIFTED, caplog, persistence=1, cooldown_days=0, retrain=True)
    assert tasks["trigger_retraining"] == "success", tasks
    assert f"drift__{OTHER_SHIFTED}__v{champion['version']}" in train_runs()


def test_no_champion_yet_finishes_without_scoring(drift, champion, monkeypatch, caplog):
    from dslc.settings import get_settings

    lake, dag = drift
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("DSLC_MODEL_NAME", f"never_trained_{uuid.uuid4().hex[:6]}")
    get_settings.cache_clear()
    publish(lake, stable_day(champion["rows"], STABLE, seed=0, n=50))
    state, tasks = run_day(dag, STABLE, caplog)
    assert state == "success", tasks
    assert tasks["wait_for_features"] == "success" and tasks["compute_drift"] == "skipped"
    assert {tasks[t] for t in ("report", "decide", *SKIPPED_AFTER_DECIDE)} == {"skipped"}
    assert "nothing to compare against" in caplog.text
    assert not lake.exists(dm.report_key(STABLE))
