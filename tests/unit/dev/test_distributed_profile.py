"""The distributed profile without its servers: what a state dir records, the names it gives
the stack's databases/queue/bucket, each service's command line and environment, and the
errors for bad settings. (tests/distributed starts it for real.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from dslc.dev.stack import distributed, environment
from dslc.dev.stack.errors import StackError
from dslc.settings import SECRET_ENV_NAMES, Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in ("DSLC_S3_ENDPOINT_URL", "DSLC_S3_ACCESS_KEY_ID", "DSLC_S3_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    return Settings(
        home=tmp_path / "state",
        airflow_password=None,
        serving_admin_token=None,
        mlflow_password=None,
        postgres_url="postgresql://postgres@127.0.0.1:5432/postgres",
        redis_url="redis://127.0.0.1:6379/0",
        s3_port=19000,
    )


def test_a_state_dir_is_embedded_until_up_distributed_records_a_profile(
    settings: Settings,
) -> None:
    assert distributed.load_profile(settings) is None
    assert environment.services(settings) == environment.SERVICES
    profile = distributed.create_profile(settings)
    assert distributed.load_profile(settings) == profile
    saved = json.loads(distributed.profile_path(settings).read_text())
    assert saved["profile"] == "distributed"
    assert environment.services(settings) == (
        "s3",
        "mlflow",
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "worker-1",
        "worker-2",
        "serving",
    )
    # Stops the scheduler first and its own S3 server last.
    order = distributed.stop_order(profile)
    assert order[0] == "scheduler"
    assert order[-1] == "s3"
    assert set(order) == set(environment.services(settings))


def test_names_on_shared_servers_carry_the_stack_token(settings: Settings) -> None:
    profile = distributed.create_profile(settings)
    token = profile.token
    assert profile.databases == (
        f"dslc_{token}_airflow",
        f"dslc_{token}_mlflow",
        f"dslc_{token}_mlflow_auth",
    )
    assert profile.queue == profile.bucket == f"dslc-{token}"
    assert profile.lake_url == f"s3://dslc-{token}/lake"
    assert profile.database_url(profile.airflow_db) == (
        f"postgresql+psycopg2://postgres@127.0.0.1:5432/dslc_{token}_airflow"
    )
    other = distributed.create_profile(settings.model_copy(update={"home": settings.home / "b"}))
    assert other.token != token


def test_an_embedded_state_dir_is_not_turned_into_a_distributed_one(settings: Settings) -> None:
    db = settings.state_dir / "airflow" / "airflow.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    with pytest.raises(StackError, match="holds an embedded stack"):
        distributed.create_profile(settings)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("postgres_url", "mysql://db:3306/x", "DSLC_POSTGRES_URL"),
        ("redis_url", "amqp://127.0.0.1:5672", "DSLC_REDIS_URL"),
        ("s3_endpoint_url", "ftp://s3.example", "DSLC_S3_ENDPOINT_URL"),
    ],
)
def test_bad_server_urls_are_refused_naming_the_setting(
    settings: Settings, field: str, value: str, message: str
) -> None:
    with pytest.raises(StackError, match=message):
        distributed.create_profile(settings.model_copy(update={field: value}))
    assert distributed.load_profile(settings) is None


def test_a_password_in_the_postgres_url_is_never_printed() -> None:
    url = "postgresql://airflow:s3cret-pw@db.internal:5432/postgres"
    assert "s3cret-pw" not in distributed.redacted(url)
    assert distributed.redacted(url) == "postgresql://airflow:***@db.internal:5432/postgres"


def test_airflow_runs_celery_on_postgres_with_the_lake_on_s3(settings: Settings) -> None:
    profile = distributed.create_profile(settings)
    env = environment.airflow_env(settings)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == profile.database_url(profile.airflow_db)
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == profile.queue
    assert env["DSLC_LAKE_URL"] == profile.lake_url
    assert env["DSLC_LAKE_CONN_ID"] == "lake_s3"
    conn = env["AIRFLOW_CONN_LAKE_S3"]
    assert conn.startswith("aws://") and "http%3A%2F%2F127.0.0.1%3A19000" in conn
    _key_id, secret = environment.s3_credentials(settings)
    assert secret in conn and len(secret) >= 32
    # The S3 secret's names are masked in task logs.
    masked = env["AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES"].split(",")
    assert {"aws_secret_access_key", "dslc_s3_secret_access_key"} <= set(masked)
    assert set(masked) == {n.lower() for n in SECRET_ENV_NAMES}


def test_workers_hold_no_metadata_db_url(settings: Settings) -> None:
    distributed.create_profile(settings)
    env = environment.env_for(settings, "worker-2")
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert "AIRFLOW__CELERY__RESULT_BACKEND" not in env
    assert not [k for k, v in env.items() if "postgresql" in v], "a SQL URL in a worker's env"
    backend = env["AIRFLOW__CELERY__RESULT_BACKEND_CMD"].removeprefix("cat ")
    assert Path(backend).read_text().startswith("db+postgresql")
    assert Path(backend).stat().st_mode & 0o077 == 0
    assert env["DSLC_WORKER_NAME"].startswith("worker-2@")
    argv = environment.command(settings, "worker-2")
    assert argv[1:5] == ["-m", "dslc.dev.preload", "celery", "worker"]
    assert argv[argv.index("--queues") + 1] == distributed.load_profile(settings).queue  # type: ignore[union-attr]


def test_mlflow_keeps_runs_and_users_in_postgres_and_artifacts_in_s3(settings: Settings) -> None:
    profile = distributed.create_profile(settings)
    argv = environment.command(settings, "mlflow")
    assert argv[argv.index("--backend-store-uri") + 1] == profile.database_url(profile.mlflow_db)
    assert argv[argv.index("--artifacts-destination") + 1] == profile.artifacts_url
    assert "basic-auth" in argv
    env = environment.mlflow_env(settings)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == profile.s3_endpoint
    config = Path(env["MLFLOW_AUTH_CONFIG_PATH"]).read_text()
    assert f"database_uri = {profile.database_url(profile.mlflow_auth_db)}" in config


def test_an_external_s3_needs_both_keys(settings: Settings) -> None:
    external = settings.model_copy(
        update={
            "s3_endpoint_url": "https://s3.example.com",
            "s3_secret_access_key": SecretStr("their-secret-value"),
        }
    )
    profile = distributed.create_profile(external)
    assert not profile.local_s3
    assert "s3" not in environment.services(external)
    with pytest.raises(StackError, match="DSLC_S3_ACCESS_KEY_ID"):
        environment.s3_credentials(external)
    both = external.model_copy(update={"s3_access_key_id": "AKIAEXAMPLE"})
    assert environment.s3_credentials(both) == ("AKIAEXAMPLE", "their-secret-value")


def test_the_cli_process_uses_the_s3_lake_like_a_task(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert environment.stack_env(settings) == {}  # embedded: nothing to set
    profile = distributed.create_profile(settings)
    env = environment.stack_env(settings)
    assert env["DSLC_LAKE_URL"] == profile.lake_url
    assert env["AWS_ENDPOINT_URL"] == profile.s3_endpoint
    assert env["AIRFLOW_CONN_LAKE_S3"] == environment.airflow_env(settings)["AIRFLOW_CONN_LAKE_S3"]


def test_worker_hostname_names_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSLC_WORKER_NAME", "worker-1@vm")
    assert distributed.worker_hostname() == "worker-1@vm"
    monkeypatch.delenv("DSLC_WORKER_NAME")
    assert distributed.worker_hostname()


def test_down_purges_a_stack_whose_objects_die_with_its_local_s3(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dslc.dev.stack import lifecycle

    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "_down", lambda s, grace: calls.append("down"))
    monkeypatch.setattr(lifecycle, "_purge", lambda s: calls.append("purge"))
    lifecycle.down(settings=settings)
    assert calls == ["down"]  # embedded: files stay
    distributed.create_profile(settings)
    calls.clear()
    lifecycle.down(settings=settings)
    assert calls == ["down", "purge"]
    external = settings.model_copy(
        update={"home": settings.state_dir / "ext", "s3_endpoint_url": "https://s3.example.com"}
    )
    distributed.create_profile(external)
    calls.clear()
    lifecycle.down(settings=external)
    assert calls == ["down"]  # its own S3 keeps the objects: nothing dropped without --purge
    lifecycle.down(settings=external, purge=True)
    assert calls == ["down", "down", "purge"]


def test_using_a_stack_forgets_s3_filesystems_made_for_another(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec

    # Everything use_stack_env sets is restored after the test.
    for key in (
        "DSLC_LAKE_URL",
        "DSLC_LAKE_CONN_ID",
        "AIRFLOW_CONN_LAKE_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "MLFLOW_S3_ENDPOINT_URL",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # a stack that is gone
    before = fsspec.filesystem("s3")
    assert fsspec.filesystem("s3") is before  # fsspec's instance cache
    distributed.create_profile(settings)
    environment.use_stack_env(settings)
    after = fsspec.filesystem("s3")
    assert after is not before
    assert after.endpoint_url != "http://127.0.0.1:1"
