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
    return (
        f"the conf of this {dag_id} run has unknown key{'s' if len(named) > 1 else ''} "
        f"{', '.join(named)}; {dag_id} takes only its params: {', '.join(declared)}. "
        "Fix the conf and trigger the run again."
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
