"""docker-compose.yaml is valid and production-shaped, checked statically (no Docker engine).

Each structural rule (pinned images, health checks, conditional depends_on, variables named in
.env.example) is a function run on the real file and, as a negative control, on a small bad
example it must reject.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose not installed (`make tools` installs it)"
)

# ${NAME}, ${NAME:?msg}, ${NAME:-default}...; $${NAME} is the container's, not compose's.
_COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")
# A release: major.minor at least (postgres 16.10, redis 7.4.6) or MinIO's dated RELEASE tags.
_RELEASE_TAG = re.compile(r"\d+\.\d+|^RELEASE\.\d{4}-\d{2}-\d{2}T")


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def services() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(compose_text())["services"]
    return loaded


def env_example_names() -> list[str]:
    return [
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    ]


def compose_variables(text: str) -> dict[str, set[str]]:
    """Each variable compose interpolates -> the modifiers it is used with (":?set X", "")."""
    found: dict[str, set[str]] = {}
    for name, modifier in _COMPOSE_VAR.findall(text):
        found.setdefault(name, set()).add(modifier)
    return found


def _config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    clean = {k: v for k, v in os.environ.items() if k not in env_example_names()}
    return subprocess.run(
        [COMPOSE, "-f", str(COMPOSE_FILE), *args, "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=60,
    )


def _filled() -> dict[str, str]:
    return {name: f"test-{name.lower()}" for name in env_example_names()}


@needs_compose
def test_compose_config_is_valid_with_secrets_from_the_environment() -> None:
    result = _config(_filled())
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    for worker in ("airflow-worker-1", "airflow-worker-2"):
        env = config["services"][worker]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["DSLC_LAKE_URL"].startswith("s3://")
        assert env["MLFLOW_TRACKING_PASSWORD"] == "test-mlflow_admin_password"


@needs_compose
def test_compose_refuses_to_start_without_secrets() -> None:
    result = _config({})
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr


@needs_compose
def test_a_copied_but_unfilled_env_example_is_refused() -> None:
    result = _config({}, "--env-file", str(ENV_EXAMPLE))
    assert result.returncode != 0
    assert re.search(r"set [A-Z_]+", result.stderr), result.stderr


def test_env_example_names_exactly_the_variables_compose_reads() -> None:
    names = env_example_names()
    assert len(names) == len(set(names)), "a variable is named twice in .env.example"
    assert set(names) == set(compose_variables(compose_text()))


def test_env_example_holds_no_value_and_env_is_ignored_by_git() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            assert line.endswith("="), f".env.example must not carry a value: {line}"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def unguarded_variables(text: str) -> list[str]:
    """Variables used with a default (``:-``) or without ``:?``: compose would start anyway."""
    return sorted(
        name
        for name, modifiers in compose_variables(text).items()
        if any(not m.startswith(":?") for m in modifiers)
    )


def test_every_variable_is_required_wherever_it_is_used() -> None:
    assert unguarded_variables(compose_text()) == []


def test_the_required_check_catches_defaults_and_bare_references() -> None:
    text = "a: ${A:?set A}\nb: ${B}\nc: ${C:-changeme}\nd: $${D}\n"
    assert unguarded_variables(text) == ["B", "C"]


def test_topology_has_every_service_and_no_secret_in_the_file() -> None:
    assert {
        "postgres",
        "redis",
        "minio",
        "mlflow",
        "airflow-init",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker-1",
        "airflow-worker-2",
        "serving",
    } <= set(services())
    for line in compose_text().splitlines():
        if "PASSWORD" in line or "SECRET" in line or "TOKEN" in line:
            assert "${" in line or "$$" in line or line.strip().startswith("#"), line


def test_two_celery_workers_with_distinct_node_names() -> None:
    workers = {n: s for n, s in services().items() if "celery worker" in str(s.get("command"))}
    assert len(workers) == 2
    for name, svc in workers.items():
        # The health check pings celery@$HOSTNAME: the node name must be that hostname.
        assert svc["hostname"] == name
        assert f"--celery-hostname {name}" in svc["command"]


def unpinned_images(svcs: dict[str, dict[str, Any]]) -> list[str]:
    """Third-party images not pinned to a release (a version tag or a digest)."""
    bad = []
    for name, svc in svcs.items():
        image = svc.get("image")
        if image is None or image.startswith("dslc:"):  # ours, built from the Dockerfile
            continue
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not _RELEASE_TAG.search(tag):
            bad.append(f"{name}: {image}")
    return bad


def test_every_third_party_image_is_pinned() -> None:
    assert unpinned_images(services()) == []


def test_the_pin_check_catches_floating_tags() -> None:
    svcs = {
        "latest": {"image": "minio/mc:latest"},
        "untagged": {"image": "redis"},
        "word": {"image": "redis:alpine"},
        "major": {"image": "redis:7"},
        "major-variant": {"image": "postgres:16-bookworm"},
        "registry-port": {"image": "registry.local:5000/redis"},
        "ok-patch": {"image": "redis:7.4.6-bookworm"},
        "ok-minor": {"image": "postgres:16.10"},
        "ok-minio": {"image": "minio/minio:RELEASE.2025-04-22T22-12-26Z"},
        "ok-digest": {"image": "redis@sha256:" + "0" * 64},
        "ours": {"image": "dslc:latest", "build": "."},
    }
    assert unpinned_images(svcs) == [
        "latest: minio/mc:latest",
        "untagged: redis",
        "word: redis:alpine",
        "major: redis:7",
        "major-variant: postgres:16-bookworm",
        "registry-port: registry.local:5000/redis",
    ]


def one_shot(svcs: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait on to *complete*: jobs, not servers."""
    return {
        dep
        for svc in svcs.values()
        for dep, cond in (svc.get("depends_on") or {}).items()
        if isinstance(cond, dict) and cond.get("condition") == "service_completed_successfully"
    }


