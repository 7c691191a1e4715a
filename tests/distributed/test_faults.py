"""Faults on the distributed stack, each done for real to a running process (signals, a DB
server ending sessions), and checked for "nothing lost": the work is retried where it can
be, finishes once, and never leaves a partition or model version half made.

1. A Celery worker dies (SIGKILL to it and everything it started) in the middle of ``train``:
   the scheduler sees the missing heartbeats, the other worker retries it, and the DAG run
   registers exactly one model version.
2. The scheduler is SIGKILLed mid-backfill of ``ingest`` and started again: the backfill
   completes, no task of a day runs twice at once, the partitions hash as on a file lake.
   (Not in the milliseconds between queueing a task and handing it to Celery: Airflow then
   leaves that task queued for task_queued_timeout, 10 min; see the test.)
3. The S3 server freezes (SIGSTOP) while ``extract`` runs: each try fails in seconds naming
   the endpoint, Airflow retries with growing delays, the day fails with nothing published;
   thawed, clearing the failed task through the REST API completes the day.
4. PostgreSQL ends every session on Airflow's database mid-run: Airflow recovers and each day
   is either published whole or not at all.

They share the folder's stack (after the story, whose features ``train`` uses) and each leaves
it running and healthy. Each uses days of 2013 the story does not.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dslc.data import sources
from dslc.dev.airflow_client import AirflowClient, logical_date, parse_time
from dslc.dev.stack.distributed import load_profile
from dslc.lake import Lake, get_lake
from dslc.model import registry
from dslc.settings import Settings
from tests.distributed import faults
from tests.distributed.conftest import Story
from tests.distributed.faults import Try, wait_for

pytestmark = pytest.mark.distributed

# The story's features (2013-01-01..21 and 2013-06-01..04) in one window.
TRAIN_WINDOW = {"window_end": "2013-06-04", "window_days": 200}
HEARTBEAT_TIMEOUT = 60  # [scheduler] task_instance_heartbeat_timeout on the distributed stack
BACKFILL_DAYS = (dt.date(2013, 3, 4), dt.date(2013, 3, 8))
# Airflow's retry jitter is fixed per (task, day, try) (TaskInstance.next_retry_datetime):
# for this day extract's delays are 20 s and 48 s, near the least of 60..118 s.
S3_DAY = dt.date(2013, 3, 21)
PG_DAYS = (dt.date(2013, 3, 12), dt.date(2013, 3, 13))
PG_OUTAGE_SECONDS = 15  # about how long one day's run takes on this stack


def _run_id(what: str) -> str:
    return f"faults__{what}_{uuid.uuid4().hex[:8]}"


def assert_fresh(lake: Lake, wanted: list[dt.date]) -> None:
    """The days a test ingests must be new to the stack, or its checks would see old work."""
    for day in wanted:
        before = faults.published(lake, day.isoformat())
        assert before == dict.fromkeys(before), f"{day} is already in {lake.url}: {before}"


def test_a_worker_killed_mid_train_is_retried_on_the_other_and_registers_one_version(
    story: Story,
) -> None:
    settings = story.settings
    run_id = _run_id("worker_killed")
    conf = {
        **TRAIN_WINDOW,
        "max_iter": 100,  # half the default: the retry fits it all again
        "deploy": False,
        "reason": "fault test: worker killed mid-train",
    }
    mlflow = registry.client()
    experiment = registry.experiment_id(mlflow, settings.mlflow_experiment)
    with AirflowClient.from_settings(settings) as client:
        client.login()
        client.trigger_dag_run("train", conf=conf, run_id=run_id)

        def fitting() -> str | None:
            """The worker running ``train`` once its MLflow run is open (the fit runs beside)."""
            ti = faults.task_instances(client, "train", run_id).get("train") or {}
            assert ti.get("state") not in ("success", "failed", "upstream_failed"), (
                f"train ended before it could be killed: {faults.states(client, 'train', run_id)}"
            )
            if ti.get("state") != "running" or not ti.get("hostname"):
                return None
            if registry.find_run(mlflow, experiment, run_id) is None:
                return None
            return str(ti["hostname"]).split("@", 1)[0]

        worker = wait_for(
            "train running with its MLflow run open",
            fitting,
            timeout=300,
            interval=0.5,
            status=lambda: faults.states(client, "train", run_id),
        )
        killed = faults.kill_tree(faults.service_pid(settings, worker))
        killed_at = time.monotonic()

        def retried() -> list[Try] | None:
            found = [Try.of(t) for t in faults.tries(client, "train", run_id, "train")]
            if len(found) >= 2 and found[-1].worker and found[-1].state in ("running", "success"):
                return found
            return None

        wait_for(
            f"train retried after {worker} was killed (pids {killed})",
            retried,
            timeout=HEARTBEAT_TIMEOUT + 30 + 120,
            status=lambda: faults.tries(client, "train", run_id, "train"),
        )
        detected_in = time.monotonic() - killed_at
        # Only now: the retry could not go to the killed worker.
        restarted = faults.restart_missing(settings)
        assert restarted == [worker], restarted
        final = faults.wait_for_run(client, "train", run_id, timeout=420)
        train_tries = [Try.of(t) for t in faults.tries(client, "train", run_id, "train")]

    assert final == "success", train_tries
    assert len(train_tries) == 2, train_tries  # the killed try and one retry
    first, retry = train_tries
    assert (first.number, first.state, first.worker) == (1, "failed", worker), train_tries
    assert retry.state == "success", train_tries
    assert retry.worker.startswith("worker-") and retry.worker != worker, train_tries
    # The heartbeat timeout, the detection interval and the DAG's 30 s retry delay.
    assert detected_in < HEARTBEAT_TIMEOUT + 30 + 60, f"retry began {detected_in:.0f} s after"

    runs = mlflow.search_runs(
        [experiment],
        filter_string=f"tags.`{registry.TAG_DAG_RUN}` = {registry.filter_value(run_id)}",
    )
    assert [r.data.tags.get(registry.TAG_MODEL_LOGGED) for r in runs] == ["true"], runs
    name = settings.model_name
    versions = [
        v
        for v in mlflow.search_model_versions(f"name = {registry.filter_value(name)}")
        if (v.tags or {}).get(registry.TAG_DAG_RUN) == run_id
    ]
    assert [v.run_id for v in versions] == [runs[0].info.run_id], versions
    assert faults.unhealthy(settings) == []


def test_a_scheduler_killed_mid_backfill_loses_and_repeats_nothing(
    dist_stack: Settings, tmp_path: Path
) -> None:
    settings = dist_stack
    first, last = BACKFILL_DAYS
    wanted = faults.days(first, last)
    lake = get_lake(settings.lake)
    assert_fresh(lake, wanted)
    sources.replay(lake, first, last)
    with AirflowClient.from_settings(settings) as client:
        client.login()
        wait_for(
            "the story's backfill of ingest to be marked complete",
            lambda: client.active_backfill("ingest") is None,
            timeout=120,
        )
        backfill = client.create_backfill("ingest", logical_date(first), logical_date(last))

        def runs() -> dict[dt.date, list[dict[str, Any]]]:
            out: dict[dt.date, list[dict[str, Any]]] = {d: [] for d in wanted}
            for run in client.list_dag_runs("ingest", logical_date(first), logical_date(last)):
                out[parse_time(run["logical_date"]).date()].append(run)
            return out

        def midway() -> dict[tuple[dt.date, str], str | None] | None:
            """Some day extracted, no day's features built yet: most tasks still to schedule."""
            now = faults.day_states(client, "ingest", first, last)
            done = {task for (_day, task), state in now.items() if state == "success"}
            return now if "extract" in done and "build_features" not in done else None

        def midway_none_just_queued() -> dict[tuple[dt.date, str], str | None] | None:
            """Midway, and (the scheduler frozen) no task instance queued in the last 2 s.

            A scheduler killed between marking a task instance queued and handing it to
            Celery, milliseconds later in the same loop, leaves it queued under a Celery id
            nobody sent; Airflow takes it back only after [scheduler] task_queued_timeout,
            600 s (the celery provider says so in CeleryExecutor.try_adopt_task_instances).
            A poll that sees a task end is just when the next one is queued, so the kill waits
            for a moment outside that window. Frozen, the scheduler queues nothing meanwhile.
            """
            tis = faults.day_task_instances(client, "ingest", first, last)
            recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
            just_queued = [
                k
                for k, ti in tis.items()
                if ti["state"] == "queued"
                and (not ti.get("queued_when") or parse_time(ti["queued_when"]) > recent)
            ]
            return midway() if not just_queued else None

        wait_for("the backfill half way", midway, 300, 0.5)
        scheduler = faults.service_pid(settings, "scheduler")
        wait_for(
            "the backfill half way with nothing just queued, to kill the scheduler",
            lambda: faults.kill_frozen_when(scheduler, midway_none_just_queued),
            timeout=60,
            interval=0.2,
            status=lambda: faults.day_states(client, "ingest", first, last),
        )
        restarted = faults.restart_missing(settings)
        assert restarted == ["scheduler"], restarted

        def completed() -> bool:
            resp = client.request("GET", f"/api/v2/backfills/{backfill['id']}")
            return bool(resp.json().get("completed_at"))

        wait_for(
            "the backfill to complete",
            completed,
            300,
            2.0,
            status=lambda: {
                f"{day} {task}": state
                for (day, task), state in faults.day_states(client, "ingest", first, last).items()
                if state != "success"
            },
        )
        final = runs()
        overlaps = {
            (run["dag_run_id"], task): faults.overlapping(
                Try.of(t) for t in faults.tries(client, "ingest", run["dag_run_id"], task)
            )
            for day_runs in final.values()
            for run in day_runs
            for task in faults.task_instances(client, "ingest", run["dag_run_id"])
        }

    assert {d: [r["state"] for r in rs] for d, rs in final.items()} == {
        d: ["success"] for d in wanted
    }
    assert {k: v for k, v in overlaps.items() if v} == {}
    on_s3 = {d.isoformat(): faults.published(lake, d.isoformat()) for d in wanted}
    assert on_s3 == faults.reference(tmp_path, wanted)
    assert faults.unhealthy(settings) == []


