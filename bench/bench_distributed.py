"""B7: the distributed stack (PostgreSQL, CeleryExecutor with two workers, S3) against the
embedded one (SQLite, LocalExecutor, local files), both started in this run, one after the other.

On each stack, through the REST API: land ``days`` days (14; small: 5), backfill ``ingest`` over
them, train once on them, then run a chain of ten no-op tasks (``bench/dags/noop_chain.py``)
``chain_runs`` times, one run after the other. Run times are the API's run start/end stamps,
with the client's wall clock beside them. The per-task gap is a task's start minus the latest
end of its upstream tasks (task instances' dates, from the API), split into the scheduler
noticing (upstream end -> ``scheduled``), queueing (-> ``queued``) and the executor starting it
(-> start). CPU is counted around each phase: the machine's, the stack's own (its services'
process trees, which the neighbours' load on a shared machine does not move), the scheduler
process's, and the shared PostgreSQL and Redis servers'.

The chain DAG never enters ``dags/``: each stack runs on a temporary project root
(``DSLC_PROJECT_ROOT``) whose ``dags/`` links the real DAG files and the chain, and whose
``plugins`` links the real ``plugins/``; ``dslc`` itself is the installed package, and
``DSLC_GIT_SHA`` stands in for the checkout the temporary root is not.

    python -m bench.bench_distributed [--small]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
CHAIN_FILE = Path(__file__).resolve().parent / "dags" / "noop_chain.py"
CHAIN_DAG = "bench_noop_chain"
FIRST_DAY = dt.date(2013, 1, 1)
SMALL_DAYS, FULL_DAYS = 5, 14
SMALL_CHAIN_RUNS, FULL_CHAIN_RUNS = 2, 5
STACKS = (("embedded", False), ("distributed", True))
RUN_TIMEOUT = 1800.0
POLL = 0.5
# Small: a 5-day window trains on 3 days (1 valid, 1 holdout), under the settings' floors.
SMALL_ENV = {"DSLC_TRAIN_MIN_DAYS": "3", "DSLC_TRAIN_MIN_ROWS": "100"}
SMALL_TRAIN = {"valid_days": 1, "holdout_days": 1, "max_iter": 20}
# Airflow's default when neither the stack nor the DAG sets it ([core] max_active_tasks_per_dag).
DEFAULT_MAX_ACTIVE_TASKS = 16


# --- where the stacks take their DAGs from ---------------------------------------------------


def project_root(into: Path) -> Path:
    """A project root whose dags/ links the real DAG files plus the chain, plugins/ the real one."""
    dags = into / "dags"
    dags.mkdir(parents=True)
    for path in sorted((ROOT / "dags").glob("*.py")):
        (dags / path.name).symlink_to(path)
    (dags / CHAIN_FILE.name).symlink_to(CHAIN_FILE)
    (into / "plugins").symlink_to(ROOT / "plugins")
    return into


def _git_sha() -> str | None:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
    )
    return (out.stdout.strip() or None) if out.returncode == 0 else None


@contextlib.contextmanager
def bench_stack(distributed: bool, small: bool) -> Iterator[Any]:
    """One ephemeral stack (see tests/support.py) on a project root that also holds the chain."""
    from tests.support import dslc_env, ephemeral_stack

    tmp = Path(tempfile.mkdtemp(prefix="dslc-bench-root-"))
    try:
        env = {"DSLC_PROJECT_ROOT": str(project_root(tmp / "project")), "DSLC_GIT_SHA": _git_sha()}
        env.update(SMALL_ENV if small else {})
        prefix = "dslc-bench-dist-" if distributed else "dslc-bench-emb-"
        with (
            dslc_env(**env),
            ephemeral_stack(prefix=prefix, up_timeout=600, distributed=distributed) as settings,
        ):
            yield settings
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def knobs(settings: Any) -> dict[str, Any]:
    """The concurrency settings the stack's Airflow runs with (from the env it is started with)."""
    from dslc.dev import stack
    from dslc.dev.stack.distributed import load_profile

    env = stack.airflow_env(settings)
    profile = load_profile(settings)
    workers = profile.workers if profile is not None else None
    concurrency = env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY") if workers else None
    parallelism = int(env["AIRFLOW__CORE__PARALLELISM"])
    max_tasks = int(env.get("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", DEFAULT_MAX_ACTIVE_TASKS))
    slots = min(parallelism, max_tasks)
    if workers and concurrency:
        slots = min(slots, workers * int(concurrency))
    return {
        "executor": env["AIRFLOW__CORE__EXECUTOR"],
        "database": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split(":", 1)[0],
        "parallelism": parallelism,
        "max_active_tasks_per_dag": max_tasks,
        "celery_workers": workers,
        "worker_concurrency": int(concurrency) if concurrency else None,
        "task_slots": slots,
        "scheduler_idle_sleep_s": float(env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"]),
    }


# --- CPU around a phase ----------------------------------------------------------------------


SHARED_SERVERS = ("postgres", "redis-server")


def cpu_sample(settings: Any) -> dict[str, Any]:
    """CPU seconds so far: the machine's busy time, each service's process tree, the scheduler
    process alone, and the shared PostgreSQL and Redis servers (all their users).

    A service's tree is its session (each service is started as a session leader), counting
    every live process and, through ``children_*``, the children it has reaped: a task process
    is counted once its executor has waited for it. On a shared machine the stacks' own CPU is
    the figure that does not move with the neighbours' load.
    """
    import psutil

    from dslc.dev import stack

    t = psutil.cpu_times()
    records = stack.running(settings)
    session_of = {r.pid: name for name, r in records.items()}
    services = dict.fromkeys(records, 0.0)
    shared = 0.0
    scheduler = math.nan
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error, OSError):
            name = session_of.get(os.getsid(proc.pid))
            if name is None and proc.info["name"] not in SHARED_SERVERS:
                continue
            c = proc.cpu_times()
            total = c.user + c.system + c.children_user + c.children_system
            if name is None:
                shared += total
                continue
            services[name] += total
            if name == "scheduler" and proc.pid == records[name].pid:
                scheduler = c.user + c.system
    idle = t.idle + getattr(t, "iowait", 0.0)
    return {"busy": sum(t) - idle, "services": services, "scheduler": scheduler, "shared": shared}