def without_healthcheck(svcs: dict[str, dict[str, Any]]) -> list[str]:
    """Long-running services compose cannot tell healthy from merely started."""
    jobs = one_shot(svcs)
    return sorted(
        n for n, s in svcs.items() if n not in jobs and not (s.get("healthcheck") or {}).get("test")
    )


def test_every_long_running_service_has_a_healthcheck() -> None:
    svcs = services()
    assert one_shot(svcs) == {"airflow-init", "minio-buckets"}
    assert without_healthcheck(svcs) == []


def test_the_healthcheck_check_catches_a_server_without_one() -> None:
    svcs = {
        "db": {"healthcheck": {"test": ["CMD", "true"]}},
        "job": {"depends_on": {"db": {"condition": "service_healthy"}}},
        "app": {"depends_on": {"job": {"condition": "service_completed_successfully"}}},
        "disabled": {"healthcheck": {"disable": True}},
    }
    assert without_healthcheck(svcs) == ["app", "disabled"]


def unconditional_dependencies(svcs: dict[str, dict[str, Any]]) -> list[str]:
    """depends_on entries that wait only for the container to start, not to be ready."""
    bad = []
    for name, svc in svcs.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            bad += [f"{name} -> {dep}" for dep in deps]
            continue
        bad += [
            f"{name} -> {dep}"
            for dep, cond in deps.items()
            if not isinstance(cond, dict)
            or cond.get("condition") not in {"service_healthy", "service_completed_successfully"}
        ]
    return bad


def test_every_dependency_waits_for_a_condition() -> None:
    assert unconditional_dependencies(services()) == []


def test_the_dependency_check_catches_lists_and_missing_conditions() -> None:
    svcs = {
        "a": {"depends_on": ["db"]},
        "b": {"depends_on": {"db": {"condition": "service_started"}, "c": {}}},
        "c": {"depends_on": {"db": {"condition": "service_healthy"}}},
    }
    assert unconditional_dependencies(svcs) == ["a -> db", "b -> db", "b -> c"]


