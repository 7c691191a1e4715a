"""What a DAG run asked for: its run type, and its conf keys checked against the DAG's params.

Airflow checks the values of a DAG's declared params when a run is created, but takes any other
conf key without a word (and has no setting or DAG-level schema to refuse one): a run triggered
with ``{"windw_days": 30}`` would quietly train on the default window. :func:`check_conf` is
every task's ``pre_execute`` hook (through the DAG's ``default_args``), so the first task of
such a run fails, without retries and before any work, naming the key and the param it was
probably meant to be.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


def unknown_conf_keys(
    conf: Mapping[str, Any] | None, params: Iterable[str], *, dag_id: str
) -> str | None:
    """The error for the conf keys that are not params of the DAG, or None when all are."""
    declared = sorted(set(params))
    unknown = sorted(str(key) for key in (conf or {}) if key not in declared)
    if not unknown:
        return None
    named = []
    for key in unknown:
        near = difflib.get_close_matches(key, declared, n=1)
        named.append(f"{key!r} (did you mean {near[0]!r}?)" if near else repr(key))
    takes = f"only its params: {', '.join(declared)}" if declared else "no params"
    return (
        f"the conf of this {dag_id} run has unknown key{'s' if len(named) > 1 else ''} "
        f"{', '.join(named)}; {dag_id} takes {takes}. Fix the conf and trigger the run again."
    )


def check_conf(context: Mapping[str, Any]) -> None:
    """``pre_execute`` hook: fail the task (no retries) if the run's conf has an unknown key."""
    from airflow.sdk.exceptions import AirflowFailException

    dag = context["dag"]
    task = context.get("task")
    conf = getattr(context.get("dag_run"), "conf", None)
    # The DAG's declared params (the run's conf is merged into a copy, never into these).
    declared = set(dag.params) | set(getattr(task, "params", None) or {})
    error = unknown_conf_keys(conf, declared, dag_id=dag.dag_id)
    if error is not None:
        raise AirflowFailException(error)


def run_type(dag_run: Any) -> str:
    """The run's type as a plain string (``scheduled``, ``manual``, ``backfill``, ...)."""
    kind = getattr(dag_run, "run_type", None)
    if kind is None:
        return "manual"
    # Airflow's DagRunType is a str Enum whose str() is "DagRunType.MANUAL": take its value.
    return str(getattr(kind, "value", kind))


def skip_past_source(context: Mapping[str, Any], ds: str) -> None:
    """Skip a scheduled run's sensor at once when its day is after the use case's source.

    Only scheduled runs, only with ``DSLC_SKIP_DAYS_PAST_SOURCE`` on (the default): a run
    triggered or backfilled for such a day still waits and times out, as the user asked for it.
    """
    if run_type(context.get("dag_run")) != "scheduled":
        return
    from dslc.data.ingest import past_source
    from dslc.settings import get_settings, get_usecase

    if not get_settings().skip_days_past_source:
        return
    usecase = get_usecase()
    why = past_source(ds, usecase.name, usecase.source.last_day)
    if why is not None:
        import logging

        from airflow.sdk.exceptions import AirflowSkipException

        logging.getLogger("airflow.task").info("skipping: %s", why)
        raise AirflowSkipException(why)
