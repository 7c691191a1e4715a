"""`make demo`: the whole story of "the data is always changing", on the embedded stack.

1. start the stack (Airflow, MLflow, the serving API) in the background, or reuse it;
2. play the upstream system: land Jan-Mar 2013 and the later replay months day by day;
3. backfill `ingest` over Jan-Mar through Airflow's REST API;
4. train the first champion (`train` through the REST API; its `deploy` step puts it behind
   the serving API) while `ingest` backfills the replay months;
5. the serving API scores each replayed day's flights, as the airline's systems would before
   departure, so the prediction log in the lake is what the model really saw;
6. backfill `drift_monitor` over the replay months, in order: it compares each day with the
   champion's reference profile and, when drift persists, triggers `train`, whose challenger
   is evaluated against the champion and, if better, promoted and deployed;
7. summarise: model versions, drift events, retraining runs, where to look, and where the
   time went (B4).

Re-runnable: landing, ingest and drift are idempotent per day, backfills skip days already
done, and the summary is read back from the lake, MLflow and Airflow, so a second run tells the
same story in seconds. Days and months are settings: ``DSLC_DEMO_START``/``DSLC_DEMO_END`` (the
first champion's data), ``DSLC_DEMO_REPLAY_START``/``DSLC_DEMO_REPLAY_END`` (the drifting
months).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dslc.dev.airflow_client import AirflowClient
    from dslc.lake import Lake
    from dslc.settings import Settings
    from dslc.usecase import DemoCalendar


def _calendar() -> DemoCalendar:
    """The use case's demo calendar, each day overridable by a ``DSLC_DEMO_*`` variable."""
    from dslc.settings import get_usecase

    usecase = get_usecase()
    if usecase.demo is None:
        raise SystemExit(f"the use case {usecase.name!r} has no demo calendar: nothing to replay")
    cal = usecase.demo

    def day(var: str, default: dt.date) -> dt.date:
        return dt.date.fromisoformat(os.environ.get(var, default.isoformat()))

    return dataclasses.replace(
        cal,
        start=day("DSLC_DEMO_START", cal.start),
        end=day("DSLC_DEMO_END", cal.end),
        replay_start=day("DSLC_DEMO_REPLAY_START", cal.replay_start),
        replay_end=day("DSLC_DEMO_REPLAY_END", cal.replay_end),
    )


TIMINGS: dict[str, float] = {}


@contextmanager
def _phase(title: str, key: str) -> Iterator[None]:
    print(f"== {title}", flush=True)
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS[key] = time.monotonic() - start


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# --------------------------------------------------------------------------------------------
# Scoring the replayed days through the serving API


def _records(lake: Lake, ds: str) -> list[dict[str, Any]]:
    """The day's rows as /predict records: the model features plus ds and the log key."""
    import math

    from dslc.lake import Lake
    from dslc.model.spec import model_features
    from dslc.settings import get_settings, get_usecase

    df = lake.read_partition(Lake.partition("features", get_settings().dataset, ds))
    log_key = get_usecase().log_key
    key = [log_key.name] if log_key is not None else []
    cols = [*model_features(), *key]
    out = []
    for row in df[cols].itertuples(index=False):
        rec: dict[str, Any] = {}
        for name, value in zip(cols, row, strict=True):
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif hasattr(value, "item"):  # numpy scalar
                value = value.item()
            rec[name] = value
        for name in key:
            rec[name] = int(rec[name])
        rec["ds"] = ds
        out.append(rec)
    return out


def _scored(lake: Lake, model: str, ds: str) -> bool:
    return any(p.endswith(".parquet") for p in lake.ls("predictions", model, f"ds={ds}"))


def wait_ready(settings: Settings, timeout: float = 300.0) -> dict[str, Any]:
    """The serving API's /ready body once it serves a model (raises after ``timeout`` s)."""
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{settings.serving_base_url}/ready", timeout=5, trust_env=False)
            if resp.status_code == 200:
                body: dict[str, Any] = resp.json()
                return body
            last = resp.text[:200]
        except httpx.HTTPError as e:
            last = str(e)
        time.sleep(1)
    raise RuntimeError(f"the serving API at {settings.serving_base_url} is not ready: {last}")