def test_airflow_healthchecks_use_commands_airflow_has() -> None:
    svcs = services()
    job_checks = {
        "airflow-scheduler": "SchedulerJob",
        "airflow-dag-processor": "DagProcessorJob",
        "airflow-triggerer": "TriggererJob",
    }
    for name, job_type in job_checks.items():
        test = svcs[name]["healthcheck"]["test"]
        assert test[1:] == ["airflow", "jobs", "check", "--job-type", job_type, "--local"], name
    # The job types the CLI accepts, and the module attribute the worker check loads.
    from airflow.cli.cli_config import ARG_JOB_TYPE_FILTER
    from airflow.jobs.dag_processor_job_runner import DagProcessorJobRunner
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.jobs.triggerer_job_runner import TriggererJobRunner

    runners = {SchedulerJobRunner.job_type, DagProcessorJobRunner.job_type}
    runners.add(TriggererJobRunner.job_type)
    assert set(job_checks.values()) == runners <= set(ARG_JOB_TYPE_FILTER.kwargs["choices"])


def test_the_worker_healthcheck_loads_the_celery_app() -> None:
    import importlib

    check = services()["airflow-worker-1"]["healthcheck"]["test"][1]
    app = re.search(r"--app (\S+)\.(\w+) ", check)
    assert app is not None
    celery_app = getattr(importlib.import_module(app.group(1)), app.group(2))
    assert celery_app.main == "airflow.providers.celery.executors.celery_executor"


def pools_the_dags_use() -> set[str]:
    """Pool names the DAG files pass to tasks (the constants they name)."""
    text = "".join(f.read_text() for f in (ROOT / "dags").glob("*.py"))
    return set(re.findall(r"\bpool=(\w+)", text))


def test_init_creates_the_pools_the_dags_use() -> None:
    from dslc.model.registry import PROMOTE_POOL

    assert pools_the_dags_use() == {"PROMOTE_POOL"}
    script = " ".join(services()["airflow-init"]["command"])
    assert script.index("airflow db migrate") < script.index(f"airflow pools set {PROMOTE_POOL} 1 ")


def test_mlflow_needs_a_login_everywhere() -> None:
    from dslc.settings import SECRET_ENV_NAMES

    svcs = services()
    mlflow = svcs["mlflow"]
    script = " ".join(mlflow["command"])
    assert "--app-name basic-auth" in script
    assert "admin_password = %s" in script  # from the environment, never the file
    assert mlflow["environment"]["MLFLOW_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    clients = [
        n for n, svc in svcs.items() if "DSLC_MLFLOW_TRACKING_URI" in svc.get("environment", {})
    ]
    assert {"airflow-worker-1", "airflow-worker-2", "serving"} <= set(clients)
    for name in clients:
        env = svcs[name]["environment"]
        assert env["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD"), name
    worker = svcs["airflow-worker-1"]["environment"]
    masked = worker["AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES"].split(",")
    assert masked == [name.lower() for name in SECRET_ENV_NAMES]


# --- the compose topology is the one tests/distributed runs (dslc up --distributed) ----------

# A distributed-stack service -> the compose service that plays its part.
COMPOSE_NAME = {
    "s3": "minio",
    "mlflow": "mlflow",
    "serving": "serving",
    "api-server": "airflow-api-server",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
    "worker-1": "airflow-worker-1",
    "worker-2": "airflow-worker-2",
}
# Variables the local processes need and containers do not: where the repo and the state dir
# are, the loopback ports, settings the image sets (DAGs/plugins folders), tuning of the
# local stack, and the Celery queue that keeps several local stacks on one Redis apart.
LOCAL_ONLY = {
    "AIRFLOW_HOME",
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
    "AIRFLOW__API__WORKERS",
    "AIRFLOW__CELERY__DEFAULT_QUEUE",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "AIRFLOW__OPERATORS__DEFAULT_QUEUE",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED",
}


