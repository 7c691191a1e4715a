"""The ``dslc backfill`` command and the trigger the demo uses: create runs through the REST
client, follow them with a progress bar, and point at the failed tasks in the Airflow UI.

Facts about Airflow 3.3 this relies on (checked in its source):

* The scheduler does not start queued runs, backfills included, of a *paused* DAG, so
  :func:`backfill_cli` unpauses it first (and says so).
* Airflow allows one active backfill per DAG, and marks a backfill completed a little after its
  last run ends: :func:`backfill_cli` follows an active one before it creates its own.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dslc.dev.airflow_client import AirflowApiError, AirflowClient, backfill_window, parse_time
from dslc.dev.console import make_console, reported
from dslc.settings import Settings, get_settings

if TYPE_CHECKING:
    from rich.console import Console

TERMINAL_STATES = frozenset({"success", "failed"})
DAG_PARSE_TIMEOUT = 60.0
POLL_SECONDS = 2.0
# Airflow allows one active backfill per DAG, so a long window is run as consecutive backfills
# of at most this many runs: each is created in a short transaction (see _create_part).
BACKFILL_PART_RUNS = 15
# How long a new part waits for Airflow to mark the previous backfill completed.
BACKFILL_SETTLE_SECONDS = 120.0


@dataclass
class BackfillProgress:
    """Where a backfill stands, from the states of the runs it is expected to create."""

    expected: list[dt.datetime]
    states: dict[dt.datetime, str] = field(default_factory=dict)
    run_ids: dict[dt.datetime, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.expected)

    def _count(self, wanted: Iterable[str]) -> int:
        wanted = set(wanted)
        return sum(1 for d in self.expected if self.states.get(d) in wanted)

    @property
    def succeeded(self) -> int:
        return self._count({"success"})

    @property
    def failed(self) -> int:
        return self._count({"failed"})

    @property
    def done(self) -> int:
        return self._count(TERMINAL_STATES)

    @property
    def running(self) -> int:
        return self._count({"running"})

    @property
    def finished(self) -> bool:
        return self.done == self.total

    @property
    def ok(self) -> bool:
        return self.finished and self.succeeded == self.total

    def finished_between(self, first: dt.datetime, last: dt.datetime) -> bool:
        """Whether every expected run with ``first <= logical date <= last`` is terminal."""
        return all(
            self.states.get(d) in TERMINAL_STATES for d in self.expected if first <= d <= last
        )

    def failed_dates(self) -> list[dt.datetime]:
        return [d for d in self.expected if self.states.get(d) == "failed"]

    def missing_dates(self) -> list[dt.datetime]:
        return [d for d in self.expected if d not in self.states]

    def update(self, runs: Iterable[Mapping[str, Any]]) -> None:
        """Record the state of each run whose logical date is expected (others are ignored)."""
        wanted = set(self.expected)
        for run in runs:
            raw = run.get("logical_date")
            if not raw:
                continue
            when = parse_time(str(raw))
            if when in wanted:
                self.states[when] = str(run.get("state"))
                self.run_ids[when] = str(run.get("dag_run_id"))

    def describe(self) -> str:
        return (
            f"{self.done}/{self.total} done, {self.succeeded} ok, {self.failed} failed, "
            f"{self.running} running"
        )


def run_url(base_url: str, dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The Airflow 3 UI page of a DAG run (or of one of its tasks)."""
    url = f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f"{url}/tasks/{quote(task_id, safe='')}" if task_id else url


def wait_for_dag(
    client: AirflowClient,
    dag_id: str,
    console: Console,
    timeout: float = DAG_PARSE_TIMEOUT,
    interval: float = POLL_SECONDS,
) -> dict[str, Any]:
    """The DAG, waiting up to ``timeout`` s for the dag-processor to parse it after `dslc up`."""
    deadline = time.monotonic() + timeout
    dag = client.get_dag(dag_id)
    if dag is not None:
        return dag
    with console.status(f"Waiting for Airflow to parse DAG {dag_id!r} (up to {timeout:.0f}s)..."):
        while dag is None and time.monotonic() < deadline:
            time.sleep(interval)
            dag = client.get_dag(dag_id)
    if dag is not None:
        return dag
    raise AirflowApiError(_dag_not_found(client, dag_id))


