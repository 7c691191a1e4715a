"""How each service of the stack is run: its command line, its environment, its address.

Airflow is configured only through ``AIRFLOW__*`` environment variables built by
:func:`airflow_env` (inherited ``AIRFLOW_*`` variables are dropped so a stack is reproducible):
SQLite metadata DB and LocalExecutor under ``<state>/airflow``, the repo's ``dags/`` and
``plugins/``, SimpleAuthManager with one admin user, and
``AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False`` so new DAGs run without a click in the UI.
Every service gets the ``DSLC_*`` settings of this stack, so tasks see the same lake and ports.

MLflow runs its ``basic-auth`` app: every request needs the stack's MLflow user and password
(:func:`~dslc.dev.stack.secrets.mlflow_credentials`), which every other service, and the CLI
process itself (:func:`use_mlflow_credentials`), gets as ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``, the variables MLflow's client reads.

The serving process starts on the current ``champion`` version (resolved and pinned at start)
or on no model, until a deploy loads one.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from dslc.dev.stack.distributed import (
    LAKE_CONN_ID,
    WORKER_PREFIX,
    Profile,
    lake_connection,
    load_profile,
    s3_env,
)
from dslc.dev.stack.distributed import s3_credentials as _s3_credentials
from dslc.dev.stack.distributed import services as _distributed_services
from dslc.dev.stack.paths import airflow_home, bin_dir, executable, password_file
from dslc.dev.stack.secrets import (
    _generated,
    airflow_secrets,
    mlflow_auth_config,
    mlflow_credentials,
    mlflow_flask_secret,
    serving_token,
)
from dslc.settings import SECRET_ENV_NAMES, get_settings

if TYPE_CHECKING:
    from dslc.settings import Settings

SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
SCHEDULER_IDLE_SLEEP = "0.2"
# The embedded stack's services, in start order (the distributed profile has its own list).
SERVICES = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer", "serving")


def services(settings: Settings) -> tuple[str, ...]:
    """The services of this state dir's stack, in start order."""
    profile = load_profile(settings)
    return SERVICES if profile is None else _distributed_services(profile)


def s3_credentials(settings: Settings) -> tuple[str, str]:
    """The distributed stack's S3 key id and secret (see :mod:`.distributed`)."""
    return _s3_credentials(settings, _generated)


def stack_env(settings: Settings) -> dict[str, str]:
    """What a process outside the stack (the CLI, the demo) needs to use it like a task does:
    the lake's URL and connection, and S3 credentials, for the distributed profile; nothing for
    the embedded one."""
    profile = load_profile(settings)
    if profile is None:
        return {}
    key_id, secret = s3_credentials(settings)
    return {
        "DSLC_LAKE_URL": settings.lake_url or profile.lake_url,
        "DSLC_LAKE_CONN_ID": LAKE_CONN_ID,
        f"AIRFLOW_CONN_{LAKE_CONN_ID.upper()}": lake_connection(profile, key_id, secret),
        **s3_env(profile, key_id, secret),
    }


def use_stack_env(settings: Settings | None = None) -> None:
    """Point this process at the stack: MLflow's login and, when distributed, the S3 lake."""
    from dslc.settings import get_settings as cached

    settings = settings or get_settings()
    env = stack_env(settings)
    os.environ.update(env)
    use_mlflow_credentials(settings)
    if env:
        cached.cache_clear()
        # fsspec hands out one S3 filesystem per set of arguments, made with the endpoint and
        # keys the environment had then: a process that used another stack would keep
        # writing to that one's (gone) S3 server.
        with contextlib.suppress(ImportError):
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()


def mlflow_client_env(settings: Settings) -> dict[str, str]:
    """``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` for the stack's MLflow.

    Empty for an MLflow elsewhere (DSLC_MLFLOW_TRACKING_URI) without DSLC_MLFLOW_PASSWORD: its
    credentials are then whatever the environment already has.
    """
    if settings.mlflow_tracking_uri is not None and settings.mlflow_password is None:
        return {}
    username, password = mlflow_credentials(settings)
    return {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}


def use_mlflow_credentials(settings: Settings | None = None) -> None:
    """Log this process's MLflow client in to the stack's MLflow (MLflow reads only the env)."""
    os.environ.update(mlflow_client_env(settings or get_settings()))


