"""
### bench_noop_chain: ten tasks that do nothing, one after the other

The reference of benchmark B7 (`bench/bench_distributed.py`): each run's time is Airflow's own,
so the time between one task's end and the next one's start is the stack's per-task scheduling
gap. Not a project DAG: the benchmark links this file into a temporary project root next to the
real DAG files, so the stacks it starts parse it and `dags/` never holds it.

TaskFlow tasks rather than `EmptyOperator`: the scheduler marks an `EmptyOperator` done itself,
never sending it to the executor, so it would leave the executor's share out of the gap.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import chain, dag, task

TASKS = 10


@dag(
    dag_id="bench_noop_chain",
    schedule=None,
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["bench"],
    default_args={"owner": "bench", "retries": 0},
)
def bench_noop_chain() -> None:
    @task
    def noop() -> None:
        """Nothing: the task's time is Airflow's."""

    chain(*[noop.override(task_id=f"noop_{i:02d}")() for i in range(TASKS)])


bench_noop_chain()