def _dag_not_found(client: AirflowClient, dag_id: str) -> str:
    known = client.list_dag_ids()
    lines = [f"DAG {dag_id!r} not found in Airflow at {client.base_url}."]
    lines.append(f"Known DAGs: {', '.join(known)}" if known else "Airflow knows no DAGs yet.")
    for err in client.import_errors():
        trace = str(err.get("stack_trace", "")).strip().splitlines()
        lines.append(f"Import error in {err.get('filename')}: {trace[-1] if trace else '?'}")
    return "\n".join(lines)


def _summarize_failures(
    client: AirflowClient, dag_id: str, progress: BackfillProgress, console: Console
) -> None:
    for when in progress.failed_dates():
        run_id = progress.run_ids[when]
        tasks = client.failed_tasks(dag_id, run_id)
        task_text = ", ".join(tasks) if tasks else "no failed task (run marked failed)"
        task_id = tasks[0].split("[")[0] if tasks else None
        console.print(
            f"  [red]failed[/red] {when.date()}  task(s): {task_text}  "
            f"-> {run_url(client.base_url, dag_id, run_id, task_id)}",
            soft_wrap=True,
        )
    for when in progress.missing_dates():
        console.print(f"  [yellow]no run[/yellow] {when.date()} (the backfill did not create it)")


