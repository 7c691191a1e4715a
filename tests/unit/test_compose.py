"""docker-compose.yaml is valid and production-shaped, checked statically (no Docker engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS = (
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_FERNET_KEY",
    "MLFLOW_ADMIN_PASSWORD",
    "SERVING_ADMIN_TOKEN",
)
COMPOSE = shutil.which("docker-compose")


def _config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed (.ci/run installs it)")
def test_compose_config_is_valid_with_secrets_from_the_environment() -> None:
    result = _config({name: f"test-{name.lower()}" for name in SECRETS})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    worker = config["services"]["airflow-worker"]["environment"]
    assert worker["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert worker["DSLC_LAKE_URL"].startswith("s3://")


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed (.ci/run installs it)")
def test_compose_refuses_to_start_without_secrets() -> None:
    result = _config({})
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr


def test_topology_has_every_service_and_no_secret_in_the_file() -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    services = set(yaml.safe_load(text)["services"])
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
        "airflow-worker",
        "serving",
    } <= services
    for line in text.splitlines():
        if "PASSWORD" in line or "SECRET" in line or "TOKEN" in line:
            assert "${" in line or "$$" in line or line.strip().startswith("#"), line


def floating_images(services: dict[str, dict[str, str]]) -> list[str]:
    """Third-party images without a fixed release (``latest`` or no tag at all)."""
    return [
        f"{name}: {svc['image']}"
        for name, svc in services.items()
        if "image" in svc
        and not svc["image"].startswith("dslc:")  # ours, built from the Dockerfile
        and (":" not in svc["image"] or svc["image"].endswith(":latest"))
    ]


def test_every_third_party_image_is_pinned() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]
    assert floating_images(services) == []


def test_the_pin_check_catches_latest_and_untagged_images() -> None:
    services = {"a": {"image": "minio/mc:latest"}, "b": {"image": "redis"}, "c": {"build": "."}}
    assert floating_images(services) == ["a: minio/mc:latest", "b: redis"]


def test_mlflow_needs_a_login_everywhere() -> None:
    from dslc.settings import SECRET_ENV_NAMES

    services = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]
    mlflow = services["mlflow"]
    script = " ".join(mlflow["command"])
    assert "--app-name basic-auth" in script
    assert "admin_password = %s" in script  # from the environment, never the file
    assert mlflow["environment"]["MLFLOW_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    clients = [
        n for n, svc in services.items() if "DSLC_MLFLOW_TRACKING_URI" in svc.get("environment", {})
    ]
    assert {"airflow-worker", "serving"} <= set(clients)
    for name in clients:
        env = services[name]["environment"]
        assert env["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD"), name
    worker = services["airflow-worker"]["environment"]
    masked = worker["AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES"].split(",")
    assert masked == [name.lower() for name in SECRET_ENV_NAMES]
