"""deploy/helm/airflow-values.yaml runs what docker-compose.yaml runs, and holds no secret.

No cluster and no helm binary here: what the chart does with a key (which Secret key feeds which
AIRFLOW__* variable) is written down in CHART_SECRET_ENV from the chart's documented values;
that the keys exist in the chart's schema was checked by hand (README, "Production").
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES_FILE = ROOT / "deploy" / "helm" / "airflow-values.yaml"

# Chart values that make the chart set an AIRFLOW__* variable from a Secret of that name.
CHART_SECRET_ENV = {
    ("data", "metadataSecretName"): "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    ("data", "resultBackendSecretName"): "AIRFLOW__CELERY__RESULT_BACKEND",
    ("data", "brokerUrlSecretName"): "AIRFLOW__CELERY__BROKER_URL",
    ("fernetKeySecretName",): "AIRFLOW__CORE__FERNET_KEY",
    ("apiSecretKeySecretName",): "AIRFLOW__API__SECRET_KEY",
    ("jwtSecretName",): "AIRFLOW__API_AUTH__JWT_SECRET",
}
# Chart values that would put a secret in the values file (or a default one in the cluster).
LITERAL_SECRET_KEYS = (
    ("fernetKey",),
    ("apiSecretKey",),
    ("jwtSecret",),
    ("webserverSecretKey",),
    ("data", "metadataConnection"),
    ("data", "resultBackendConnection"),
    ("data", "brokerUrl"),
    ("redis", "password"),
    ("flower", "password"),
    ("createUserJob", "defaultUser"),
)
# What differs by design: compose deploys to its serving container (the local target), the
# cluster has the deploy task apply the serving Deployment (the kubernetes target).
COMPOSE_ONLY = {"DSLC_SERVING_URL", "DSLC_SERVING_ADMIN_TOKEN"}
HELM_ONLY = {"DSLC_K8S_NAMESPACE", "DSLC_K8S_IMAGE"}
# Names whose value is a secret or a URL carrying one.
_SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|TOKEN|FERNET|^AIRFLOW_CONN_|SQL_ALCHEMY_CONN$|BROKER_URL$|RESULT_BACKEND$"
)


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())
    return loaded


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    return loaded


def compose_env() -> dict[str, str]:
    env: dict[str, str] = compose()["x-airflow"]["environment"]
    return env


def _get(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def helm_env(vals: dict[str, Any]) -> dict[str, str]:
    """Every variable the values give the Airflow containers -> its value or where it comes from."""
    env = {item["name"]: item["value"] for item in vals.get("env") or []}
    env |= {s["envName"]: f"secret {s['secretName']}" for s in vals.get("secret") or []}
    for section, settings in (vals.get("config") or {}).items():
        env |= {f"AIRFLOW__{section}__{k}".upper(): str(v) for k, v in settings.items()}
    env |= {
        name: f"secret {_get(vals, path)}"
        for path, name in CHART_SECRET_ENV.items()
        if _get(vals, path)
    }
    if vals.get("executor"):
        env["AIRFLOW__CORE__EXECUTOR"] = vals["executor"]
    return env


def test_values_are_a_yaml_mapping_for_the_chart() -> None:
    vals = values()
    assert isinstance(vals, dict)
    assert vals["executor"] == compose_env()["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert vals["postgresql"]["enabled"] is False
    assert vals["redis"]["enabled"] is False


def test_same_components_as_compose() -> None:
    vals = values()
    workers = [
        s for s in compose()["services"].values() if "celery worker" in str(s.get("command"))
    ]
    assert vals["workers"]["celery"]["replicas"] == len(workers) == 2
    assert vals["dagProcessor"]["enabled"] is True
    # The chart's scheduler, triggerer and api-server are on by default; the user job is a FAB
    # command the image cannot run.
    assert vals["createUserJob"]["enabled"] is False
    assert "webserver" not in vals and "scheduler" not in vals and "triggerer" not in vals


def test_the_image_is_the_one_compose_builds() -> None:
    vals = values()
    image = vals["images"]["airflow"]
    compose_image = compose()["x-airflow"]["image"]
    assert compose()["x-airflow"]["build"] == "."
    assert image["repository"].rsplit("/", 1)[-1] == compose_image.split(":")[0] == "dslc"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert image["tag"] == project["version"]
    # The serving pods the deploy task creates run the same image.
    assert helm_env(vals)["DSLC_K8S_IMAGE"] == f"{image['repository']}:{image['tag']}"
    pin = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin is not None
    assert vals["airflowVersion"] == pin.group(1)


def image_env() -> dict[str, str]:
    """The AIRFLOW__* settings the Dockerfile bakes in (compose's containers inherit them)."""
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"(AIRFLOW__\w+)=(\S+)", text))