def follow_backfill(
    client: AirflowClient,
    dag_id: str,
    progress: BackfillProgress,
    window: tuple[dt.datetime, dt.datetime],
    console: Console,
    backfill_id: int | None = None,
    interval: float = POLL_SECONDS,
    timeout: float | None = None,
    part: tuple[dt.datetime, dt.datetime] | None = None,
) -> BackfillProgress:
    """Poll the runs until every expected one is terminal (or the backfill ends without them).

    With ``part`` (the backfill's own window inside a longer one) it returns as soon as that
    part's runs are terminal.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"backfill {dag_id}", total=progress.total, detail="")
        while True:
            progress.update(client.list_dag_runs(dag_id, *window))
            detail = (
                f"ok {progress.succeeded}  failed {progress.failed}  running {progress.running}"
            )
            bar.update(task, completed=progress.done, detail=detail)
            if progress.finished or (part is not None and progress.finished_between(*part)):
                return progress
            if not client.scheduler_healthy():
                raise AirflowApiError(
                    "The Airflow scheduler is not running, so the backfill cannot progress "
                    f"({progress.describe()}). See `dslc status` and the scheduler log; "
                    "`dslc up` restarts it and the backfill resumes."
                )
            if backfill_id is not None and client.get_backfill(backfill_id).get("completed_at"):
                # Ended (e.g. cancelled in the UI) with runs that will never finish: read once more.
                progress.update(client.list_dag_runs(dag_id, *window))
                bar.update(task, completed=progress.done)
                return progress
            if deadline is not None and time.monotonic() > deadline:
                return progress
            time.sleep(interval)


def backfill_cli(
    dag_id: str,
    first: dt.date,
    last: dt.date,
    reprocess: str = "failed",
    wait: bool = True,
    *,
    settings: Settings | None = None,
    max_active_runs: int | None = None,
    timeout: float | None = None,
) -> bool:
    """`dslc backfill`: run ``dag_id`` for the days ``first..last`` (inclusive), follow it.

    Returns True iff every run of the window succeeded (or, with ``wait=False``, the backfill
    was created). User errors raise :class:`AirflowApiError` with a plain message.
    """
    with reported():
        return _backfill(
            dag_id,
            first,
            last,
            reprocess,
            wait,
            settings or get_settings(),
            max_active_runs,
            timeout,
        )


def _backfill(
    dag_id: str,
    first: dt.date,
    last: dt.date,
    reprocess: str,
    wait: bool,
    settings: Settings,
    max_active_runs: int | None,
    timeout: float | None,
) -> bool:
    console = make_console()
    window = backfill_window(first, last)
    with AirflowClient.from_settings(settings) as client:
        client.login()
        dag = wait_for_dag(client, dag_id, console)
        if dag.get("is_paused"):
            console.print(f"DAG {dag_id!r} is paused: unpausing it (paused DAGs run no backfill).")
        expected = client.dry_run_backfill(dag_id, *window, reprocess_behavior=reprocess)
        if not expected:
            return _nothing_to_do(client, dag_id, window, reprocess, console)
        running = client.active_backfill(dag_id)
        if running is not None:
            # Airflow allows one active backfill per DAG: follow it rather than fail (a re-run
            # of the demo, or a second terminal).
            console.print(
                f"Backfill #{running['id']} of {dag_id} ({running.get('from_date')} .. "
                f"{running.get('to_date')}) is still active: following it first."
            )
            run_window = (parse_time(running["from_date"]), parse_time(running["to_date"]))
            theirs = sorted(
                parse_time(r["logical_date"])
                for r in client.list_dag_runs(dag_id, *run_window)
                if r.get("run_type") == "backfill" and r.get("logical_date")
            )
            follow_backfill(
                client,
                dag_id,
                BackfillProgress(expected=theirs),
                run_window,
                console,
                int(running["id"]),
                timeout=timeout,
            )
            expected = client.dry_run_backfill(dag_id, *window, reprocess_behavior=reprocess)
            if not expected:
                return _nothing_to_do(client, dag_id, window, reprocess, console)
        progress = BackfillProgress(expected=sorted(expected))
        parts = backfill_parts(progress.expected, None if not wait else BACKFILL_PART_RUNS)
        for number, (part_first, part_last) in enumerate(parts, start=1):
            backfill_id = _create_part(
                client, dag_id, (part_first, part_last), reprocess, max_active_runs
            )
            runs = sum(1 for d in progress.expected if part_first <= d <= part_last)
            label = f" (part {number} of {len(parts)})" if len(parts) > 1 else ""
            console.print(
                f"Backfill #{backfill_id} of {dag_id}: {runs} run(s), {part_first.date()}.."
                f"{part_last.date()}{label} (reprocess={reprocess}). "
                f"Airflow UI: {client.base_url}/dags/{dag_id}",
                soft_wrap=True,
            )
            if not wait:
                return True
            try:
                follow_backfill(
                    client,
                    dag_id,
                    progress,
                    window,
                    console,
                    backfill_id,
                    timeout=timeout,
                    part=(part_first, part_last),
                )
                if progress.finished_between(part_first, part_last):
                    _close_part(client, backfill_id)
            except KeyboardInterrupt:
                console.print(
                    f"Stopped following; backfill #{backfill_id} goes on in Airflow: "
                    f"{client.base_url}/dags/{dag_id}"
                )
                return False
        return _report(client, dag_id, progress, console)


def backfill_parts(
    expected: list[dt.datetime], size: int | None
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Split the sorted logical dates into consecutive windows of at most ``size`` runs."""
    if not expected:
        return []
    if size is None or size >= len(expected):
        return [(expected[0], expected[-1])]
    return [
        (expected[i], expected[min(i + size, len(expected)) - 1])
        for i in range(0, len(expected), size)
    ]


def _create_part(
    client: AirflowClient,
    dag_id: str,
    part: tuple[dt.datetime, dt.datetime],
    reprocess: str,
    max_active_runs: int | None,
) -> int:
    """Create one backfill with the DAG paused meanwhile; returns its id.

    On SQLite, Airflow 3.3 can fail the creation with "database is locked" when the
    scheduler commits while the runs are being created, and roll it back after the scheduler
    already saw one of its runs (which crashed the scheduler in our tests). A paused DAG's runs
    are not scheduled, and short windows keep the creating transaction short.
    """
    # The scheduler marks a backfill completed a little after its last run ends; until then
    # Airflow refuses a new one for the DAG (409). Wait for that instead of failing.
    deadline = time.monotonic() + BACKFILL_SETTLE_SECONDS
    while client.active_backfill(dag_id) is not None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    client.set_paused(dag_id, True)
    try:
        created = client.create_backfill(
            dag_id, *part, reprocess_behavior=reprocess, max_active_runs=max_active_runs
        )
    finally:
        client.set_paused(dag_id, False)
    return int(created["id"])