def test_s3_frozen_during_extract_retries_then_fails_clearly_and_a_clear_completes_the_day(
    dist_stack: Settings, tmp_path: Path
) -> None:
    settings = dist_stack
    profile = load_profile(settings)
    assert profile is not None and profile.local_s3
    ds = S3_DAY.isoformat()
    lake = get_lake(settings.lake)
    assert_fresh(lake, [S3_DAY])
    sources.replay(lake, S3_DAY, S3_DAY)
    expected = faults.reference(tmp_path, [S3_DAY])[ds]
    run_id = _run_id("s3_frozen")
    with AirflowClient.from_settings(settings) as client:
        client.login()
        faults.trigger(client, "ingest", run_id, S3_DAY)
        # Frozen once the sensor found the landed files: extract's calls all meet a frozen S3.
        wait_for(
            "the landing sensor to pass",
            lambda: faults.states(client, "ingest", run_id).get("wait_for_landing") == "success",
            timeout=180,
            interval=0.2,
            status=lambda: faults.states(client, "ingest", run_id),
        )
        with faults.frozen(faults.service_pid(settings, "s3")):
            final = faults.wait_for_run(client, "ingest", run_id, timeout=360)
            extract = [Try.of(t) for t in faults.tries(client, "ingest", run_id, "extract")]
            log = faults.task_log(client, "ingest", run_id, "extract", extract[-1].number)
            after = faults.states(client, "ingest", run_id)
        unpublished = faults.published(lake, ds)
        faults.clear_failed(client, "ingest", run_id, ["extract"])
        cleared = faults.wait_for_run(client, "ingest", run_id, timeout=240)

    assert final == "failed", after
    assert [(t.number, t.state) for t in extract] == [(1, "failed"), (2, "failed"), (3, "failed")]
    # Each try fails in seconds (two 5 s reads on this stack), not after s3fs's minutes.
    assert [t.seconds < 60 for t in extract] == [True] * 3, [t.seconds for t in extract]
    # retry_delay 20 s doubled per try (Airflow adds up to as much again, per task instance).
    delays = faults.gaps(extract)
    assert delays[0] >= 20 and delays[1] >= 40, delays
    assert after["validate"] == after["build_features"] == "upstream_failed", after
    assert f"did not answer while trying to list s3://{profile.bucket}/lake/landing/" in log, log
    assert profile.s3_endpoint in log, log
    assert unpublished == {z: None for z in unpublished}, unpublished
    assert cleared == "success"
    assert faults.published(lake, ds) == expected
    assert faults.unhealthy(settings) == []