def score_days(settings: Settings, lake: Lake, days: list[dt.date]) -> dict[str, int]:
    """POST each published day's rows to /predict (once per day); returns rows per day."""
    import httpx
    from rich.progress import Progress

    model = settings.model_name
    todo = [
        d.isoformat()
        for d in days
        if lake.manifest(lake.partition("features", settings.dataset, d)) is not None
        and not _scored(lake, model, d.isoformat())
    ]
    scored: dict[str, int] = {}
    if not todo:
        print("every replayed day is already scored")
        return scored
    chunk = settings.serving_max_records
    with (
        httpx.Client(base_url=settings.serving_base_url, timeout=60, trust_env=False) as client,
        Progress() as progress,
    ):
        bar = progress.add_task(f"scoring {len(todo)} days via /predict", total=len(todo))
        for ds in todo:
            records = _records(lake, ds)
            for i in range(0, len(records), chunk):
                resp = client.post("/predict", json=records[i : i + chunk])
                if resp.status_code != 200:
                    raise RuntimeError(
                        f"/predict for {ds} answered {resp.status_code}: {resp.text}"
                    )
            scored[ds] = len(records)
            progress.advance(bar)
    # The service flushes its prediction log in the background; wait until every day is there.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(_scored(lake, model, ds) for ds in todo):
            break
        time.sleep(0.5)
    return scored


# --------------------------------------------------------------------------------------------
# Summary: read back from the registry, the lake and Airflow


def models() -> str:
    """The registered versions with aliases, window, holdout AUC, trigger and decision."""
    from dslc.model import registry
    from dslc.settings import get_settings

    settings = get_settings()
    client = registry.client()
    lines = [f"model {settings.model_name} in {settings.mlflow_url}"]
    aliases: dict[str, list[str]] = {}
    for alias in (registry.CHAMPION, registry.PREVIOUS):
        version = registry.get_alias(client, settings.model_name, alias)
        if version is not None:
            aliases.setdefault(str(version.version), []).append(alias)
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    lines.append(
        f"  {'ver':<4} {'window':<23} {'AUC':>6}  {'decision':<9} {'deployed':<9} "
        f"{'aliases':<27} trigger"
    )
    for v in sorted(versions, key=lambda v: int(v.version)):
        auc = client.get_run(v.run_id).data.metrics.get("holdout_roc_auc") if v.run_id else None
        tags = v.tags or {}
        deployed = "-"
        if tags.get("dslc.deployment"):
            try:
                deployed = str(json.loads(tags["dslc.deployment"]).get("status", "yes"))
            except ValueError:
                deployed = "yes"
        lines.append(
            f"  v{v.version:<3} {tags.get('dslc.window', '?'):<23} "
            f"{'-' if auc is None else f'{auc:.3f}':>6}  {tags.get('dslc.promotion', '-'):<9} "
            f"{deployed[:9]:<9} {' '.join(aliases.get(str(v.version), [])) or '-':<27} "
            f"{tags.get('dslc.trigger_reason', '')[:70]}"
        )
    return "\n".join(lines)


