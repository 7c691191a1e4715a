"""End to end: a shortened `make demo` story on its own real embedded stack.

Three weeks of January train the first champion (deployed behind the serving API); the first
days of June are replayed, scored through /predict and monitored by `drift_monitor`, whose
drift verdict triggers `train`. Everything is checked through the services' own APIs: the
drift-triggered run exists and its conf names a drift report that exists in the lake, and the
version the serving API answers with is the registry's champion. Last, none of the stack's
generated secrets is in any log, rendered template, DAG run or XCom.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from dslc.dev import stack
from dslc.dev.airflow_client import AirflowClient
from dslc.lake import get_lake
from dslc.model import registry
from dslc.settings import Settings
from tests.e2e import secret_scan
from tests.support import SHORT_STORY, dslc_env, ephemeral_stack, run_demo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STORY = SHORT_STORY


@pytest.fixture(scope="module")
def story() -> Iterator[tuple[Settings, subprocess.CompletedProcess[str]]]:
    with dslc_env(**STORY), ephemeral_stack(prefix="dslc-story-") as settings:
        yield settings, run_demo()


def test_the_story_runs_to_its_summary(
    story: tuple[Settings, subprocess.CompletedProcess[str]],
) -> None:
    _, result = story
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("7/7 what happened", "drift_monitor:", "train runs:", "Serving API"):
        assert heading in result.stdout


def test_drift_triggered_a_train_run_naming_its_report(
    story: tuple[Settings, subprocess.CompletedProcess[str]],
) -> None:
    settings, _ = story
    with AirflowClient.from_settings(settings) as client:
        client.login()
        runs = client.recent_runs("train")
    triggered = [r for r in runs if (r.get("conf") or {}).get("report_uri")]
    assert triggered, [(r["dag_run_id"], r.get("conf")) for r in runs]
    conf = triggered[0]["conf"]
    assert conf["drifted_features"], conf
    assert "drift" in conf["reason"].lower()
    report_uri = str(conf["report_uri"])
    lake = get_lake(settings.lake)
    assert report_uri.startswith(lake.url), report_uri
    key = report_uri[len(lake.url) :].strip("/")
    report = json.loads(lake.read_bytes(key.replace(".html", ".json")))
    assert report, key
    assert triggered[0]["state"] == "success"


def test_the_served_version_is_the_champion(
    story: tuple[Settings, subprocess.CompletedProcess[str]],
) -> None:
    settings, _ = story
    champion = registry.get_alias(registry.client(), settings.model_name, registry.CHAMPION)
    assert champion is not None
    ready = httpx.get(f"{settings.serving_base_url}/ready", timeout=10, trust_env=False)
    assert ready.status_code == 200, ready.text
    assert str(ready.json()["version"]) == str(champion.version)
    # The prediction log holds the replayed days the model scored.
    lake = get_lake(settings.lake)
    days = lake.ls("predictions", settings.model_name)
    assert {f"ds=2013-06-0{i}" for i in range(1, 5)} <= {d.rsplit("/", 1)[-1] for d in days}


def test_no_secret_in_any_log_template_or_xcom(
    story: tuple[Settings, subprocess.CompletedProcess[str]],
) -> None:
    """After the whole story: no generated secret in a service log, a task log, a rendered
    template, a DAG run or an XCom; and the same scan finds one planted in a log or an XCom."""
    settings, _ = story
    wanted = secret_scan.stack_secrets(settings)
    files = secret_scan.log_files(settings)
    with AirflowClient.from_settings(settings) as client:
        client.login()
        api = list(secret_scan.api_texts(client))
        # The scan reads what it must: every service's log, the story's task logs, XComs and
        # rendered templates.
        assert {f"{name}.log" for name in stack.SERVICES} <= {p.name for p in files}
        assert any("dag_id=train" in str(p) for p in files), files[:20]
        assert any(where.startswith("xcom train/") for where, _ in api)
        assert any("'rendered_fields': {" in text for where, text in api if "train/" in where)

        assert secret_scan.find([*secret_scan.file_texts(files), *api], wanted) == []

        # Negative controls: a secret planted in a service log and in an XCom is found.
        leak = stack.log_path(settings, "leak-control")
        leak.write_text(f"oops {wanted['MLflow password']}\n")
        xcom = next(where for where, _ in api if where.startswith("xcom train/"))
        dag_id, run_id, task_id, _key = xcom.removeprefix("xcom ").split("/", 3)
        xcoms = (
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
            "/xcomEntries"
        )
        planted = client.request(
            "POST", xcoms, json={"key": "leak_control", "value": wanted["serving admin token"]}
        )
        assert planted.status_code == 201, planted.text
        try:
            found = secret_scan.find(
                [
                    *secret_scan.file_texts(secret_scan.log_files(settings)),
                    *secret_scan.api_texts(client),
                ],
                wanted,
            )
        finally:
            leak.unlink()
            client.request("DELETE", f"{xcoms}/leak_control")
    assert sorted(found) == [
        (str(leak), "MLflow password"),
        (f"xcom {dag_id}/{run_id}/{task_id}/leak_control", "serving admin token"),
    ]
