"""Every conf key our own code sends is a declared param, and every DAG checks the rest.

A run whose conf holds an unknown key fails its first task (``dslc_airflow.runs.check_conf``,
every task's ``pre_execute`` hook), so a key that drift_monitor or the demo sends and the
target DAG does not declare would fail every such run: these tests catch it before a run does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dslc.settings import get_usecase
from dslc_airflow.runs import check_conf, unknown_conf_keys

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return dict(bag.dags)


def test_every_task_of_every_dag_checks_the_conf(dags: dict[str, Any]) -> None:
    assert set(dags) == {"ingest", "train", "drift_monitor", "deploy"}
    unchecked = [
        f"{dag_id}.{task.task_id}"
        for dag_id, dag in dags.items()
        for task in dag.tasks
        if getattr(task, "_pre_execute_hook", None) is not check_conf
    ]
    assert unchecked == []


def test_drift_monitors_trigger_conf_is_all_train_params(dags: dict[str, Any]) -> None:
    from dslc.monitoring.monitor import train_conf

    report = {
        "ds": "2013-06-20",
        "decision": {"reason": "3 drifted days"},
        "reference": {"version": "1"},
        "dataset": {"drifted_features": [{"feature": "temp", "crossed": []}]},
        "window": {"first": "2013-06-14", "last": "2013-06-20"},
    }
    conf = train_conf(report, report_uri="file:///r.html", train_window_days=60)
    assert {"reason", "drifted_features", "report_uri", "window_end", "window_days"} <= set(conf)
    assert "champion_version" in conf
    assert unknown_conf_keys(conf, dags["train"].params, dag_id="train") is None
    trigger = dags["drift_monitor"].get_task("trigger_retraining")
    assert trigger.trigger_dag_id == "train"


def test_the_demos_first_champion_conf_is_all_train_params(dags: dict[str, Any]) -> None:
    calendar = get_usecase().demo
    assert calendar is not None
    conf = {**calendar.first_champion, "window_end": calendar.end.isoformat()}
    assert unknown_conf_keys(conf, dags["train"].params, dag_id="train") is None


def test_the_check_sees_a_typo_against_the_real_train_params(dags: dict[str, Any]) -> None:
    error = unknown_conf_keys({"windw_days": 30}, dags["train"].params, dag_id="train")
    assert error is not None
    assert "'windw_days' (did you mean 'window_days'?)" in error
