"""MLflow as the stack starts it (basic-auth app): no anonymous read or write of the registry,
the stack's login works, MLflow's old public default admin password does not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.mlflow_server import PASSWORD, USERNAME

pytestmark = pytest.mark.integration

MODEL = "auth-test-model"


def http(auth: tuple[str, str] | None = None) -> httpx.Client:
    return httpx.Client(timeout=30.0, trust_env=False, auth=auth)


@pytest.fixture(scope="module")
def champion(mlflow_server: Any) -> Iterator[str]:
    """A registered model whose version 1 holds the ``champion`` alias (made with the login)."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    c.create_registered_model(MODEL)
    run = c.create_run(c.create_experiment("auth-test")).info
    for _ in range(2):
        c.create_model_version(MODEL, source=f"{run.artifact_uri}/model", run_id=run.run_id)
    c.set_registered_model_alias(MODEL, "champion", "1")
    yield "1"


def _alias(url: str, auth: tuple[str, str] | None) -> httpx.Response:
    with http(auth) as client:
        return client.get(
            f"{url}/api/2.0/mlflow/registered-models/alias",
            params={"name": MODEL, "alias": "champion"},
        )


def test_anonymous_registry_read_is_401(mlflow_server: Any, champion: str) -> None:
    with http() as client:
        resp = client.get(f"{mlflow_server.url}/api/2.0/mlflow/registered-models/search")
    assert resp.status_code == 401
    assert MODEL not in resp.text


def test_anonymous_alias_move_is_401_and_the_alias_stays(mlflow_server: Any, champion: str) -> None:
    with http() as client:
        resp = client.post(
            f"{mlflow_server.url}/api/2.0/mlflow/registered-models/alias",
            json={"name": MODEL, "alias": "champion", "version": "2"},
        )
    assert resp.status_code == 401
    current = _alias(mlflow_server.url, (USERNAME, PASSWORD))
    assert current.status_code == 200
    assert current.json()["model_version"]["version"] == champion


def test_the_login_reads_and_moves_the_alias(mlflow_server: Any, champion: str) -> None:
    login = (USERNAME, PASSWORD)
    with http(login) as client:
        found = client.get(f"{mlflow_server.url}/api/2.0/mlflow/registered-models/search")
        assert found.status_code == 200
        assert MODEL in {m["name"] for m in found.json()["registered_models"]}
        moved = client.post(
            f"{mlflow_server.url}/api/2.0/mlflow/registered-models/alias",
            json={"name": MODEL, "alias": "champion", "version": "2"},
        )
        assert moved.status_code == 200
        back = client.post(
            f"{mlflow_server.url}/api/2.0/mlflow/registered-models/alias",
            json={"name": MODEL, "alias": "champion", "version": champion},
        )
        assert back.status_code == 200
    assert _alias(mlflow_server.url, login).json()["model_version"]["version"] == champion


@pytest.mark.parametrize(
    "login",
    [("admin", "password1234"), (USERNAME, PASSWORD + "x"), ("nobody", PASSWORD)],
    ids=["mlflow-default-password", "wrong-password", "unknown-user"],
)
def test_other_logins_are_401(mlflow_server: Any, champion: str, login: tuple[str, str]) -> None:
    assert _alias(mlflow_server.url, login).status_code == 401


def test_auth_config_and_db_are_in_the_state_dir_owner_only(mlflow_server: Any) -> None:
    ini = mlflow_server.root / "mlflow" / "basic_auth.ini"
    assert ini.stat().st_mode & 0o777 == 0o600
    text = ini.read_text()
    assert f"database_uri = sqlite:///{mlflow_server.root / 'mlflow' / 'basic_auth.db'}" in text
    assert "password1234" not in text
    assert (mlflow_server.root / "mlflow" / "basic_auth.db").exists()
    # The admin password lives in the config only, not in the server's log.
    assert PASSWORD not in mlflow_server.log_tail()
