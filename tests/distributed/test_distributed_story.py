"""The lifecycle on the distributed stack, driven through the REST API like the embedded one:
the same story (`dslc.dev.demo`, shortened), with nothing in ``dslc`` or ``dags/`` changed.

Checked through the services' own APIs and servers: the REST backfill's runs, which Celery
worker ran each task, the drift-triggered retrain, the champion served from S3 artifacts
through an MLflow that refuses anonymous calls, the features' content hashes against the same
days computed on a local file lake, and that no task process held a SQL connection string.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from dslc.data import ingest, sources
from dslc.dev.airflow_client import AirflowClient
from dslc.dev.stack.distributed import load_profile, s3_client
from dslc.dev.stack.environment import s3_credentials
from dslc.lake import Lake, get_lake
from dslc.model import registry
from tests.distributed.conftest import Story
from tests.e2e import secret_scan

pytestmark = pytest.mark.distributed


def _task_instances(client: AirflowClient, dag_id: str) -> list[dict]:  # type: ignore[type-arg]
    resp = client.request(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances", params={"limit": 1000}
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["task_instances"])


def test_the_story_runs_to_its_summary(story: Story) -> None:
    result = story.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("7/7 what happened", "drift_monitor:", "train runs:", "Serving API"):
        assert heading in result.stdout


def test_the_stack_is_postgres_celery_redis_and_s3(story: Story) -> None:
    profile = load_profile(story.settings)
    assert profile is not None
    with AirflowClient.from_settings(story.settings) as client:
        client.login()
        config = client.request("GET", "/api/v2/monitor/health").json()
    assert config["metadatabase"]["status"] == "healthy"
    assert story.settings.lake.startswith(f"s3://{profile.bucket}/")
    # MLflow's artifacts are objects in the stack's bucket.
    keys = s3_client(profile, *s3_credentials(story.settings)).list_objects_v2(
        Bucket=profile.bucket, Prefix="mlflow-artifacts/"
    )
    assert keys.get("KeyCount", 0) > 0


def test_a_rest_backfill_of_ingest_ran_every_day_on_both_workers(story: Story) -> None:
    with AirflowClient.from_settings(story.settings) as client:
        client.login()
        runs = client.recent_runs("ingest", limit=1000)
        tis = _task_instances(client, "ingest") + _task_instances(client, "train")
    backfilled = [r for r in runs if r["run_type"] == "backfill"]
    days = {r["logical_date"][:10] for r in backfilled}
    assert len(days) >= 14, sorted(days)
    assert all(r["state"] == "success" for r in backfilled), [
        (r["dag_run_id"], r["state"]) for r in backfilled if r["state"] != "success"
    ]
    hosts = Counter(t["hostname"].split("@", 1)[0] for t in tis if t["state"] == "success")
    assert {"worker-1", "worker-2"} <= set(hosts), hosts


def test_drift_triggered_a_retrain_and_the_champion_is_served(story: Story) -> None:
    settings = story.settings
    with AirflowClient.from_settings(settings) as client:
        client.login()
        runs = client.recent_runs("train")
    triggered = [r for r in runs if (r.get("conf") or {}).get("report_uri")]
    assert triggered, [(r["dag_run_id"], r.get("conf")) for r in runs]
    assert triggered[0]["state"] == "success"
    assert "drift" in triggered[0]["conf"]["reason"].lower()

    champion = registry.get_alias(registry.client(), settings.model_name, registry.CHAMPION)
    assert champion is not None
    ready = httpx.get(f"{settings.serving_base_url}/ready", timeout=10, trust_env=False)
    assert ready.status_code == 200, ready.text
    assert str(ready.json()["version"]) == str(champion.version)
    # The model was loaded through MLflow's artifact proxy, whose store is S3.
    assert champion.source.startswith(("mlflow-artifacts:", "models:/")), champion.source


def test_mlflow_refuses_anonymous_reads_and_writes(story: Story) -> None:
    base = story.settings.mlflow_url
    name = story.settings.model_name
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as anon:
        read = anon.get("/api/2.0/mlflow/registered-models/get", params={"name": name})
        move = anon.post(
            "/api/2.0/mlflow/registered-models/alias",
            json={"name": name, "alias": "champion", "version": "1"},
        )
    assert read.status_code == 401, read.text
    assert move.status_code == 401, move.text


def test_features_have_the_same_content_hashes_as_on_a_file_lake(
    story: Story, tmp_path: Path
) -> None:
    """The same days, computed by the same functions on a local file lake, hash the same."""
    s3 = get_lake(story.settings.lake)
    local = Lake(f"file://{tmp_path / 'lake'}")
    for ds in ("2013-01-02", "2013-01-09", "2013-01-21"):
        day = dt.date.fromisoformat(ds)
        sources.replay(local, day, day)
        ingest.extract_day(local, ds)
        ingest.validate_day(local, ds)
        expected = ingest.build_features(local, ds)
        key = Lake.partition("features", story.settings.dataset, ds)
        manifest = s3.manifest(key)
        assert manifest is not None, f"no published features for {ds} in {s3.url}"
        assert manifest.content_hash == expected["content_hash"], ds
        assert manifest.rows == expected["rows"], ds


def test_no_task_process_held_a_sql_connection_string(story: Story) -> None:
    """Airflow 3's promise: task code reaches the api-server, never the metadata DB."""
    sampler = story.sampler
    tasks = {pid: cmd for pid, cmd in sampler.seen.items() if "python" in cmd or "airflow" in cmd}
    assert tasks, "no task process was seen under the workers"
    assert sampler.with_sql == {}, {pid: sampler.seen[pid] for pid in sampler.with_sql}


def test_no_secret_in_any_log_or_xcom(story: Story) -> None:
    settings = story.settings
    wanted = secret_scan.stack_secrets(settings)
    assert "S3 secret access key" in wanted
    files = secret_scan.log_files(settings)
    assert any(p.name == "worker-1.log" for p in files), files[:20]
    with AirflowClient.from_settings(settings) as client:
        client.login()
        api = list(secret_scan.api_texts(client))
    found = secret_scan.find([*secret_scan.file_texts(files), *api], wanted)
    assert found == [], json.dumps(found)
