"""What a fresh stack's UI shows before anyone does anything, and a run with a mistyped conf key.

One real embedded stack (Airflow 3 api-server, scheduler, dag-processor, triggerer; MLflow) on
free loopback ports, driven through the REST API only:

* DAGs start unpaused, so Airflow schedules 'today' (catchup=False) at once. In the 2013 story
  nothing lands for today and nothing is published yet: each scheduled run must end without a
  failure and without a task left waiting, its first task skipped with the reason in its log.
* ``train`` triggered with ``{"windw_days": 30}`` fails at its first task, without retries,
  naming the key and the param it meant, and creates nothing in MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from dslc.dev.airflow_client import AirflowClient
from dslc.settings import Settings
from tests.support import ephemeral_stack

pytestmark = pytest.mark.integration

# A bound so a broken run fails the test instead of hanging it; not a timing assertion.
PATIENCE_S = 600.0
TERMINAL = {"success", "failed"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Settings]:
    with ephemeral_stack(prefix="dslc-runs-") as settings:
        yield settings


@pytest.fixture(scope="module")
def api(stack: Settings) -> Iterator[AirflowClient]:
    with AirflowClient.from_settings(stack) as client:
        client.login()
        yield client


def _runs_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"


def task_states(api: AirflowClient, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    resp = api.request("GET", f"{_runs_path(dag_id, run_id)}/taskInstances")
    resp.raise_for_status()
    return {ti["task_id"]: ti for ti in resp.json()["task_instances"]}


def task_log(api: AirflowClient, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    resp = api.request(
        "GET",
        f"{_runs_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}",
        params={"full_content": "true"},
    )
    resp.raise_for_status()
    return resp.text


def ended(api: AirflowClient, dag_id: str, *, run_type: str) -> dict[str, Any]:
    """The first run of ``dag_id`` of ``run_type``, once it has ended."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        runs = [r for r in api.recent_runs(dag_id) if r.get("run_type") == run_type]
        if runs and runs[0].get("state") in TERMINAL:
            return runs[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no ended {run_type} run of {dag_id}: {runs}")
        time.sleep(2)


@pytest.mark.parametrize(
    ("dag_id", "first_task", "reason"),
    [
        ("ingest", "wait_for_landing", "use case's source ends on 2013-12-31, so nothing will"),
        ("drift_monitor", "wait_for_features", "use case's source ends on 2013-12-31"),
        ("train", "assemble", "no data yet: no published feature partitions at "),
    ],
)
def test_todays_scheduled_run_skips_saying_why(
    api: AirflowClient, dag_id: str, first_task: str, reason: str
) -> None:
    run = ended(api, dag_id, run_type="scheduled")
    tasks = task_states(api, dag_id, run["dag_run_id"])
    assert run["state"] == "success", (run, tasks)
    assert {ti["state"] for ti in tasks.values()} == {"skipped"}, tasks
    log = task_log(api, dag_id, run["dag_run_id"], first_task, tasks[first_task]["try_number"])
    assert reason in log


def test_a_mistyped_conf_key_fails_the_first_task_naming_the_param(
    stack: Settings, api: AirflowClient
) -> None:
    from dslc.model import registry

    triggered = api.trigger_dag_run("train", {"windw_days": 30})
    run_id = str(triggered["dag_run_id"])
    deadline = time.monotonic() + PATIENCE_S
    run = api.get_dag_run("train", run_id)
    while run["state"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(2)
        run = api.get_dag_run("train", run_id)
    tasks = task_states(api, "train", run_id)
    assert run["state"] == "failed", (run, tasks)
    assert tasks["assemble"]["state"] == "failed"
    assert tasks["assemble"]["try_number"] == 1  # no retry: it would fail the same way
    assert {ti["state"] for t, ti in tasks.items() if t != "assemble"} == {"upstream_failed"}
    log = task_log(api, "train", run_id, "assemble", 1)
    assert "unknown key 'windw_days' (did you mean 'window_days'?)" in log
    # Nothing was trained: no MLflow run, no model.
    c = registry.client(stack.mlflow_url)
    assert c.search_registered_models() == []
    experiment = c.get_experiment_by_name(stack.mlflow_experiment)
    if experiment is not None:
        assert c.search_runs([experiment.experiment_id]) == []