def drift_events(lake: Lake, first: dt.date, last: dt.date) -> tuple[str, str | None]:
    """Drifted days per champion, then each retrain drift triggered with its top features;
    and the latest report's URI."""
    latest = None
    monitored: dict[str, list[int]] = {}  # champion version -> [days monitored, days drifted]
    for d in _days(first, last):
        key = f"ds={d.isoformat()}"
        if not lake.exists("monitoring", "drift", key, "report.json"):
            continue
        latest = lake.uri("monitoring", "drift", key, "report.html")
        report = json.loads(lake.read_text("monitoring", "drift", key, "report.json"))
        counts = monitored.setdefault(str(report.get("reference", {}).get("version", "?")), [0, 0])
        counts[0] += 1
        counts[1] += bool(report.get("dataset", {}).get("drifted"))
    lines = [
        f"drift_monitor: {sum(c[0] for c in monitored.values())} days monitored; "
        + ", ".join(f"vs v{v}: {c[1]} of {c[0]} days drifted" for v, c in monitored.items())
    ]
    triggers = sorted(lake.ls("monitoring", "drift", "triggers"))
    for name in triggers:
        record = json.loads(lake.read_text("monitoring", "drift", "triggers", name.rsplit("/")[-1]))
        conf = record.get("conf", {})
        top = ", ".join(str(f) for f in conf.get("drifted_features", [])[:3]) or "-"
        why = str(conf.get("reason", "")).split(": ", 1)[-1].split(" (champion")[0]
        lines.append(f"  {record.get('ds')} v{record.get('version')} -> retrain: {why}; top {top}")
    return "\n".join(lines), latest


def retraining_runs(client: AirflowClient) -> str:
    """`train` runs with their trigger reason and outcome."""
    from dslc.model import registry
    from dslc.settings import get_settings

    settings = get_settings()
    runs = [r for r in client.recent_runs("train") if r.get("run_type") != "scheduled"]
    by_run: dict[str, Any] = {}
    mlflow = registry.client()
    for v in mlflow.search_model_versions(f"name='{settings.model_name}'"):
        run_tag = (v.tags or {}).get(registry.TAG_DAG_RUN)
        if run_tag:
            by_run[run_tag] = v
    lines = [f"train runs: {len(runs)} (besides the weekly schedule)"]
    for r in runs:
        conf = r.get("conf") or {}
        mv = by_run.get(str(r["dag_run_id"]))
        decision = "-"
        if mv is not None:
            decision = f"v{mv.version} {(mv.tags or {}).get('dslc.promotion', 'registered')}"
        lines.append(
            f"  {r['dag_run_id'][:44]:<44} {r.get('state', '?'):<8} {decision:<14} "
            f"{str(conf.get('reason', ''))[:80]}"
        )
    return "\n".join(lines)


def timings() -> str:
    total = sum(TIMINGS.values())
    parts = "  ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items())
    return f"wall time {total:.0f}s ({total / 60:.1f} min): {parts}"


# --------------------------------------------------------------------------------------------


def _wait_train_idle(client: AirflowClient, timeout: float = 1800.0) -> None:
    """Wait until no `train` run is queued or running (the ones drift triggered)."""
    from rich.console import Console

    console = Console(highlight=False)
    deadline = time.monotonic() + timeout
    with console.status("waiting for the retraining runs to finish") as status:
        while time.monotonic() < deadline:
            active = [
                r
                for r in client.recent_runs("train", states=("queued", "running"))
                if r.get("run_type") != "scheduled" or r.get("state") == "running"
            ]
            if not active:
                return
            status.update(f"train: {', '.join(r['dag_run_id'][:40] for r in active)} running")
            time.sleep(2)
    raise RuntimeError(f"train runs still active after {timeout:.0f}s")