def cpu_delta(before: dict[str, Any], after: dict[str, Any], wall: float) -> dict[str, Any]:
    """What a phase of ``wall`` seconds cost in CPU, from two :func:`cpu_sample` s."""
    busy = after["busy"] - before["busy"]
    services = {
        k: round(v - before["services"].get(k, 0.0), 2) for k, v in after["services"].items()
    }
    stack_cpu = sum(services.values())
    scheduler = after["scheduler"] - before["scheduler"]
    # Where the tasks ran: the Celery workers' trees, or the scheduler's (LocalExecutor forks
    # its workers, and they the tasks, from the scheduler) less the scheduler process itself.
    workers = [v for k, v in services.items() if k.startswith("worker-")]
    tasks = sum(workers) if workers else services.get("scheduler", 0.0) - scheduler
    shared = after["shared"] - before["shared"]
    cores = len(os.sched_getaffinity(0))

    def per_wall(x: float) -> float | None:
        return round(x / wall, 2) if wall > 0 else None

    return {
        "cores": cores,
        "machine_busy_cpu_s": round(busy, 1),
        # Busy cores on average over the phase (of `cores`): near `cores`, it was CPU-bound.
        "machine_busy_cores": per_wall(busy),
        "stack_cpu_s": round(stack_cpu, 1),
        "stack_cores": per_wall(stack_cpu),
        "task_cpu_s": round(tasks, 1),
        "service_cpu_s": services,
        "shared_servers_cpu_s": round(shared, 1),
        # Everything else on the machine meanwhile: the neighbours' load.
        "others_cores": per_wall(max(busy - stack_cpu - shared, 0.0)),
        "scheduler_cpu_s": round(scheduler, 2),
        # The scheduler's own share of a core: its loop (and, on Celery, polling the result
        # backend) runs every idle-sleep whether or not there is work.
        "scheduler_cores": per_wall(scheduler),
    }


