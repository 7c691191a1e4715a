"""The extra links: on the right tasks, serialized for the UI, and the URL each renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    ("train", "train"): {"MLflow run"},
    ("train", "evaluate"): {"MLflow run"},
    ("train", "register"): {"MLflow run", "Model version"},
    ("train", "promote"): {"MLflow run", "Model version"},
    ("drift_monitor", "report"): {"Drift report"},
    ("ingest", "validate"): {"Validation result"},
}


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


def test_links_are_on_the_right_tasks(dags: dict[str, Any]) -> None:
    ours = {name for names in EXPECTED.values() for name in names}
    found = {
        (dag_id, t.task_id): names
        for dag_id, dag in dags.items()
        for t in dag.tasks
        if (names := {link.name for link in t.operator_extra_links} & ours)
    }
    assert found == EXPECTED


def test_links_reach_the_ui_serialized(dags: dict[str, Any]) -> None:
    """The api-server knows a task's links only from the serialized DAG (name -> XCom key)."""
    from airflow.serialization.serialized_objects import DagSerialization

    for (dag_id, task_id), names in EXPECTED.items():
        data = DagSerialization.to_dict(dags[dag_id])
        task = next(t["__var"] for t in data["dag"]["tasks"] if t["__var"]["task_id"] == task_id)
        assert set(task.get("_operator_extra_links", {})) == names, (dag_id, task_id)


class FakeTI:
    """What the worker hands a link: the task instance, with its key and its context."""

    dag_id, run_id, task_id, map_index = "d", "r", "t", -1

    def __init__(self, ds: str | None = "2013-06-02") -> None:
        self.ds = ds

    def get_template_context(self) -> dict[str, Any]:
        return {"ds": self.ds}


@pytest.fixture
def xcoms(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """XCom return values by task id, as the links read them."""
    from airflow.sdk.execution_time import xcom

    values: dict[str, Any] = {}
    monkeypatch.setattr(
        xcom.XCom, "get_one", classmethod(lambda cls, *, task_id, **_: values.get(task_id))
    )
    monkeypatch.setenv("DSLC_MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("DSLC_AIRFLOW_HOST", "airflow.example")
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    return values


def test_mlflow_run_link_renders_the_run_of_the_xcom(xcoms: dict[str, Any]) -> None:
    from dslc_airflow.links import MlflowRunLink

    xcoms["t"] = {"run_id": "0f9a", "reused": False}
    assert (
        MlflowRunLink().get_link(None, ti_key=FakeTI()) == "http://mlflow.example:5000/#/runs/0f9a"
    )
    # register/promote return no run id: the link reads the train task's.
    xcoms["t"] = {"version": "3"}
    xcoms["train"] = {"run_id": "77aa"}
    assert MlflowRunLink().get_link(None, ti_key=FakeTI()).endswith("/#/runs/77aa")


def test_model_version_link(xcoms: dict[str, Any]) -> None:
    from dslc_airflow.links import ModelVersionLink

    xcoms["t"] = {"version": "3", "promote": True}
    assert (
        ModelVersionLink().get_link(None, ti_key=FakeTI())
        == "http://mlflow.example:5000/#/models/flights_late/versions/3"
    )
    xcoms["t"] = None  # the task failed before returning: no link
    assert ModelVersionLink().get_link(None, ti_key=FakeTI()) == ""


def test_report_links_point_at_the_plugin_route(xcoms: dict[str, Any]) -> None:
    from dslc_airflow.links import DriftReportLink, ValidationResultLink

    assert (
        DriftReportLink().get_link(None, ti_key=FakeTI())
        == "http://airflow.example:8080/dslc/reports/monitoring/drift/ds=2013-06-02/report.html"
    )
    assert (
        ValidationResultLink().get_link(None, ti_key=FakeTI())
        == "http://airflow.example:8080/dslc/reports/validation/flights/ds=2013-06-02/index.html"
    )
    assert DriftReportLink().get_link(None, ti_key=FakeTI(ds=None)) == ""