def main() -> int:
    from dslc.dev import backfill, stack
    from dslc.dev.airflow_client import AirflowClient
    from dslc.dev.replay import replay_cli
    from dslc.lake import get_lake
    from dslc.model import registry
    from dslc.settings import get_settings

    settings = get_settings()
    # The summary reads the registry from this process: log in to the stack's MLflow.
    stack.use_stack_env(settings)
    cal = _calendar()
    start, end, replay_start, replay_end = cal.start, cal.end, cal.replay_start, cal.replay_end
    first_champion = {**cal.first_champion, "window_end": end.isoformat()}
    lake = get_lake()
    ok = True
    kind = "distributed" if stack.load_profile(settings) is not None else "embedded"
    with _phase(f"1/7 starting the {kind} stack (state in {settings.state_dir})", "up"):
        stack.up()
    with _phase(
        f"2/7 landing {start}..{end} and {replay_start}..{replay_end} "
        "(the upstream system's daily CSV drops)",
        "land",
    ):
        replay_cli(start, end)
        replay_cli(replay_start, replay_end)
    with _phase(f"3/7 backfilling ingest {start}..{end} through the REST API", "ingest"):
        ok &= backfill.backfill_cli("ingest", start, end, reprocess="failed", wait=True)

    with AirflowClient.from_settings(settings) as client:
        client.login()
        with _phase(
            f"4/7 first champion on the {settings.train_window_days} days up to {end}, "
            f"while ingest backfills {replay_start}..{replay_end}",
            "champion+ingest",
        ):
            champion = registry.get_alias(registry.client(), settings.model_name, "champion")
            run = None
            if champion is None:
                run = backfill.trigger_cli("train", first_champion, wait=False)
            else:
                print(f"champion already registered: version {champion.version}")
            ok &= backfill.backfill_cli(
                "ingest", replay_start, replay_end, reprocess="failed", wait=True
            )
            if run is not None:
                run = _wait_run(client, "train", str(run["dag_run_id"]))
                ok &= run.get("state") == "success"
                print(f"train {run['dag_run_id']}: {run.get('state')}")
        with _phase("5/7 the serving API scores each replayed day's flights", "score"):
            ready = wait_ready(settings)
            print(f"serving {ready.get('model')} version {ready.get('version')}")
            scored = score_days(settings, lake, _days(replay_start, replay_end))
            if scored:
                print(f"scored {sum(scored.values())} flights over {len(scored)} days")
        with _phase(
            f"6/7 drift_monitor {replay_start}..{replay_end}, day by day (it triggers train)",
            "drift+retrain",
        ):
            ok &= backfill.backfill_cli(
                "drift_monitor",
                replay_start,
                replay_end,
                reprocess="failed",
                wait=True,
                max_active_runs=1,
            )
            _wait_train_idle(client)
            ready = wait_ready(settings)
        print("== 7/7 what happened")
        print(models())
        events, report = drift_events(lake, replay_start, replay_end)
        print(events)
        print(retraining_runs(client))
        champion = registry.get_alias(registry.client(), settings.model_name, "champion")
        served = str(ready.get("version"))
        if champion is not None and served != str(champion.version):
            ok = False
            print(f"[demo] serving version {served} but the champion is {champion.version}")
    secret = stack.password_file(settings)
    print(
        f"\nAirflow UI    {settings.airflow_url}  (user {settings.airflow_username}, "
        f"password in {secret})"
        f"\nMLflow UI     {settings.mlflow_url}  (experiments {settings.mlflow_experiment}, "
        f"dslc-drift; model {settings.model_name})"
        f"\nDrift report  {report or '(none yet)'}"
        f"\nServing API   {settings.serving_base_url}/docs  (version {served} serving); try:"
        f"\n  curl -s {settings.serving_base_url}/predict -H 'content-type: application/json' "
        f"-d '{json.dumps([EXAMPLE])}'"
        f"\nLake          {settings.lake}"
        f"\n{timings()}"
        "\nThe stack stays up: `make down` stops it."
    )
    return 0 if ok else 1


def _wait_run(client: AirflowClient, dag_id: str, run_id: str, timeout: float = 1800) -> Any:
    deadline = time.monotonic() + timeout
    run = client.get_dag_run(dag_id, run_id)
    while run.get("state") not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(2)
        run = client.get_dag_run(dag_id, run_id)
    return run


# One flight as /predict takes it (the README shows the same).
EXAMPLE: dict[str, Any] = {
    "carrier": "UA",
    "origin": "EWR",
    "dest": "ORD",
    "distance": 719.0,
    "sched_dep_hour": 17,
    "sched_dep_minute": 30,
    "sched_arr_hour": 19,
    "sched_arr_minute": 5,
    "day_of_week": 4,
    "temp": 78.1,
    "dewp": 62.1,
    "humid": 57.6,
    "wind_speed": 10.4,
    "wind_gust": None,
    "precip": 0.0,
    "pressure": 1012.3,
    "visib": 10.0,
}


if __name__ == "__main__":
    sys.exit(main())
