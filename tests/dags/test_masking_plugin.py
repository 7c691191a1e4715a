"""The dslc_masking plugin: Airflow loads its listener from plugins/, and once a task starts
the values of the stack's secret variables are masked in what Airflow logs."""

from __future__ import annotations

import secrets

import pytest

from dslc.settings import SECRET_ENV_NAMES


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {name: f"s3cr3t-{secrets.token_hex(8)}" for name in SECRET_ENV_NAMES}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_running_task_masks_every_secret_variable(secret_env: dict[str, str]) -> None:
    from airflow.sdk._shared.secrets_masker import redact
    from airflow.sdk.listener import get_listener_manager

    line = "MLflow login " + " ".join(secret_env.values())
    # Negative control: before a task runs, Airflow masks its own config secrets (API secret
    # key, JWT secret) but not ours.
    ours = [v for k, v in secret_env.items() if not k.startswith("AIRFLOW__")]
    assert all(v in redact(line) for v in ours)
    get_listener_manager().hook.on_task_instance_running(previous_state=None, task_instance=None)
    masked = redact(line)
    assert not any(v in masked for v in secret_env.values()), masked
    assert masked.startswith("MLflow login ***")


def test_airflow_masks_our_names_in_rendered_values() -> None:
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    for name in SECRET_ENV_NAMES:
        assert should_hide_value_for_key(name), name


@pytest.mark.parametrize("form", ["json", "uri"])
def test_running_task_masks_the_smtp_password_of_a_connection_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    import json

    from airflow.sdk._shared.secrets_masker import redact
    from airflow.sdk.listener import get_listener_manager

    password = f"smtp-{secrets.token_hex(8)}"
    monkeypatch.setenv("DSLC_SMTP_CONN_ID", "smtp_alerts")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_ALERTS",
        json.dumps({"conn_type": "smtp", "host": "mail", "login": "u", "password": password})
        if form == "json"
        else f"smtp://u:{password}@mail:587",
    )
    line = f"sending with {password}"
    assert password in redact(line)  # negative control: nothing looked the connection up
    get_listener_manager().hook.on_task_instance_running(previous_state=None, task_instance=None)
    assert redact(line) == "sending with ***"


def test_a_malformed_smtp_connection_does_not_break_the_task_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.listener import get_listener_manager

    monkeypatch.delenv("DSLC_SMTP_CONN_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", '{"conn_type": "smtp", "password": "pw-x')
    get_listener_manager().hook.on_task_instance_running(previous_state=None, task_instance=None)
    assert "could not parse the SMTP connection to mask its password (" in caplog.text
    assert "pw-x" not in caplog.text
