"""A run's conf keys are checked against its DAG's params before any work (dslc_airflow.runs).

Airflow validates the values of declared params but takes unknown conf keys silently; the
``pre_execute`` hook every task of our DAGs gets fails the first task on one, naming it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.api.datamodels._generated import DagRunType
from airflow.sdk.exceptions import AirflowFailException

from dslc_airflow.runs import check_conf, run_type, unknown_conf_keys

TRAIN_PARAMS = ("window_end", "window_days", "max_iter", "reason", "report_uri", "seed")


def test_a_typo_names_the_key_and_the_nearest_param() -> None:
    error = unknown_conf_keys({"windw_days": 30}, TRAIN_PARAMS, dag_id="train")
    assert error == (
        "the conf of this train run has unknown key 'windw_days' (did you mean "
        "'window_days'?); train takes only its params: max_iter, reason, report_uri, seed, "
        "window_days, window_end. Fix the conf and trigger the run again."
    )


def test_every_unknown_key_is_named_and_a_far_one_gets_no_guess() -> None:
    conf = {"window_days": 7, "seeds": 1, "colour": "red"}
    error = unknown_conf_keys(conf, TRAIN_PARAMS, dag_id="train")
    assert error is not None
    assert error.startswith(
        "the conf of this train run has unknown keys 'colour', 'seeds' (did you mean 'seed'?);"
    )


@pytest.mark.parametrize("conf", [None, {}, {"window_days": 30, "reason": "drift"}])
def test_known_keys_or_no_conf_pass(conf: dict[str, Any] | None) -> None:
    assert unknown_conf_keys(conf, TRAIN_PARAMS, dag_id="train") is None


def _context(conf: dict[str, Any] | None, task_params: dict[str, Any] | None = None) -> Any:
    dag = SimpleNamespace(dag_id="train", params={k: None for k in TRAIN_PARAMS})
    task = SimpleNamespace(params=task_params or {})
    return {"dag": dag, "task": task, "dag_run": SimpleNamespace(conf=conf)}


def test_the_hook_fails_the_task_without_retries() -> None:
    with pytest.raises(AirflowFailException, match=r"'windw_days' \(did you mean 'window_days'"):
        check_conf(_context({"windw_days": 30}))
    check_conf(_context({"window_days": 30}))
    check_conf(_context(None))
    check_conf(_context({"extra": 1}, task_params={"extra": 0}))  # a task-level param


@pytest.mark.parametrize(
    ("dag_run", "expected"),
    [
        (SimpleNamespace(run_type=DagRunType.SCHEDULED), "scheduled"),
        (SimpleNamespace(run_type="backfill"), "backfill"),
        (None, "manual"),
    ],
)
def test_run_type_is_the_plain_value(dag_run: Any, expected: str) -> None:
    assert run_type(dag_run) == expected
