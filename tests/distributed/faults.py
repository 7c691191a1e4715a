"""What the fault tests (test_faults.py) do to the distributed stack and how they look at it:
polls of the REST API with deadlines, signals to the stack's process groups, the lake's
partitions checked object by object, and the same days computed on a local file lake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import itertools
import math
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from dslc.dev.airflow_client import AirflowClient, iso, logical_date, parse_time
from dslc.lake import Lake

if TYPE_CHECKING:
    from dslc.settings import Settings

T = TypeVar("T")
TERMINAL = frozenset({"success", "failed"})
# The day's partitions the ingest DAG publishes (flights use case: weather is secondary).
ZONES = (("raw", "flights"), ("raw", "weather"), ("features", "flights"))
# Per zone/dataset of a day ("raw/flights"...): its published (content hash, rows), or None.
Published = dict[str, tuple[str, int] | None]


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    status: Callable[[], object] | None = None,
) -> T:
    """Poll ``check`` until it returns something other than None/False; fail after ``timeout``
    seconds with ``what`` and what ``status`` says about where things stand."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            seen = status() if status is not None else "-"
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last seen: {seen}")
        time.sleep(interval)


def _run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"


def trigger(client: AirflowClient, dag_id: str, run_id: str, day: dt.date | None = None) -> None:
    """A manual run, for ``day``'s logical date if given (``ingest`` works on that day)."""
    body: dict[str, Any] = {"dag_run_id": run_id, "conf": {}, "logical_date": None}
    if day is not None:
        body["logical_date"] = iso(logical_date(day))
    resp = client.request("POST", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", json=body)
    assert resp.status_code == 200, f"triggering {dag_id}: HTTP {resp.status_code} {resp.text}"


def run_state(client: AirflowClient, dag_id: str, run_id: str) -> str:
    resp = client.request("GET", _run_path(dag_id, run_id))
    assert resp.status_code == 200, resp.text
    return str(resp.json()["state"])


def task_instances(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's task instances by task id (their current try)."""
    resp = client.request(
        "GET", f"{_run_path(dag_id, run_id)}/taskInstances", params={"limit": 100}
    )
    assert resp.status_code == 200, resp.text
    return {ti["task_id"]: ti for ti in resp.json()["task_instances"]}


def day_task_instances(
    client: AirflowClient, dag_id: str, first: dt.date, last: dt.date
) -> dict[tuple[dt.date, str], dict[str, Any]]:
    """(day, task id) -> every task instance of the runs for ``first..last``."""
    resp = client.request(
        "GET",
        f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/~/taskInstances",
        params={
            "logical_date_gte": iso(logical_date(first)),
            "logical_date_lte": iso(logical_date(last)),
            "limit": 1000,
        },
    )
    assert resp.status_code == 200, resp.text
    return {
        (parse_time(ti["logical_date"]).date(), ti["task_id"]): ti
        for ti in resp.json()["task_instances"]
    }


def day_states(
    client: AirflowClient, dag_id: str, first: dt.date, last: dt.date
) -> dict[tuple[dt.date, str], str | None]:
    """(day, task id) -> state of every task instance of the runs for ``first..last``."""
    return {k: ti["state"] for k, ti in day_task_instances(client, dag_id, first, last).items()}


def states(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, str | None]:
    return {k: v["state"] for k, v in task_instances(client, dag_id, run_id).items()}


def tries(client: AirflowClient, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """Every try of a task instance (Airflow's history and the current one), by try number."""
    resp = client.request(
        "GET", f"{_run_path(dag_id, run_id)}/taskInstances/{quote(task_id, safe='')}/tries"
    )
    if resp.status_code == 404:
        return []
    assert resp.status_code == 200, resp.text
    return sorted(resp.json()["task_instances"], key=lambda t: int(t["try_number"]))


def task_log(client: AirflowClient, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    """The whole log of one try, as text (Airflow's structured lines, one per line)."""
    resp = client.request(
        "GET",
        f"{_run_path(dag_id, run_id)}/taskInstances/{quote(task_id, safe='')}/logs/{try_number}",
        params={"full_content": "true"},  # answered as JSON (the client sends no Accept)
    )
    assert resp.status_code == 200, resp.text
    lines = []
    for entry in resp.json()["content"]:
        if isinstance(entry, dict):
            lines.append(" ".join(str(v) for v in entry.values()))
        else:
            lines.append(str(entry))
    return "\n".join(lines)


def wait_for_run(client: AirflowClient, dag_id: str, run_id: str, timeout: float) -> str:
    """The run's final state (success or failed), waiting up to ``timeout`` s."""
    return wait_for(
        f"run {run_id} of {dag_id} to finish",
        lambda: s if (s := run_state(client, dag_id, run_id)) in TERMINAL else None,
        timeout,
        interval=2.0,
        status=lambda: states(client, dag_id, run_id),
    )


def clear_failed(client: AirflowClient, dag_id: str, run_id: str, task_ids: list[str]) -> None:
    """Clear the failed tasks (and those downstream of them) of one run, as the UI does."""
    resp = client.request(
        "POST",
        f"/api/v2/dags/{quote(dag_id, safe='')}/clearTaskInstances",
        json={
            "dry_run": False,  # the API's default is a dry run
            "dag_run_id": run_id,
            "task_ids": task_ids,
            "include_downstream": True,
            "only_failed": True,
            "reset_dag_runs": True,
        },
    )
    assert resp.status_code == 200, f"clearing {task_ids} of {run_id}: {resp.text}"
    cleared = {ti["task_id"] for ti in resp.json()["task_instances"]}
    assert set(task_ids) <= cleared, cleared


@dataclass(frozen=True)
class Try:
    """One try of a task instance, as the API reports it."""

    task_id: str
    number: int
    state: str | None
    worker: str
    start: dt.datetime | None
    end: dt.datetime | None

    @property
    def seconds(self) -> float:
        """How long the try ran (NaN while it runs)."""
        return (self.end - self.start).total_seconds() if self.start and self.end else math.nan

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Try:
        def when(key: str) -> dt.datetime | None:
            return parse_time(raw[key]) if raw.get(key) else None

        return cls(
            task_id=raw["task_id"],
            number=int(raw["try_number"]),
            state=raw.get("state"),
            worker=str(raw.get("hostname") or "").split("@", 1)[0],
            start=when("start_date"),
            end=when("end_date"),
        )


def overlapping(all_tries: Iterable[Try]) -> list[tuple[Try, Try]]:
    """Pairs of tries of one task instance whose start..end intervals overlap (a try still
    running ends now)."""
    now = dt.datetime.now(dt.UTC)
    timed = sorted(((t.start, t.end or now, t) for t in all_tries if t.start), key=lambda s: s[0])
    return [(a[2], b[2]) for a, b in itertools.pairwise(timed) if b[0] < a[1]]


def gaps(all_tries: list[Try]) -> list[float]:
    """Seconds from the end of each try to the start of the next (the retry delays)."""
    return [
        (b.start - a.end).total_seconds() if a.end and b.start else math.nan
        for a, b in itertools.pairwise(all_tries)
    ]


def kill_tree(pid: int) -> list[int]:
    """SIGKILL process group ``pid`` and every process under it, wherever its group.

    Killing the group alone is not losing a worker: the Task SDK starts each task process in
    a group of its own, so it would live on as an orphan. The pids killed.
    """
    import psutil

    try:
        leader = psutil.Process(pid)
        below = leader.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    groups = {pid}
    for proc in below:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            groups.add(os.getpgid(proc.pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for proc in below:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    # Gone (and reaped, if ours) before this returns: `stack.up` must see them dead.
    _gone, alive = psutil.wait_procs([leader, *below], timeout=10)
    assert not alive, f"still alive after SIGKILL: {alive}"
    return [pid, *(p.pid for p in below)]


def kill_frozen_when(pid: int, ready: Callable[[], T | None]) -> T | None:
    """Freeze process group ``pid`` (SIGSTOP), ask ``ready``, and if it says something (not
    None) SIGKILL the whole tree while frozen and return that; else let it run on."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        seen = ready()
        if seen is not None:
            kill_tree(pid)
        return seen
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP process group ``pid`` for the block, SIGCONT after (also on failure)."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def service_pid(settings: Settings, name: str) -> int:
    from dslc.dev import stack

    running = stack.running(settings)
    assert name in running, f"{name} is not running: {sorted(running)}"
    return running[name].pid


def restart_missing(settings: Settings) -> list[str]:
    """``stack.up``: start what is not running (and wait until all is healthy); the names."""
    from dslc.dev import stack

    missing = [n for n in stack.services(settings) if n not in stack.running(settings)]
    stack.up(timeout=300, settings=settings)
    return missing


def unhealthy(settings: Settings) -> list[str]:
    """The services whose health probe fails (an empty list: all healthy)."""
    from dslc.dev import stack

    return sorted(name for name, ok in stack.probe(settings).items() if not ok)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def published(lake: Lake, ds: str) -> Published:
    """Per zone/dataset of the day: (content hash, rows) of its published partition, or None.

    A published partition must be whole: every file its manifest names is there, and the
    bytes hash to the manifest's content hash and hold its row count.
    """
    import pyarrow.parquet as pq

    out: Published = {}
    for zone, dataset in ZONES:
        key = Lake.partition(zone, dataset, ds)
        manifest = lake.manifest(key)
        if manifest is None:
            out[f"{zone}/{dataset}"] = None
            continue
        assert len(manifest.files) == 1, manifest
        data = lake.read_bytes(key, manifest.files[0])
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        assert digest == manifest.content_hash, f"{lake.uri(key)}: {digest} != manifest {manifest}"
        rows = pq.read_metadata(io.BytesIO(data)).num_rows
        assert rows == manifest.rows, f"{lake.uri(key)}: {rows} rows, manifest says {manifest}"
        out[f"{zone}/{dataset}"] = (manifest.content_hash, manifest.rows)
    return out


def reference(tmp_path: Path, wanted: Iterable[dt.date]) -> dict[str, Published]:
    """The days as an undisturbed run publishes them: the functions the ingest tasks call, on
    a local file lake."""
    from dslc.data import ingest, sources

    local = Lake(f"file://{tmp_path / 'reference-lake'}")
    out = {}
    for day in wanted:
        ds = day.isoformat()
        sources.replay(local, day, day)
        ingest.extract_day(local, ds)
        ingest.validate_day(local, ds)
        ingest.build_features(local, ds)
        out[ds] = published(local, ds)
    return out


def terminate_connections(database_url: str, database: str) -> int:
    """``pg_terminate_backend`` every session on ``database`` (what a failover or a DBA's
    kill does to clients); the number of sessions ended."""
    import psycopg2

    conn = psycopg2.connect(database_url, connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0