def _base_env(settings: Settings) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW_") and not k.startswith("DSLC_")
    }
    env["PATH"] = os.pathsep.join([str(bin_dir()), env.get("PATH", os.defpath)])
    loopback = "127.0.0.1,localhost,::1"
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key), loopback]))
    # Pass DSLC_* through, pinned to what this stack uses so tasks see the same lake and ports.
    env.update({k: v for k, v in os.environ.items() if k.startswith("DSLC_")})
    env.update(
        {
            "DSLC_HOME": str(settings.state_dir),
            "DSLC_PROJECT_ROOT": str(settings.project_root),
            "DSLC_AIRFLOW_HOST": settings.airflow_host,
            "DSLC_AIRFLOW_PORT": str(settings.airflow_port),
            "DSLC_MLFLOW_HOST": settings.mlflow_host,
            "DSLC_MLFLOW_PORT": str(settings.mlflow_port),
            "MLFLOW_TRACKING_URI": settings.mlflow_url,
            "DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    env.update(mlflow_client_env(settings))
    return env


def airflow_env(settings: Settings | None = None) -> dict[str, str]:
    """The complete environment of the Airflow components (also usable by tests).

    Inherited ``AIRFLOW_*`` variables are dropped: the stack never picks up another
    AIRFLOW_HOME or a test session's configuration by accident. The exception: the SMTP
    connection of the notifications (``DSLC_SMTP_CONN_ID``), when the environment holds it.
    """
    settings = settings or get_settings()
    home = airflow_home(settings)
    keys = airflow_secrets(settings)
    url = settings.airflow_url
    env = _base_env(settings)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "dslc.settings.SQLITE_CONNECT_ARGS",
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.project_root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.project_root / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # New DAGs start unpaused so the demo runs without clicking in the UI.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file(settings)),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__PARALLELISM": "4",
            # The scheduler sleeps this long when a loop found nothing to do (default 1 s):
            # it is most of the gap between one task's end and the next one's start.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": SCHEDULER_IDLE_SLEEP,
            "AIRFLOW__API__HOST": settings.airflow_host,
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            # Added to Airflow's defaults (names containing password, secret, token...).
            "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": ",".join(
                name.lower() for name in SECRET_ENV_NAMES
            ),
            # The deploy task tells the serving process to load a version.
            "DSLC_SERVING_ADMIN_TOKEN": serving_token(settings),
        }
    )
    # The one inherited AIRFLOW_* variable kept: the notifications' SMTP connection, if the
    # shell gives it (`DSLC_NOTIFY_EMAILS=... AIRFLOW_CONN_SMTP_DEFAULT=... dslc up`).
    smtp = f"AIRFLOW_CONN_{settings.smtp_conn_id.upper()}"
    if os.environ.get(smtp):
        env[smtp] = os.environ[smtp]
    profile = load_profile(settings)
    if profile is not None:
        env.update(_celery_env(settings, profile))
    return env


def _celery_env(settings: Settings, profile: Profile) -> dict[str, str]:
    """PostgreSQL metadata DB, CeleryExecutor on Redis with this stack's queue, the S3 lake."""
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": profile.database_url(profile.airflow_db),
        # SQLite's lock timeout (SQLITE_CONNECT_ARGS) means nothing to PostgreSQL.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(4 * profile.workers),
        "AIRFLOW__CELERY__BROKER_URL": profile.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": profile.database_url(
            profile.airflow_db, "db+postgresql+psycopg2"
        ),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        # A task whose worker died (killed, OOM, machine lost) is seen only by its missing
        # heartbeats: the scheduler fails it (and Airflow retries it) after this many seconds,
        # 300 by default. The task's supervisor heartbeats every 5 s ([workers]
        # min_heartbeat_interval), so 60 s is 12 missed beats, not a slow api-server.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        # Tasks go to this stack's queue; its workers consume only that one.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": profile.queue,
        "AIRFLOW__CELERY__DEFAULT_QUEUE": profile.queue,
    }
    env.update(stack_env(settings))
    return env


def worker_env(settings: Settings, name: str) -> dict[str, str]:
    """Celery worker ``name``'s environment: no metadata-DB URL (tasks talk to the execution
    API), the result backend read from a 0600 file at start rather than held in the environment,
    and the worker's name as the hostname task instances record."""
    import socket

    env = airflow_env(settings)
    env["DSLC_WORKER_NAME"] = f"{name}@{socket.gethostname()}"
    env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "dslc.dev.stack.distributed.worker_hostname"
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", None)
    backend = env.pop("AIRFLOW__CELERY__RESULT_BACKEND")
    path = _private_file(settings, "celery-result-backend", backend)
    env["AIRFLOW__CELERY__RESULT_BACKEND_CMD"] = f"cat {path}"
    return env


def _private_file(settings: Settings, name: str, text: str) -> str:
    from dslc.dev.stack.secrets import _write_private

    path = settings.state_dir / "secrets" / name
    _write_private(path, text)
    return str(path)