def compose_effective_env() -> dict[str, str]:
    """What a compose Airflow container runs with: its environment, the image's, and Airflow's
    default auth manager (the chart changes it to FAB, so the values must set it back)."""
    from airflow.configuration import conf

    default_auth = conf.get_default_value("core", "auth_manager")
    return {"AIRFLOW__CORE__AUTH_MANAGER": default_auth, **image_env(), **compose_env()}


def test_same_environment_as_compose_but_the_deploy_target() -> None:
    compose_side = compose_effective_env()
    helm = helm_env(values())
    assert set(compose_side) - COMPOSE_ONLY == set(helm) - HELM_ONLY
    assert compose_side["DSLC_DEPLOY_TARGET"] == "local"
    assert helm["DSLC_DEPLOY_TARGET"] == "kubernetes"
    for name in (
        "DSLC_LAKE_URL",
        "DSLC_LAKE_CONN_ID",
        "MLFLOW_TRACKING_USERNAME",
        "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__PLUGINS_FOLDER",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__AUTH_MANAGER",
    ):
        assert helm[name] == compose_side[name], name


def test_the_migration_job_creates_the_pools_the_dags_use() -> None:
    from dslc.model.registry import PROMOTE_POOL
    from tests.unit.test_compose import pools_the_dags_use

    assert pools_the_dags_use() == {"PROMOTE_POOL"}
    script = " ".join(values()["migrateDatabaseJob"]["args"])
    assert script.index("airflow db migrate") < script.index(f"airflow pools set {PROMOTE_POOL} 1 ")


def test_every_dslc_variable_is_a_setting() -> None:
    from dslc.settings import Settings

    fields = {f"DSLC_{name.upper()}" for name in Settings.model_fields}
    used = {n for n in helm_env(values()) if n.startswith("DSLC_")}
    assert used <= fields, used - fields


def literal_secrets(vals: dict[str, Any]) -> list[str]:
    """Secrets written into the values instead of read from a Kubernetes Secret."""
    found = [".".join(path) for path in LITERAL_SECRET_KEYS if _get(vals, path) is not None]
    found += [
        f"env {item['name']}"
        for item in vals.get("env") or []
        if _SECRET_NAME.search(item["name"]) or ("://" in item["value"] and "@" in item["value"])
    ]
    return found


def test_no_literal_secret_and_every_secret_from_a_kubernetes_secret() -> None:
    vals = values()
    assert literal_secrets(vals) == []
    helm = helm_env(vals)
    secret_names = {n for n in compose_env() if _SECRET_NAME.search(n)} - COMPOSE_ONLY
    assert secret_names == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW_CONN_LAKE_S3",
        "MLFLOW_TRACKING_PASSWORD",
    }
    for name in secret_names:
        assert helm[name].startswith("secret dslc-"), name


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"fernetKey": "x"}, ["fernetKey"]),
        ({"data": {"metadataConnection": {"pass": "x"}}}, ["data.metadataConnection"]),
        (
            {"env": [{"name": "MLFLOW_TRACKING_PASSWORD", "value": "x"}]},
            ["env MLFLOW_TRACKING_PASSWORD"],
        ),
        ({"env": [{"name": "DSLC_LAKE_URL", "value": "s3://k:s@host/b"}]}, ["env DSLC_LAKE_URL"]),
        ({"env": [{"name": "DSLC_LAKE_URL", "value": "s3://bucket/lake"}]}, []),
    ],
)
def test_the_secret_check_catches_literal_secrets(bad: dict[str, Any], expected: list[str]) -> None:
    assert literal_secrets(bad) == expected