def _close_part(client: AirflowClient, backfill_id: int) -> None:
    """Mark a part whose runs are all terminal completed now, so the next part can start.

    The scheduler marks a backfill completed only every 30 s (a fixed interval in Airflow
    3.3), and Airflow refuses a second active backfill of a DAG until then: on a long window
    that wait, once per part, was a large share of the demo. Cancelling a backfill fails its
    *queued* runs, pauses it and sets its completion time; with every run of the part already
    terminal there is nothing queued, so it only records the completion early. A backfill the
    scheduler completed meanwhile answers 409, which is fine.
    """
    try:
        client.close_backfill(backfill_id)
    except AirflowApiError:
        # Already completed (409) or not ours to close: the settle wait in _create_part covers it.
        return


def _report(
    client: AirflowClient, dag_id: str, progress: BackfillProgress, console: Console
) -> bool:
    if progress.ok:
        console.print(f"[green]All {progress.total} run(s) of {dag_id} succeeded.[/green]")
        return True
    if not progress.finished and not progress.failed_dates():
        console.print(f"[yellow]Backfill of {dag_id} not finished: {progress.describe()}[/yellow]")
    else:
        console.print(f"[red]Backfill of {dag_id}: {progress.describe()}[/red]")
    _summarize_failures(client, dag_id, progress, console)
    return False


def _nothing_to_do(
    client: AirflowClient,
    dag_id: str,
    window: tuple[dt.datetime, dt.datetime],
    reprocess: str,
    console: Console,
) -> bool:
    """No run to create: report the runs that already exist in the window instead."""
    runs = client.list_dag_runs(dag_id, *window)
    progress = BackfillProgress(
        expected=sorted(parse_time(r["logical_date"]) for r in runs if r.get("logical_date"))
    )
    progress.update(runs)
    console.print(
        f"Nothing to backfill for {dag_id} with reprocess={reprocess}: "
        f"existing runs in the window: {progress.describe()}"
    )
    if progress.ok:
        return True
    if progress.failed:
        console.print("Use --reprocess failed (or completed) to run failed days again.")
    return _report(client, dag_id, progress, console)


def trigger_cli(
    dag_id: str,
    conf: dict[str, Any] | None = None,
    wait: bool = True,
    *,
    settings: Settings | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Trigger ``dag_id`` through the REST API and (optionally) wait for the run to end.

    Returns the final run record; on failure prints the failed tasks with their UI links.
    """
    console = make_console()
    with reported(), AirflowClient.from_settings(settings or get_settings()) as client:
        client.login()
        wait_for_dag(client, dag_id, console)
        run = client.trigger_dag_run(dag_id, conf)
        run_id = str(run["dag_run_id"])
        console.print(f"Triggered {dag_id} run {run_id}: {client.base_url}/dags/{dag_id}")
        if not wait:
            return run
        deadline = time.monotonic() + timeout
        with console.status(f"waiting for {dag_id} run {run_id}") as status:
            while run.get("state") not in TERMINAL_STATES:
                if time.monotonic() > deadline:
                    raise AirflowApiError(f"{dag_id} run {run_id} did not end within {timeout} s")
                time.sleep(POLL_SECONDS)
                run = client.get_dag_run(dag_id, run_id)
                status.update(f"{dag_id} run {run_id}: {run.get('state')}")
        if run["state"] != "success":
            tasks = client.failed_tasks(dag_id, run_id)
            task_id = tasks[0].split("[")[0] if tasks else None
            console.print(
                f"[red]{dag_id} run {run_id} failed[/red]: task(s) {', '.join(tasks) or '-'} "
                f"-> {run_url(client.base_url, dag_id, run_id, task_id)}"
            )
        return run
