"""A run's conf keys are checked against its DAG's params before any work (dslc_airflow.runs).

Airflow validates the values of declared params but takes unknown conf keys silently; the
``pre_execute`` hook every task of our DAGs gets fails the first task on one, naming it.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.api.datamodels._generated import DagRunType
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dslc_airflow.runs import check_conf, run_type, skip_past_source, unknown_conf_keys
from tests.support import dslc_env

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


def test_a_dag_without_params_takes_no_conf() -> None:
    assert unknown_conf_keys({"ds": "2013-01-01"}, (), dag_id="ingest") == (
        "the conf of this ingest run has unknown key 'ds'; ingest takes no params. Fix the "
        "conf and trigger the run again."
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


# -- the scheduled run of 'today' in a replayed 2013 story skips its sensor ---------------------


def test_a_day_past_the_source_says_nothing_will_land() -> None:
    from dslc.data.ingest import past_source

    last = dt.date(2013, 12, 31)
    assert past_source("2013-12-31", "flights", last) is None
    assert past_source("2013-06-01", "flights", last) is None
    assert past_source("2026-11-30", "flights", last) == (
        "no data for 2026-11-30: the 'flights' use case's source ends on 2013-12-31, so nothing "
        "will land for this day (the scheduled run of 'today' in a 2013 story). Backfill the "
        "source's days instead, e.g. `dslc backfill ingest --start 2013-12-31 --end "
        "2013-12-31`; set DSLC_SKIP_DAYS_PAST_SOURCE=false if a live upstream lands days past "
        "the source"
    )


@pytest.mark.parametrize(
    ("kind", "ds", "setting", "skips"),
    [
        (DagRunType.SCHEDULED, "2026-11-30", None, True),
        (DagRunType.SCHEDULED, "2026-11-30", "false", False),  # a live upstream: wait
        (DagRunType.SCHEDULED, "2013-06-01", None, False),  # inside the source: wait
        (DagRunType.MANUAL, "2026-11-30", None, False),  # asked for by hand: wait, then fail
        (DagRunType.BACKFILL, "2026-11-30", None, False),
    ],
)
def test_only_a_scheduled_run_past_the_source_skips(
    kind: DagRunType, ds: str, setting: str | None, skips: bool
) -> None:
    context = {"dag_run": SimpleNamespace(run_type=kind)}
    with dslc_env(DSLC_USECASE=None, DSLC_SKIP_DAYS_PAST_SOURCE=setting):
        if skips:
            with pytest.raises(AirflowSkipException, match=r"^no data for 2026-11-30: the 'flig"):
                skip_past_source(context, ds)
        else:
            skip_past_source(context, ds)
