"""The ingest DAG on the real embedded stack: one run, and a backfill, through the REST API.

Starts its own stack (free loopback ports, a temp DSLC_HOME), lands the days, then times:
a single triggered run on a cold stack, a second one warm, and a backfill of ``days`` days
(31 in full size; the issue's "31-day backfill"). Wall times are from the API's own run
start/end stamps, plus the client-side wall clock. Context for the figures: a DAG of three
no-op tasks takes ~3.2 s on `airflow standalone` here (BENCHMARKS.md, B4).

``python -m bench.bench_stack [--small]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from typing import Any

SMALL_DAYS, FULL_DAYS = 3, 31


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _wait_runs(client: Any, first: dt.datetime, last: dt.datetime, n: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in client.list_dag_runs("ingest", first, last)]
        if len(runs) >= n and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(1.0)
    raise TimeoutError(f"ingest runs {first}..{last} did not finish within {timeout} s")


def _trigger(client: Any, day: dt.date) -> None:
    resp = client.request(
        "POST",
        "/api/v2/dags/ingest/dagRuns",
        json={"logical_date": f"{day.isoformat()}T00:00:00Z", "dag_run_id": f"bench__{day}"},
    )
    resp.raise_for_status()


def _span(runs: list[dict[str, Any]]) -> float:
    start = min(_parse(r["start_date"]) for r in runs)
    end = max(_parse(r["end_date"]) for r in runs)
    return round((end - start).total_seconds(), 2)


def run(small: bool = False) -> dict[str, Any]:
    from dslc.data import sources
    from dslc.dev import backfill
    from dslc.dev.airflow_client import AirflowClient, backfill_window
    from dslc.dev.console import make_console
    from dslc.lake import Lake
    from tests.support import ephemeral_stack

    days = SMALL_DAYS if small else FULL_DAYS
    result: dict[str, Any] = {"benchmark": "B4 ingest on the embedded stack", "days": days}
    t0 = time.perf_counter()
    with ephemeral_stack(prefix="dslc-bench-") as settings:
        result["up_s"] = round(time.perf_counter() - t0, 1)
        backfill_first = dt.date(2013, 1, 1)
        backfill_last = backfill_first + dt.timedelta(days=days - 1)
        singles = [dt.date(2013, 2, 1), dt.date(2013, 2, 2)]
        lake = Lake(settings.lake)
        sources.replay(lake, backfill_first, backfill_last)
        sources.replay(lake, singles[0], singles[-1])
        with AirflowClient.from_settings(settings) as client:
            client.login()
            backfill.wait_for_dag(client, "ingest", make_console())
            client.set_paused("ingest", False)
            for label, day in zip(("single_cold", "single_warm"), singles, strict=True):
                t = time.perf_counter()
                _trigger(client, day)
                midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
                runs = _wait_runs(client, midnight, midnight, 1, 300)
                result[f"{label}_wall_s"] = round(time.perf_counter() - t, 2)
                result[f"{label}_run_s"] = _span(runs)
                result[f"{label}_state"] = runs[0]["state"]
            t = time.perf_counter()
            ok = backfill.backfill_cli(
                "ingest", backfill_first, backfill_last, "failed", wait=True, settings=settings
            )
            result["backfill_wall_s"] = round(time.perf_counter() - t, 1)
            window = backfill_window(backfill_first, backfill_last)
            runs = client.list_dag_runs("ingest", *window)
            result["backfill_ok"] = ok
            result["backfill_runs"] = len(runs)
            result["backfill_span_s"] = _span(runs)
            per_run = [
                (_parse(r["end_date"]) - _parse(r["start_date"])).total_seconds() for r in runs
            ]
            result["backfill_run_median_s"] = round(statistics.median(per_run), 2)
            result["backfill_s_per_day"] = round(result["backfill_span_s"] / days, 2)
    return result


def table(result: dict[str, Any]) -> str:
    rows = [
        ("stack up (cold, to healthy)", f"{result.get('up_s')} s"),
        (
            "one ingest run, cold stack",
            f"{result.get('single_cold_run_s')} s "
            f"(trigger to done {result.get('single_cold_wall_s')} s)",
        ),
        (
            "one ingest run, warm",
            f"{result.get('single_warm_run_s')} s "
            f"(trigger to done {result.get('single_warm_wall_s')} s)",
        ),
        (
            f"{result['days']}-day backfill",
            f"{result.get('backfill_span_s')} s span, "
            f"{result.get('backfill_wall_s')} s wall, {result.get('backfill_s_per_day')} s/day, "
            f"ok={result.get('backfill_ok')}",
        ),
        ("median run inside the backfill", f"{result.get('backfill_run_median_s')} s"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    result = run(small=args.small)
    print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