def command(settings: Settings, name: str) -> list[str]:
    """The command line that starts service ``name``."""
    profile = load_profile(settings)
    if name == "mlflow":
        root = settings.state_dir / "mlflow"
        store, artifacts = f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts")
        if profile is not None:
            store, artifacts = profile.database_url(profile.mlflow_db), profile.artifacts_url
        return [
            executable("mlflow"),
            "server",
            "--host",
            settings.mlflow_host,
            "--port",
            str(settings.mlflow_port),
            "--backend-store-uri",
            store,
            "--serve-artifacts",
            "--artifacts-destination",
            artifacts,
            "--workers",
            "1",
            # Every request needs a login (config: MLFLOW_AUTH_CONFIG_PATH, see mlflow_env).
            "--app-name",
            "basic-auth",
        ]
    if name == "api-server":
        host, port = settings.airflow_host, str(settings.airflow_port)
        return [executable("airflow"), "api-server", "--host", host, "--port", port]
    if name == "serving":
        return [
            executable("python"),
            "-m",
            "dslc.serving",
            "--model",
            _serving_model(settings),
            "--host",
            settings.serving_host,
            "--port",
            str(settings.serving_port),
        ]
    if profile is not None and name == "s3":
        port = str(profile.s3_port)
        return [executable("moto_server"), "--host", "127.0.0.1", "--port", port]
    if profile is not None and name.startswith(WORKER_PREFIX):
        # Like the scheduler's LocalExecutor, Celery's pool forks the task processes from the
        # worker: start it warm (and with the supervisor's prompt reaping; see preload).
        return [
            executable("python"),
            "-m",
            "dslc.dev.preload",
            "celery",
            "worker",
            "--queues",
            profile.queue,
            "--celery-hostname",
            f"{name}@%h",
            # Task logs are files under the shared log folder the api-server reads.
            "--skip-serve-logs",
        ]
    if name == "scheduler":
        # The executor forks task processes from the scheduler's workers: start them warm.
        return [executable("python"), "-m", "dslc.dev.preload", "scheduler"]
    return [executable("airflow"), name]


def _serving_model(settings: Settings) -> str:
    """The champion's version, pinned (``models:/<name>/<v>``), or ``none`` if there is none."""
    from dslc.model import registry

    use_mlflow_credentials(settings)
    try:
        c = registry.client(settings.mlflow_url)
        mv = registry.get_alias(c, settings.model_name, registry.CHAMPION)
    except registry.RegistryError:
        return "none"
    return "none" if mv is None else f"models:/{settings.model_name}/{mv.version}"


def serving_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment of the serving process (lake, MLflow, admin token)."""
    settings = settings or get_settings()
    env = _base_env(settings)
    env.update(stack_env(settings))
    env["DSLC_SERVING_ADMIN_TOKEN"] = serving_token(settings)
    env["DSLC_SERVING_HOST"] = settings.serving_host
    env["DSLC_SERVING_PORT"] = str(settings.serving_port)
    return env


def mlflow_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment of the MLflow server, with its basic-auth config written (0600).

    MLflow's server-side job runner (a huey consumer for GenAI jobs) is switched off: this
    project does not use it, it slows the start and does not stop promptly on SIGTERM.
    """
    settings = settings or get_settings()
    env = _base_env(settings)
    profile = load_profile(settings)
    if profile is not None:
        # Artifacts go to S3; the server is the only process that holds the S3 keys for them.
        env.update(s3_env(profile, *s3_credentials(settings)))
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(mlflow_auth_config(settings))
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = mlflow_flask_secret(settings)
    # The server logs itself in to nothing; the admin password is in the config only.
    for key in (
        "TRACKING_USERNAME",
        "TRACKING_PASSWORD",
        "AUTH_ADMIN_USERNAME",
        "AUTH_ADMIN_PASSWORD",
    ):
        env.pop(f"MLFLOW_{key}", None)
    return env


def env_for(settings: Settings, name: str) -> dict[str, str]:
    """The environment service ``name`` starts with."""
    if name == "serving":
        return serving_env(settings)
    if name == "s3":
        return _base_env(settings)
    if name.startswith(WORKER_PREFIX):
        return worker_env(settings, name)
    return mlflow_env(settings) if name == "mlflow" else airflow_env(settings)


def port_of(settings: Settings, name: str) -> tuple[int, str] | None:
    """The port service ``name`` listens on and the variable that sets it (None: no port)."""
    if name == "api-server":
        return settings.airflow_port, "DSLC_AIRFLOW_PORT"
    if name == "mlflow":
        return settings.mlflow_port, "DSLC_MLFLOW_PORT"
    if name == "serving":
        return settings.serving_port, "DSLC_SERVING_PORT"
    profile = load_profile(settings)
    if name == "s3" and profile is not None:
        return profile.s3_port, "DSLC_S3_PORT"
    return None


def url_of(settings: Settings, name: str) -> str:
    """The address service ``name`` answers on, as ``dslc status`` shows it."""
    if name == "api-server":
        return settings.airflow_url
    if name == "mlflow":
        return f"http://{settings.mlflow_host}:{settings.mlflow_port}"
    if name == "serving":
        return f"http://{settings.serving_host}:{settings.serving_port}"
    profile = load_profile(settings)
    if name == "s3" and profile is not None:
        return profile.s3_endpoint
    if name.startswith(WORKER_PREFIX) and profile is not None:
        return f"queue {profile.queue}"
    return "-"
