"""The stack's MLflow login: generated once per state dir (0600), overridable, written into
MLflow's basic-auth config as MLflow itself reads it back, and handed to every service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from dslc.dev.stack import environment, secrets
from dslc.dev.stack.errors import StackError
from dslc.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for key in ("DSLC_MLFLOW_PASSWORD", "DSLC_MLFLOW_USERNAME", "DSLC_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    yield Settings(home=tmp_path / "state", airflow_password=None, serving_admin_token=None)


def test_password_is_generated_once_and_kept_owner_only(settings: Settings) -> None:
    user, password = secrets.mlflow_credentials(settings)
    path = settings.state_dir / "secrets" / "mlflow.json"
    assert user == "admin"
    assert len(password) >= secrets.MLFLOW_MIN_PASSWORD
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert secrets.mlflow_credentials(settings) == (user, password)
    # A second secret in the same file keeps the first.
    flask_key = secrets.mlflow_flask_secret(settings)
    assert json.loads(path.read_text()) == {"password": password, "flask_secret_key": flask_key}
    assert secrets.mlflow_credentials(settings) == (user, password)


def test_settings_override_the_generated_password(settings: Settings) -> None:
    mine = settings.model_copy(
        update={"mlflow_username": "ops", "mlflow_password": SecretStr("a-long-enough-pass")}
    )
    assert secrets.mlflow_credentials(mine) == ("ops", "a-long-enough-pass")
    assert not (settings.state_dir / "secrets" / "mlflow.json").exists()


def test_auth_config_reads_back_as_written_by_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.server.auth.config import read_auth_config

    password = "pa%ss=word;#with:odd(chars)"
    path = secrets.write_mlflow_auth_config(tmp_path / "mlflow", "admin", password)
    assert path.stat().st_mode & 0o777 == 0o600
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    config = read_auth_config()
    assert config.admin_username == "admin"
    assert config.admin_password == password
    assert config.database_uri == f"sqlite:///{tmp_path / 'mlflow' / 'basic_auth.db'}"
    assert config.default_permission == "READ"
    assert config.authorization_function == secrets.MLFLOW_AUTH_FUNCTION
    assert config.auth_cache_ttl_seconds == secrets.MLFLOW_AUTH_CACHE_SECONDS > 0


@pytest.mark.parametrize(
    ("password", "match"),
    [
        ("password1234", "MLflow's public default password"),
        ("short", "has 5 characters; MLflow needs at least 12"),
        (" leading-space-pw", "whitespace or has a line break"),
        ("two\nlines-password", "whitespace or has a line break"),
    ],
)
def test_passwords_mlflow_would_refuse_are_refused_first(
    tmp_path: Path, password: str, match: str
) -> None:
    with pytest.raises(StackError, match=match):
        secrets.write_mlflow_auth_config(tmp_path, "admin", password)
    assert not (tmp_path / "basic_auth.ini").exists()


def test_mlflow_server_runs_basic_auth_with_its_config(settings: Settings) -> None:
    cmd = environment.command(settings, "mlflow")
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    env = environment.mlflow_env(settings)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(settings.state_dir / "mlflow" / "basic_auth.ini")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == secrets.mlflow_flask_secret(settings)
    # The admin password is in the 0600 config only, not in the server's environment.
    _, password = secrets.mlflow_credentials(settings)
    assert password not in env.values()


def test_tasks_and_serving_log_in_with_the_stack_password(settings: Settings) -> None:
    user, password = secrets.mlflow_credentials(settings)
    for env in (environment.airflow_env(settings), environment.serving_env(settings)):
        assert env["MLFLOW_TRACKING_USERNAME"] == user
        assert env["MLFLOW_TRACKING_PASSWORD"] == password


def test_an_external_mlflow_keeps_the_inherited_login(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "from-the-shell")
    external = settings.model_copy(update={"mlflow_tracking_uri": "https://mlflow.example"})
    env = environment.serving_env(external)
    assert env["MLFLOW_TRACKING_PASSWORD"] == "from-the-shell"
    assert not (settings.state_dir / "secrets" / "mlflow.json").exists()


def test_airflow_masks_the_names_of_our_secrets(settings: Settings) -> None:
    names = environment.airflow_env(settings)["AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES"]
    assert set(names.split(",")) >= {
        "mlflow_tracking_password",
        "dslc_serving_admin_token",
        "dslc_mlflow_password",
    }


def test_up_prints_the_mlflow_login(settings: Settings) -> None:
    from rich.console import Console

    from dslc.dev.stack import lifecycle

    secrets.seed_password(settings)
    console = Console(record=True, width=200)
    lifecycle._print_access(console, settings)
    text = console.export_text()
    user, password = secrets.mlflow_credentials(settings)
    assert f"MLflow login   user {user}  password {password}" in text
    assert str(settings.state_dir / "secrets" / "mlflow.json") in text


def test_the_smtp_connection_is_the_one_inherited_airflow_variable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", "smtp://u:pw@mail.example:587")
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", "http://x")
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "99")
    env = environment.airflow_env(settings)
    assert env["AIRFLOW_CONN_SMTP_DEFAULT"] == "smtp://u:pw@mail.example:587"
    assert "AIRFLOW_CONN_OTHER" not in env and env["AIRFLOW__CORE__PARALLELISM"] == "4"
    other = settings.model_copy(update={"smtp_conn_id": "smtp_alerts"})
    assert "AIRFLOW_CONN_SMTP_DEFAULT" not in environment.airflow_env(other)
