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