def test_postgres_sessions_ended_mid_run_leave_no_half_published_day(
    dist_stack: Settings, tmp_path: Path
) -> None:
    settings = dist_stack
    profile = load_profile(settings)
    assert profile is not None
    first, last = PG_DAYS
    wanted = faults.days(first, last)
    lake = get_lake(settings.lake)
    assert_fresh(lake, wanted)
    sources.replay(lake, first, last)
    with AirflowClient.from_settings(settings) as client:
        client.login()
        run_ids = {d: _run_id(f"pg_{d.isoformat()}") for d in wanted}
        for day, run_id in run_ids.items():
            faults.trigger(client, "ingest", run_id, day)
        wait_for(
            "a task of the days running",
            lambda: "running" in faults.day_states(client, "ingest", first, last).values(),
            timeout=240,
            interval=0.2,
        )
        # Not once but for as long as a day takes: the sessions of queries in flight end
        # too, not only idle ones the pool would test before use. No REST call meanwhile:
        # the api-server's own sessions are ended too.
        ended = []
        outage_end = time.monotonic() + PG_OUTAGE_SECONDS
        while time.monotonic() < outage_end:
            ended.append(faults.terminate_connections(profile.postgres_url, profile.airflow_db))
            time.sleep(0.5)
        down = faults.unhealthy(settings)
        restarted = faults.restart_missing(settings)
        finals = {d: faults.wait_for_run(client, "ingest", r, 300) for d, r in run_ids.items()}
        during = {d: faults.states(client, "ingest", r) for d, r in run_ids.items()}
        # What failed cleanly can be cleared and completes once the database is back.
        for day, run_id in run_ids.items():
            failed = [t for t, state in during[day].items() if state == "failed"]
            if finals[day] == "failed":
                faults.published(lake, day.isoformat())  # checks each partition whole or absent
                faults.clear_failed(client, "ingest", run_id, failed)
        cleared = {d: faults.wait_for_run(client, "ingest", r, 300) for d, r in run_ids.items()}
        all_tries = {
            (day, task): [Try.of(t) for t in faults.tries(client, "ingest", run_id, task)]
            for day, run_id in run_ids.items()
            for task in during[day]
        }

    print(
        f"sessions ended: {sum(ended)} in {len(ended)} rounds; unhealthy after: {down}; "
        f"restarted: {restarted}; runs: {finals}; tasks: {during}; "
        f"tries: { {k: len(v) for k, v in all_tries.items()} }"
    )
    assert sum(ended) > 0, ended
    assert set(finals.values()) <= {"success", "failed"}, during
    assert cleared == dict.fromkeys(wanted, "success"), during
    assert {k: faults.overlapping(v) for k, v in all_tries.items() if faults.overlapping(v)} == {}
    assert {d.isoformat(): faults.published(lake, d.isoformat()) for d in wanted} == (
        faults.reference(tmp_path, wanted)
    )
    assert faults.unhealthy(settings) == []
