"""Look for the stack's secrets where people read: service logs, task logs, and what Airflow's
REST API shows (task instances with their rendered templates, DAG run confs, XCom values)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from dslc.dev.airflow_client import AirflowClient
    from dslc.settings import Settings

PAGE = 100


def stack_secrets(settings: Settings) -> dict[str, str]:
    """Every secret the stack generated, by name."""
    from dslc.dev.stack import secrets
    from dslc.dev.stack.distributed import load_profile
    from dslc.dev.stack.environment import s3_credentials

    keys = secrets.airflow_secrets(settings)
    extra = {}
    if load_profile(settings) is not None:
        extra["S3 secret access key"] = s3_credentials(settings)[1]
    return {
        **extra,
        "Airflow admin password": secrets.admin_password(settings),
        "Airflow JWT secret": keys["jwt_secret"],
        "Airflow API secret key": keys["secret_key"],
        "serving admin token": secrets.serving_token(settings),
        "MLflow password": secrets.mlflow_credentials(settings)[1],
        "MLflow Flask secret key": secrets.mlflow_flask_secret(settings),
    }


def log_files(settings: Settings) -> list[Path]:
    """Every file under the service logs (``<state>/logs``) and Airflow's logs folder."""
    from dslc.dev.stack import airflow_home
    from dslc.dev.stack.paths import logs_dir

    roots = (logs_dir(settings), airflow_home(settings) / "logs")
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def find(texts: Iterable[tuple[str, str]], wanted: dict[str, str]) -> list[tuple[str, str]]:
    """(where, which secret) for each secret of ``wanted`` found in each (where, text)."""
    return [
        (where, name) for where, text in texts for name, value in wanted.items() if value in text
    ]


def file_texts(paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
    for path in paths:
        yield str(path), path.read_text(errors="replace")


def _pages(client: AirflowClient, path: str, field: str) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        resp = client.request("GET", path, params={"limit": PAGE, "offset": offset})
        resp.raise_for_status()
        page = resp.json()[field]
        yield from page
        if len(page) < PAGE:
            return
        offset += len(page)


def api_texts(client: AirflowClient) -> Iterator[tuple[str, str]]:
    """The raw JSON of every DAG run, task instance (with rendered fields) and XCom value."""
    for run in _pages(client, "/api/v2/dags/~/dagRuns", "dag_runs"):
        yield f"dag run {run['dag_id']}/{run['dag_run_id']}", str(run)
    for ti in _pages(client, "/api/v2/dags/~/dagRuns/~/taskInstances", "task_instances"):
        yield f"task instance {ti['dag_id']}/{ti['dag_run_id']}/{ti['task_id']}", str(ti)
    entries = _pages(client, "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries", "xcom_entries")
    for entry in entries:
        path = "/".join(
            [
                "/api/v2/dags",
                quote(entry["dag_id"], safe=""),
                "dagRuns",
                quote(entry["run_id"], safe=""),
                "taskInstances",
                quote(entry["task_id"], safe=""),
                "xcomEntries",
                quote(entry["key"], safe=""),
            ]
        )
        resp = client.request("GET", path, params={"map_index": entry.get("map_index", -1)})
        resp.raise_for_status()
        yield (
            f"xcom {entry['dag_id']}/{entry['run_id']}/{entry['task_id']}/{entry['key']}",
            resp.text,
        )
