"""drift_monitor's reconcile task (``dslc_airflow.deploy.run_reconcile``): strict unless a
``train`` or ``deploy`` run is in flight, and a disagreement fails the task without retries.
``dslc.deploy.reconcile`` itself is tested in test_deploy.py and against real processes."""

from __future__ import annotations

from typing import Any

import pytest

from dslc import deploy
from dslc_airflow import deploy as glue


class FakeTI:
    dag_id, run_id = "drift_monitor", "scheduled__2013-02-01"

    def __init__(self, running: dict[str, int]) -> None:
        self.running = running

    def get_dr_count(self, dag_id: str, states: list[str]) -> int:
        assert states == ["queued", "running"]
        return self.running.get(dag_id, 0)


@pytest.fixture
def calls(monkeypatch, lake) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_reconcile(model_name: str, **kw: Any) -> dict[str, Any]:
        seen.append(kw)
        if kw["strict"]:
            raise deploy.DeployError("the champion of m is version 2, but ... serves version 1")
        return {
            "status": "mismatch",
            "champion": "2",
            "serving": "1",
            "interrupted": None,
            "message": "champion 2, serving 1",
        }

    monkeypatch.setattr(deploy, "reconcile", fake_reconcile)
    return seen


def test_a_disagreement_with_nothing_in_flight_fails_without_retry(calls):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"is version 2, but .* serves version 1"):
        glue.run_reconcile(FakeTI({}))
    assert calls[0]["strict"] is True and calls[0]["repair"] is True
    assert calls[0]["actor"] == "reconcile via drift_monitor/scheduled__2013-02-01"


@pytest.mark.parametrize("dag_id", ["train", "deploy"])
def test_a_run_in_flight_that_will_deploy_makes_it_a_warning(calls, dag_id, caplog):
    out = glue.run_reconcile(FakeTI({dag_id: 1}))
    assert calls[0]["strict"] is False and calls[0]["repair"] is False
    assert out == {"status": "mismatch", "champion": "2", "serving": "1", "interrupted": None}
    assert f"{dag_id} run in flight; not failing: champion 2, serving 1" in caplog.text


def test_a_rolled_back_interrupted_deploy_hands_its_record_on(monkeypatch, lake):
    record = {"model": "m", "version": "2", "status": "rolled_back"}

    def repaired(model_name: str, **kw: Any) -> dict[str, Any]:
        interrupted = {"action": "rolled_back", "version": "2", "record": record}
        return {
            "status": "repaired",
            "champion": "1",
            "serving": "1",
            "interrupted": interrupted,
            "message": "local serves the champion of m: version 1",
        }

    monkeypatch.setattr(deploy, "reconcile", repaired)
    out = glue.run_reconcile(FakeTI({}))
    assert out["interrupted"] == "rolled_back" and out["rolled_back"] == record