@pytest.fixture
def distributed_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from dslc.dev.stack import distributed
    from dslc.settings import Settings

    for key in ("DSLC_S3_ENDPOINT_URL", "DSLC_S3_SECRET_ACCESS_KEY", "DSLC_MLFLOW_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings(home=tmp_path / "state", airflow_password=None, serving_admin_token=None)
    distributed.create_profile(settings)
    return settings


def test_compose_runs_the_components_the_distributed_suite_runs(distributed_settings: Any) -> None:
    from dslc.dev.stack import environment

    svcs = services()
    local = environment.services(distributed_settings)
    assert set(local) == set(COMPOSE_NAME), "a new local service needs its compose counterpart"
    assert {COMPOSE_NAME[n] for n in local} <= set(svcs)
    # Two Celery workers on both, and PostgreSQL and Redis as the servers.
    assert distributed_settings.celery_workers == 2
    assert {"postgres", "redis"} <= set(svcs)
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert svcs[COMPOSE_NAME[name]]["command"] == f"airflow {name}" + (
            " --port 8080" if name == "api-server" else ""
        )
    for name in ("worker-1", "worker-2"):
        argv = environment.command(distributed_settings, name)
        assert argv[argv.index("celery") : argv.index("celery") + 2] == ["celery", "worker"]
        assert svcs[COMPOSE_NAME[name]]["command"].startswith("airflow celery worker")


def test_compose_gives_airflow_the_variables_the_distributed_stack_sets(
    distributed_settings: Any,
) -> None:
    from dslc.dev.stack import environment

    local = {
        k: v
        for k, v in environment.airflow_env(distributed_settings).items()
        if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))
        or k in ("DSLC_LAKE_URL", "DSLC_LAKE_CONN_ID", "DSLC_SERVING_ADMIN_TOKEN")
        or k.startswith("MLFLOW_TRACKING_")
    }
    compose = services()["airflow-scheduler"]["environment"]
    # The local stack derives MLflow's address from its ports; compose names it outright.
    if "DSLC_MLFLOW_TRACKING_URI" in compose:
        local.pop("MLFLOW_TRACKING_URI", None)
    missing = sorted(set(local) - set(compose) - LOCAL_ONLY)
    assert missing == [], f"set on the distributed stack but not in compose: {missing}"
    stale = sorted(k for k in LOCAL_ONLY if k in compose)
    assert stale == [], f"LOCAL_ONLY lists variables compose sets: {stale}"
    for key in ("AIRFLOW__CORE__EXECUTOR", "DSLC_LAKE_CONN_ID", "MLFLOW_TRACKING_USERNAME"):
        assert compose[key] == local[key], key
    assert compose["AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES"].split(",") == local[
        "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES"
    ].split(",")
    for key, scheme in (
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://"),
        ("AIRFLOW__CELERY__BROKER_URL", "redis://"),
        ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql"),
        ("AIRFLOW_CONN_LAKE_S3", "aws://"),
        ("DSLC_LAKE_URL", "s3://"),
    ):
        assert local[key].startswith(scheme), key
        assert compose[key].startswith(scheme), key


def test_compose_mlflow_stores_what_the_distributed_mlflow_stores_where_it_does(
    distributed_settings: Any,
) -> None:
    from dslc.dev.stack import environment

    argv = environment.command(distributed_settings, "mlflow")
    script = " ".join(services()["mlflow"]["command"])
    for flag, scheme in (
        ("--backend-store-uri", "postgresql+psycopg2://"),
        ("--artifacts-destination", "s3://"),
    ):
        assert argv[argv.index(flag) + 1].startswith(scheme)
        assert re.search(rf"{flag} {re.escape(scheme)}", script), flag
    assert "--serve-artifacts" in argv and "--serve-artifacts" in script
    assert "--app-name basic-auth" in script and "basic-auth" in argv
    # Users and permissions in PostgreSQL on both (a recreated container keeps them).
    config = Path(environment.mlflow_env(distributed_settings)["MLFLOW_AUTH_CONFIG_PATH"])
    assert "database_uri = postgresql+psycopg2://" in config.read_text()
    assert "database_uri = postgresql+psycopg2://" in script
    assert "CREATE DATABASE mlflow_auth" in (ROOT / "include/compose/postgres-init.sql").read_text()