# --- runs and task instances through the REST API --------------------------------------------


def _t(value: str | None) -> dt.datetime | None:
    from dslc.dev.airflow_client import parse_time

    return parse_time(value) if value else None


def _s(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def upstreams(client: Any, dag_id: str) -> dict[str, list[str]]:
    """Each task's upstream task ids, from the DAG's structure in the API."""
    resp = client.request("GET", f"/api/v2/dags/{quote(dag_id, safe='')}/tasks")
    resp.raise_for_status()
    up: dict[str, list[str]] = {t["task_id"]: [] for t in resp.json()["tasks"]}
    for t in resp.json()["tasks"]:
        for down in t.get("downstream_task_ids", []):
            up[down].append(t["task_id"])
    return up


def task_instances(client: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    resp = client.request("GET", path, params={"limit": 1000})
    resp.raise_for_status()
    return list(resp.json()["task_instances"])


def gaps(tis: list[dict[str, Any]], up: dict[str, list[str]]) -> list[dict[str, float | None]]:
    """For each task that ran after its upstream tasks: the gap and its three parts (s)."""
    ended = {ti["task_id"]: _t(ti.get("end_date")) for ti in tis}
    out = []
    for ti in tis:
        parents = [ended.get(p) for p in up.get(ti["task_id"], [])]
        start = _t(ti.get("start_date"))
        if not parents or None in parents or start is None or ti.get("state") != "success":
            continue
        ready = max(p for p in parents if p is not None)
        scheduled, queued = _t(ti.get("scheduled_when")), _t(ti.get("queued_when"))
        out.append(
            {
                "gap_s": _s(ready, start),
                "notice_s": _s(ready, scheduled),
                "queue_s": _s(scheduled, queued),
                "start_s": _s(queued, start),
            }
        )
    return out


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1), linear between the closest ranks; None without values."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 3)


def gap_stats(rows: list[dict[str, float | None]]) -> dict[str, Any]:
    stats: dict[str, Any] = {"gaps": len(rows)}
    for key in ("gap_s", "notice_s", "queue_s", "start_s"):
        values = [r[key] for r in rows if r[key] is not None]
        stats[f"{key[:-2]}_median_s"] = pct(values, 0.5)
    values = [r["gap_s"] for r in rows if r["gap_s"] is not None]
    stats["gap_p90_s"] = pct(values, 0.9)
    # A chain's run time follows the mean, which a few long gaps move and the median hides.
    stats["gap_mean_s"] = round(statistics.fmean(values), 3) if values else None
    return stats


def task_stats(tis: list[dict[str, Any]]) -> dict[str, Any]:
    """Median duration per task id, and how many task slots the runs kept busy on average."""
    by_task: dict[str, list[float]] = {}
    # In the order the tasks ran (a run's chain order), not the API's.
    for ti in sorted(tis, key=lambda ti: ti.get("start_date") or ""):
        d = _duration(ti)
        if d is not None and ti.get("state") == "success":
            by_task.setdefault(ti["task_id"], []).append(d)
    return {task: pct(ds, 0.5) for task, ds in by_task.items()}


def run_span(runs: list[dict[str, Any]]) -> float:
    start = min(_t(r["start_date"]) for r in runs)
    end = max(_t(r["end_date"]) for r in runs)
    return round((end - start).total_seconds(), 2)


def busy_task_seconds(tis: list[dict[str, Any]]) -> float:
    return sum(d for ti in tis if (d := _duration(ti)) is not None)


def wait_run(client: Any, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = client.get_dag_run(dag_id, run_id)
    while run.get("state") not in ("success", "failed"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} run {run_id} did not end within {timeout} s")
        time.sleep(POLL)
        run = client.get_dag_run(dag_id, run_id)
    return run


def wait_idle(client: Any, dag_ids: tuple[str, ...], timeout: float = 300.0) -> None:
    """Until no run of ``dag_ids`` is queued or running (the scheduled runs a new stack makes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.recent_runs(d, states=("queued", "running")) for d in dag_ids):
            return
        time.sleep(1.0)
    raise TimeoutError(f"runs of {', '.join(dag_ids)} still active after {timeout} s")


# --- the three phases ------------------------------------------------------------------------


def backfill_ingest(client: Any, settings: Any, days: int) -> dict[str, Any]:
    """Backfill ``ingest`` over the landed days through the REST API; spans, gaps, CPU."""
    from dslc.dev import backfill
    from dslc.dev.airflow_client import backfill_window

    last = FIRST_DAY + dt.timedelta(days=days - 1)
    before, t = cpu_sample(settings), time.perf_counter()
    ok = backfill.backfill_cli("ingest", FIRST_DAY, last, "failed", wait=True, settings=settings)
    wall = round(time.perf_counter() - t, 2)
    after = cpu_sample(settings)
    runs = client.list_dag_runs("ingest", *backfill_window(FIRST_DAY, last))
    up = upstreams(client, "ingest")
    tis = [ti for r in runs for ti in task_instances(client, "ingest", r["dag_run_id"])]
    span = run_span(runs)
    per_run = [_s(_t(r["start_date"]), _t(r["end_date"])) for r in runs]
    made = client.request("GET", "/api/v2/backfills", params={"dag_id": "ingest"}).json()
    return {
        "ok": ok,
        "runs": len(runs),
        "states": sorted({r["state"] for r in runs}),
        "wall_s": wall,
        "span_s": span,
        "s_per_day": round(span / days, 2),
        "wall_s_per_day": round(wall / days, 2),
        "run_median_s": pct(per_run, 0.5),
        "task_median_s": task_stats(tis),
        "tasks_per_run": len(up),
        "busy_task_s": round(busy_task_seconds(tis), 1),
        # Task slots busy on average over the span: how much of the runs ran side by side.
        "mean_busy_slots": round(busy_task_seconds(tis) / span, 2),
        "backfill_max_active_runs": max(
            (b["max_active_runs"] for b in made.get("backfills", [])), default=None
        ),
        **gap_stats([g for r in runs for g in gaps(_of(tis, r), up)]),
        **cpu_delta(before, after, wall),
        "tis": len(tis),
    }


def _of(tis: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    return [ti for ti in tis if ti["dag_run_id"] == run["dag_run_id"]]


def train_once(client: Any, settings: Any, days: int, small: bool) -> dict[str, Any]:
    """One ``train`` run over the backfilled window, triggered through the REST API."""
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    conf: dict[str, Any] = {
        "window_end": last.isoformat(),
        "window_days": days,
        "force_promote": True,
        "reason": "bench B7",
        **(SMALL_TRAIN if small else {}),
    }
    wait_idle(client, ("train",))
    before, t = cpu_sample(settings), time.perf_counter()
    run = client.trigger_dag_run("train", conf)
    run = wait_run(client, "train", str(run["dag_run_id"]))
    wall = round(time.perf_counter() - t, 2)
    after = cpu_sample(settings)
    tis = task_instances(client, "train", run["dag_run_id"])
    return {
        "state": run["state"],
        "wall_s": wall,
        "run_s": _s(_t(run["start_date"]), _t(run["end_date"])),
        "task_median_s": task_stats(tis),
        **gap_stats(gaps(tis, upstreams(client, "train"))),
        **cpu_delta(before, after, wall),
        "conf": conf,
    }


def noop_chain(client: Any, settings: Any, runs: int) -> dict[str, Any]:
    """``runs`` runs of the no-op chain, one after the other; the per-task gap over all, and
    where each run's time went (run start -> first task, tasks, gaps, last task -> run end)."""
    from dslc.dev import backfill
    from dslc.dev.console import make_console

    backfill.wait_for_dag(client, CHAIN_DAG, make_console())
    up = upstreams(client, CHAIN_DAG)
    rows: list[dict[str, float | None]] = []
    runs_out: list[dict[str, Any]] = []
    durations: list[float] = []
    before, t = cpu_sample(settings), time.perf_counter()
    for i in range(runs):
        run = client.trigger_dag_run(CHAIN_DAG, run_id=f"bench__{i}__{time.time_ns()}")
        run = wait_run(client, CHAIN_DAG, str(run["dag_run_id"]))
        tis = task_instances(client, CHAIN_DAG, run["dag_run_id"])
        rows.extend(gaps(tis, up))
        durations.extend(d for ti in tis if (d := _duration(ti)) is not None)
        runs_out.append(_chain_run(run, tis))
    wall = round(time.perf_counter() - t, 2)
    return {
        "runs": runs,
        "states": [r["state"] for r in runs_out],
        "tasks": len(up),
        "run_s": [r["run_s"] for r in runs_out],
        "run_median_s": pct([r["run_s"] for r in runs_out], 0.5),
        "task_median_s": pct(durations, 0.5),
        "lead_median_s": pct([r["lead_s"] for r in runs_out], 0.5),
        "tail_median_s": pct([r["tail_s"] for r in runs_out], 0.5),
        **gap_stats(rows),
        "gap_values_s": [round(r["gap_s"], 3) for r in rows if r["gap_s"] is not None],
        **cpu_delta(before, after=cpu_sample(settings), wall=wall),
    }


def _duration(ti: dict[str, Any]) -> float | None:
    return _s(_t(ti.get("start_date")), _t(ti.get("end_date")))


def _chain_run(run: dict[str, Any], tis: list[dict[str, Any]]) -> dict[str, Any]:
    start, end = _t(run["start_date"]), _t(run["end_date"])
    first = min((s for ti in tis if (s := _t(ti.get("start_date"))) is not None), default=None)
    last = max((e for ti in tis if (e := _t(ti.get("end_date"))) is not None), default=None)
    return {
        "state": run["state"],
        "run_s": _s(start, end),
        "lead_s": _s(start, first),
        "tail_s": _s(last, end),
    }


def measure(distributed: bool, small: bool) -> dict[str, Any]:
    """Start one stack, land the days, then backfill, train and the chain on it."""
    from dslc.data import sources
    from dslc.dev.airflow_client import AirflowClient
    from dslc.dev.backfill import wait_for_dag
    from dslc.dev.console import make_console
    from dslc.lake import get_lake

    days = SMALL_DAYS if small else FULL_DAYS
    t = time.perf_counter()
    with bench_stack(distributed, small) as settings:
        out: dict[str, Any] = {"up_s": round(time.perf_counter() - t, 1), **knobs(settings)}
        t = time.perf_counter()
        sources.replay(get_lake(settings.lake), FIRST_DAY, FIRST_DAY + dt.timedelta(days=days - 1))
        out["land_s"] = round(time.perf_counter() - t, 1)
        out["lake"] = settings.lake.split(":", 1)[0]
        with AirflowClient.from_settings(settings) as client:
            client.login()
            for dag_id in ("ingest", "train", CHAIN_DAG):
                wait_for_dag(client, dag_id, make_console())
            # The runs a new stack schedules by itself (today's, which skip) are done first.
            wait_idle(client, ("ingest", "train", "drift_monitor"))
            out["ingest_backfill"] = backfill_ingest(client, settings, days)
            out["train"] = train_once(client, settings, days, small)
            out["chain"] = noop_chain(
                client, settings, SMALL_CHAIN_RUNS if small else FULL_CHAIN_RUNS
            )
    return out


# --- comparison and the scaling argument -----------------------------------------------------


def bounds(stack: dict[str, Any], days: int) -> dict[str, Any]:
    """Three lower bounds on a backfill's seconds per day, from this stack's measured figures.

    * latency: each run is a chain, so at most ``min(days, backfill max_active_runs)`` runs
      progress at once, each taking (sum of its task times + tasks x the no-op chain's mean
      gap);
    * slots: the task slots (parallelism, workers x worker_concurrency) hold every task's time;
    * cpu: the machine's cores hold every CPU second the stack's processes burnt (the shared
      PostgreSQL and Redis servers, which other users share too, are left out).
    The largest is what limits the backfill; which one it is says what more days or more
    workers buy.
    """
    b = stack["ingest_backfill"]
    task_s = sum(v for v in b["task_median_s"].values() if v is not None)
    gap = stack["chain"]["gap_mean_s"] or 0.0
    n = b["tasks_per_run"]
    concurrent_runs = min(days, b["backfill_max_active_runs"] or days)
    limits = {
        "latency": (task_s + n * gap) / concurrent_runs,
        "slots": b["busy_task_s"] / days / stack["task_slots"],
        "cpu": b["stack_cpu_s"] / days / b["cores"],
    }
    binding = max(limits, key=lambda k: limits[k])
    return {
        "run_task_s": round(task_s, 2),
        "run_gap_s": round(n * gap, 2),
        "concurrent_runs": concurrent_runs,
        **{f"{k}_s_per_day": round(v, 2) for k, v in limits.items()},
        "cpu_s_per_day_total": round(b["stack_cpu_s"] / days, 2),
        "task_cpu_s_per_day": round(b["task_cpu_s"] / days, 2),
        "binding": binding,
        "predicted_s_per_day": round(limits[binding], 2),
        "measured_s_per_day": b["s_per_day"],
    }


def scaling_text(result: dict[str, Any]) -> str:
    """The scaling argument, in words, from the measured figures of both stacks."""
    lines: list[str] = []
    for name, _ in STACKS:
        s, b = result[name], result[name]["bounds"]
        lines.append(
            f"{name}: a run is {b['run_task_s']} s of tasks + {b['run_gap_s']} s of gaps "
            f"({s['ingest_backfill']['tasks_per_run']} x {s['chain']['gap_mean_s']} s mean gap); "
            f"{b['concurrent_runs']} runs at once -> latency bound {b['latency_s_per_day']} "
            f"s/day; {s['task_slots']} slots -> {b['slots_s_per_day']} s/day; "
            f"{b['cpu_s_per_day_total']} CPU s/day on {s['ingest_backfill']['cores']} cores -> "
            f"{b['cpu_s_per_day']} s/day; measured {b['measured_s_per_day']} s/day "
            f"({b['binding']} binds)."
        )
    e, d = result["embedded"], result["distributed"]
    runs_cap = d["ingest_backfill"]["backfill_max_active_runs"]
    train_gaps = d["train"]["gaps"]
    lines.append(
        f"Task CPU per day: embedded {e['bounds']['task_cpu_s_per_day']} s, distributed "
        f"{d['bounds']['task_cpu_s_per_day']} s: on a machine where the CPU bound binds, the "
        "per-day ratio of the stacks is the ratio of their CPU per day, not of their gaps."
    )
    lines.append(
        "Days: every bound is per day once min(days, max_active_runs) runs are in flight, so "
        "the wall time grows linearly with days, plus a ramp and a tail of about one run per "
        f"{_part_runs()}-run backfill part (`dslc backfill` runs a long window in parts). The "
        "gap adds tasks x gap to each run's latency but costs throughput only while fewer "
        "runs than slots are active: a short window, or a max_active_runs=1 DAG such as "
        f"train, whose run pays {train_gaps} gaps in full ({train_gaps} x "
        f"{d['chain']['gap_mean_s']} s distributed, {train_gaps} x "
        f"{e['chain']['gap_mean_s']} s embedded, means of the no-op chain)."
    )
    lines.append(
        f"Workers: each Celery worker adds worker_concurrency ({d['worker_concurrency']}) "
        f"slots and {d['parallelism'] // d['celery_workers']} of parallelism, so the slots "
        "bound falls as 1/workers; the CPU bound falls only with the cores the workers bring "
        "(none here: every process shares these cores), and no bound falls below the latency "
        f"one once the backfill's max_active_runs ({runs_cap}) runs are in flight: raise that "
        f"with the workers. The scheduler process took {d['ingest_backfill']['scheduler_cores']} "
        f"of a core during the distributed backfill ({e['ingest_backfill']['scheduler_cores']} "
        "embedded), a cost that grows with the runs and tasks in flight, not with the workers."
    )
    return "\n".join(lines)


def _part_runs() -> int:
    from dslc.dev.backfill import BACKFILL_PART_RUNS

    return BACKFILL_PART_RUNS


def run(small: bool = False) -> dict[str, Any]:
    days = SMALL_DAYS if small else FULL_DAYS
    result: dict[str, Any] = {
        "benchmark": "B7 distributed",
        "days": days,
        "chain_runs": SMALL_CHAIN_RUNS if small else FULL_CHAIN_RUNS,
    }
    for name, distributed in STACKS:
        result[name] = measure(distributed, small)
        result[name]["bounds"] = bounds(result[name], days)
    emb, dist = result["embedded"], result["distributed"]
    result["celery_vs_embedded_per_day"] = round(
        dist["ingest_backfill"]["s_per_day"] / emb["ingest_backfill"]["s_per_day"], 3
    )
    result["train_ratio"] = round(dist["train"]["run_s"] / emb["train"]["run_s"], 3)
    # Load-independent companions of the per-day ratio: the stacks' own CPU per day.
    for key in ("stack_cpu_s", "task_cpu_s"):
        result[f"celery_vs_embedded_{key}"] = round(
            dist["ingest_backfill"][key] / emb["ingest_backfill"][key], 3
        )
    for key in ("median", "p90", "mean"):
        result[f"gap_{key}_ratio"] = round(
            dist["chain"][f"gap_{key}_s"] / emb["chain"][f"gap_{key}_s"], 3
        )
    result["meets"] = {
        "celery_not_slower_per_day": result["celery_vs_embedded_per_day"] <= 1.0,
        # Not worse in the middle nor in the tail.
        "gap_postgres_le_sqlite": max(result["gap_median_ratio"], result["gap_p90_ratio"]) <= 1.0,
    }
    result["meets_target"] = not small and all(result["meets"].values())
    result["scaling"] = scaling_text(result)
    return result


def table(result: dict[str, Any]) -> str:
    emb, dist = result["embedded"], result["distributed"]
    rows: list[tuple[str, Any, Any]] = [
        ("executor / metadata DB", _stack_label(emb), _stack_label(dist)),
        ("task slots", emb["task_slots"], dist["task_slots"]),
        ("stack up (s)", emb["up_s"], dist["up_s"]),
    ]
    rows += _rows(result, "ingest_backfill", BACKFILL_ROWS)
    for task in emb["ingest_backfill"]["task_median_s"]:
        rows.append(
            (
                f"  {task}, median (s)",
                emb["ingest_backfill"]["task_median_s"][task],
                dist["ingest_backfill"]["task_median_s"].get(task),
            )
        )
    rows += _rows(result, "train", TRAIN_ROWS)
    for task in emb["train"]["task_median_s"]:
        rows.append(
            (
                f"  {task} (s)",
                emb["train"]["task_median_s"][task],
                dist["train"]["task_median_s"].get(task),
            )
        )
    rows += _rows(result, "chain", CHAIN_ROWS)
    rows.append(("  gap: notice / queue / start (s)", _parts(emb["chain"]), _parts(dist["chain"])))
    for key in ("latency", "slots", "cpu"):
        rows.append(
            (
                f"{key} bound (s/day)",
                emb["bounds"][f"{key}_s_per_day"],
                dist["bounds"][f"{key}_s_per_day"],
            )
        )
    width = max(len(r[0]) for r in rows)
    head = f"{'':<{width}}  {'embedded':>22}  {'distributed':>22}"
    body = [f"{n:<{width}}  {_fmt(e):>22}  {_fmt(d):>22}" for n, e, d in rows]
    meets = ", ".join(f"{k}={v}" for k, v in result["meets"].items())
    tail = [
        f"{result['days']}-day ingest backfill per day, Celery/embedded: "
        f"{result['celery_vs_embedded_per_day']}x (stack CPU per day "
        f"{result['celery_vs_embedded_stack_cpu_s']}x, task CPU "
        f"{result['celery_vs_embedded_task_cpu_s']}x); train run {result['train_ratio']}x; "
        f"no-op chain gap PostgreSQL/SQLite median {result['gap_median_ratio']}x, p90 "
        f"{result['gap_p90_ratio']}x, mean {result['gap_mean_ratio']}x ({meets})",
        result["scaling"],
    ]
    return "\n".join([head, *body, *tail])


BACKFILL_ROWS = (
    ("ingest backfill span (s)", "span_s"),
    ("ingest backfill wall, client (s)", "wall_s"),
    ("ingest backfill s/day", "s_per_day"),
    ("  median run (s)", "run_median_s"),
    ("  gap median / p90 / mean (s)", ("gap_median_s", "gap_p90_s", "gap_mean_s")),
    ("  mean busy slots", "mean_busy_slots"),
    ("  stack CPU (s)", "stack_cpu_s"),
    ("  of which tasks (s)", "task_cpu_s"),
    ("  scheduler process (s)", "scheduler_cpu_s"),
    ("  PostgreSQL + Redis, all users (s)", "shared_servers_cpu_s"),
    (
        "  busy cores: machine / stack / others",
        ("machine_busy_cores", "stack_cores", "others_cores"),
    ),
)
TRAIN_ROWS = (
    ("train run (s)", "run_s"),
    ("train wall, client (s)", "wall_s"),
    ("  gap median (s)", "gap_median_s"),
    ("  stack CPU (s)", "stack_cpu_s"),
    (
        "  busy cores: machine / stack / others",
        ("machine_busy_cores", "stack_cores", "others_cores"),
    ),
)
CHAIN_ROWS = (
    ("no-op chain run, median (s)", "run_median_s"),
    ("  run start -> first task (s)", "lead_median_s"),
    ("  no-op task, median (s)", "task_median_s"),
    ("  gap median / p90 / mean (s)", ("gap_median_s", "gap_p90_s", "gap_mean_s")),
    ("  last task -> run end (s)", "tail_median_s"),
    ("  scheduler process, cores", "scheduler_cores"),
)


def _rows(result: dict[str, Any], phase: str, spec: tuple[Any, ...]) -> list[tuple[str, Any, Any]]:
    out = []
    for label, key in spec:
        keys = key if isinstance(key, tuple) else (key,)
        emb, dist = result["embedded"][phase], result["distributed"][phase]
        out.append(
            (
                label,
                " / ".join(_fmt(emb[k]) for k in keys),
                " / ".join(_fmt(dist[k]) for k in keys),
            )
        )
    return out


def _stack_label(stack: dict[str, Any]) -> str:
    return f"{stack['executor'].removesuffix('Executor')}/{stack['database'].split('+')[0]}"


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _parts(chain: dict[str, Any]) -> str:
    keys = ("notice_median_s", "queue_median_s", "start_median_s")
    return " / ".join(_fmt(chain[k]) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    result = run(small=args.small)
    print(table(result))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
