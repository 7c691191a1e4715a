"""The embedded stack: Airflow 3 (api-server, scheduler, dag-processor, triggerer), MLflow and
the model-serving service.

Every service runs as its own background process group (``start_new_session=True``), logs to
``<state>/logs/<name>.log`` and is recorded in ``<state>/pids/<name>.pid`` as JSON holding the
pid *and* the process create time, so :func:`down` only ever signals processes this module
started, never a program that happens to have reused the pid.

Airflow is configured only through ``AIRFLOW__*`` environment variables built by
:func:`airflow_env` (inherited ``AIRFLOW_*`` variables are dropped so a stack is reproducible):
SQLite metadata DB and LocalExecutor under ``<state>/airflow``, the repo's ``dags/`` and
``plugins/``, SimpleAuthManager with one admin user, and
``AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False`` so new DAGs run without a click in the UI.
The JWT secret and the API secret key are generated once per state dir and kept in
``<state>/secrets/airflow.json`` (mode 0600); the serving admin token in
``<state>/secrets/serving.json``; they are never printed.

The serving process starts once MLflow is healthy, on the current ``champion`` version
(resolved and pinned at start) or on no model, until a deploy loads one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dslc.errors import UserError
from dslc.settings import Settings, get_settings

if TYPE_CHECKING:
    from rich.console import Console

SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
SIMPLE_AUTH_FILE_NAME = "simple_auth_manager_passwords.json.generated"
# Start order; down() stops in reverse order of importance (scheduler first, so no new tasks).
SERVICES = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer", "serving")
STOP_ORDER = ("scheduler", "triggerer", "dag-processor", "serving", "api-server", "mlflow")
LOG_TAIL_LINES = 30
STOP_GRACE_SECONDS = 20.0
# How often `up` polls the health endpoints while waiting.
_POLL_SECONDS = 1.0


class CliError(UserError, typer.Exit):
    """An error the user can act on: the CLI prints ``message`` (no traceback) and exits 1.

    It is a :class:`typer.Exit` so Typer exits quietly once :func:`reported` printed it;
    library callers and tests catch it like any exception and read ``message``.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StackError(CliError):
    """A problem starting, stopping or reaching the embedded stack."""


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Print a :class:`CliError`'s message on stderr before it propagates."""
    try:
        yield
    except CliError as e:
        from rich.console import Console
        from rich.text import Text

        error = Text.assemble(("Error: ", "bold red"), e.message)
        Console(stderr=True, highlight=False, soft_wrap=True).print(error)
        raise


# --------------------------------------------------------------------------------------------
# Paths and secrets


def airflow_home(settings: Settings) -> Path:
    return settings.state_dir / "airflow"


def _logs_dir(settings: Settings) -> Path:
    return settings.state_dir / "logs"


def _pids_dir(settings: Settings) -> Path:
    return settings.state_dir / "pids"


def log_path(settings: Settings, name: str) -> Path:
    return _logs_dir(settings) / f"{name}.log"


def _pid_path(settings: Settings, name: str) -> Path:
    return _pids_dir(settings) / f"{name}.pid"


def password_file(settings: Settings) -> Path:
    """Where SimpleAuthManager keeps (and we pre-seed) the admin password."""
    return airflow_home(settings) / SIMPLE_AUTH_FILE_NAME


def _bin_dir() -> Path:
    """The venv's bin directory (Airflow spawns ``airflow`` by name, so it must be on PATH)."""
    return Path(sys.prefix) / "bin"


def _executable(name: str) -> str:
    candidate = _bin_dir() / name
    if candidate.exists():
        return str(candidate)
    sibling = Path(sys.executable).parent / name
    if sibling.exists():
        return str(sibling)
    raise StackError(f"`{name}` is not installed next to {sys.executable}: run `make install`")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _secrets(settings: Settings) -> dict[str, str]:
    """The JWT secret and API secret key shared by all components, generated once per state."""
    path = settings.state_dir / "secrets" / "airflow.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        if {"jwt_secret", "secret_key"} <= data.keys():
            return data
    data = {"jwt_secret": secrets.token_urlsafe(48), "secret_key": secrets.token_urlsafe(48)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _write_private(path, json.dumps(data))
    return data


def serving_token(settings: Settings | None = None) -> str:
    """The serving admin token: DSLC_SERVING_ADMIN_TOKEN, else generated once per state dir."""
    settings = settings or get_settings()
    if settings.serving_admin_token is not None:
        return settings.serving_admin_token.get_secret_value()
    path = settings.state_dir / "secrets" / "serving.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        if data.get("admin_token"):
            return data["admin_token"]
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _write_private(path, json.dumps({"admin_token": token}))
    return token


def _read_passwords(settings: Settings) -> dict[str, str]:
    path = password_file(settings)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return {}
    if not text:
        return {}
    data: dict[str, str] = json.loads(text)
    return data


def _seed_password(settings: Settings) -> None:
    """Make sure the password file has the admin user: DSLC_AIRFLOW_PASSWORD or a random one.

    SimpleAuthManager only adds users missing from the file, so a pre-seeded password is kept.
    """
    passwords = _read_passwords(settings)
    user = settings.airflow_username
    wanted = settings.airflow_password.get_secret_value() if settings.airflow_password else None
    if wanted is not None and passwords.get(user) != wanted:
        passwords[user] = wanted
    elif user not in passwords:
        passwords[user] = secrets.token_urlsafe(12)
    else:
        return
    _write_private(password_file(settings), json.dumps(passwords) + "\n")


def admin_password(settings: Settings | None = None) -> str:
    """The Airflow admin password: DSLC_AIRFLOW_PASSWORD, else the stack's generated file."""
    settings = settings or get_settings()
    if settings.airflow_password is not None:
        return settings.airflow_password.get_secret_value()
    password = _read_passwords(settings).get(settings.airflow_username)
    if password is None:
        raise StackError(
            f"No password for Airflow user {settings.airflow_username!r}: "
            f"{password_file(settings)} does not have it. Run `dslc up` (it generates one) "
            "or set DSLC_AIRFLOW_PASSWORD."
        )
    return password


# --------------------------------------------------------------------------------------------
# Environments


def _base_env(settings: Settings) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW_") and not k.startswith("DSLC_")
    }
    env["PATH"] = os.pathsep.join([str(_bin_dir()), env.get("PATH", os.defpath)])
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
    return env


def airflow_env(settings: Settings | None = None) -> dict[str, str]:
    """The complete environment of the Airflow components (also usable by tests).

    Inherited ``AIRFLOW_*`` variables are dropped: the stack never picks up another
    AIRFLOW_HOME or a test session's configuration by accident.
    """
    settings = settings or get_settings()
    home = airflow_home(settings)
    keys = _secrets(settings)
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
            "AIRFLOW__API__HOST": settings.airflow_host,
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            # The deploy task tells the serving process to load a version.
            "DSLC_SERVING_ADMIN_TOKEN": serving_token(settings),
        }
    )
    return env


def _argv(settings: Settings, name: str) -> list[str]:
    if name == "mlflow":
        root = settings.state_dir / "mlflow"
        return [
            _executable("mlflow"),
            "server",
            "--host",
            settings.mlflow_host,
            "--port",
            str(settings.mlflow_port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ]
    if name == "api-server":
        host, port = settings.airflow_host, str(settings.airflow_port)
        return [_executable("airflow"), "api-server", "--host", host, "--port", port]
    if name == "serving":
        return [
            _executable("python"),
            "-m",
            "dslc.serving",
            "--model",
            _serving_model(settings),
            "--host",
            settings.serving_host,
            "--port",
            str(settings.serving_port),
        ]
    if name == "scheduler":
        # The executor forks task processes from the scheduler's workers: start them warm.
        return [_executable("python"), "-m", "dslc.dev.preload", "scheduler"]
    return [_executable("airflow"), name]


def _serving_model(settings: Settings) -> str:
    """The champion's version, pinned (``models:/<name>/<v>``), or ``none`` if there is none."""
    from dslc.model import registry

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
    env["DSLC_SERVING_ADMIN_TOKEN"] = serving_token(settings)
    env["DSLC_SERVING_HOST"] = settings.serving_host
    env["DSLC_SERVING_PORT"] = str(settings.serving_port)
    return env


def mlflow_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment of the MLflow server.

    MLflow's server-side job runner (a huey consumer for GenAI jobs) is switched off: this
    project does not use it, it slows the start and does not stop promptly on SIGTERM.
    """
    env = _base_env(settings or get_settings())
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def _env_for(settings: Settings, name: str) -> dict[str, str]:
    if name == "serving":
        return serving_env(settings)
    return mlflow_env(settings) if name == "mlflow" else airflow_env(settings)


def _port_of(settings: Settings, name: str) -> tuple[int, str] | None:
    if name == "api-server":
        return settings.airflow_port, "DSLC_AIRFLOW_PORT"
    if name == "mlflow":
        return settings.mlflow_port, "DSLC_MLFLOW_PORT"
    if name == "serving":
        return settings.serving_port, "DSLC_SERVING_PORT"
    return None


def _url_of(settings: Settings, name: str) -> str:
    if name == "api-server":
        return settings.airflow_url
    if name == "mlflow":
        return f"http://{settings.mlflow_host}:{settings.mlflow_port}"
    if name == "serving":
        return f"http://{settings.serving_host}:{settings.serving_port}"
    return "-"


# --------------------------------------------------------------------------------------------
# Process records


@dataclass(frozen=True)
class ProcessRecord:
    """What ``<state>/pids/<name>.pid`` holds: enough to recognise our own process later."""

    name: str
    pid: int
    create_time: float
    argv: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "pid": self.pid,
                "create_time": self.create_time,
                "argv": list(self.argv),
            }
        )


# Popen objects of children started by this process, so their exit is reaped (no zombies that
# would look alive, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _read_record(settings: Settings, name: str) -> ProcessRecord | None:
    path = _pid_path(settings, name)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return ProcessRecord(
            name=name,
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            argv=tuple(data.get("argv", ())),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # Not ours (e.g. an old format): ignore it rather than signal an unknown pid.
        return None


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def is_alive(record: ProcessRecord) -> bool:
    """True iff the recorded process is running and is the very process we started."""
    _reap(record.pid)
    created = _create_time(record.pid)
    return created is not None and abs(created - record.create_time) < 0.05


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owns_group(record: ProcessRecord) -> bool:
    """Whether signalling process group ``record.pid`` can only reach processes we started.

    Each service is a session leader, so its pgid is its pid. If the leader is alive and has our
    create time, the group is ours. If no process has that pid any more but the group still has
    members, they are ours too: Linux never hands out a pid still in use as a process group id.
    If another program now has that pid, our group is gone and we must not signal it.
    """
    if is_alive(record):
        return True
    return _create_time(record.pid) is None and _group_exists(record.pid)


def running(settings: Settings) -> dict[str, ProcessRecord]:
    """Services whose recorded process is still ours and alive."""
    records = (_read_record(settings, name) for name in SERVICES)
    return {r.name: r for r in records if r is not None and is_alive(r)}


# --------------------------------------------------------------------------------------------
# Start


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _check_ports(settings: Settings, names: Iterable[str]) -> None:
    host_of = {
        "api-server": settings.airflow_host,
        "mlflow": settings.mlflow_host,
        "serving": settings.serving_host,
    }
    for name in names:
        port = _port_of(settings, name)
        if port is None:
            continue
        number, var = port
        if not _port_free(host_of[name], number):
            raise StackError(
                f"Port {number} on {host_of[name]} (for {name}) is already used by another "
                f"program. Stop it, or pick a free port with {var}=<port>."
            )


def _spawn(settings: Settings, name: str) -> ProcessRecord:
    argv = _argv(settings, name)
    log = log_path(settings, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} dslc up: {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env_for(settings, name),
            cwd=settings.state_dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    created = _create_time(proc.pid)
    record = ProcessRecord(name, proc.pid, created or time.time(), tuple(argv))
    path = _pid_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.to_json() + "\n")
    return record


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _print_tail(console: Console, settings: Settings, name: str) -> None:
    path = log_path(settings, name)
    console.print(f"[bold]--- last {LOG_TAIL_LINES} lines of {path} ---[/bold]")
    console.print(tail(path), markup=False, highlight=False)
    console.print("[bold]---[/bold]")


def _migration_marker(settings: Settings) -> Path:
    return airflow_home(settings) / ".dslc-db-migrated"


def _airflow_version() -> str:
    try:
        return metadata.version("apache-airflow-core")
    except metadata.PackageNotFoundError:
        return metadata.version("apache-airflow")


def _migrate_if_needed(settings: Settings, console: Console) -> None:
    """Run ``airflow db migrate`` once per DB and Airflow version."""
    home = airflow_home(settings)
    marker = _migration_marker(settings)
    version = _airflow_version()
    db = home / "airflow.db"
    if db.exists() and marker.exists() and marker.read_text().strip() == version:
        return
    home.mkdir(parents=True, exist_ok=True)
    log = log_path(settings, "db-migrate")
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        console.status("Migrating the Airflow metadata DB (first start only)..."),
        log.open("ab") as out,
    ):
        result = subprocess.run(
            [_executable("airflow"), "db", "migrate"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=airflow_env(settings),
            cwd=settings.state_dir,
            check=False,
        )
    if result.returncode != 0:
        _print_tail(console, settings, "db-migrate")
        raise StackError(f"`airflow db migrate` failed (exit {result.returncode}); see {log}")
    marker.write_text(version + "\n")


# --------------------------------------------------------------------------------------------
# Health


def _http_get(url: str, timeout: float = 3.0) -> tuple[int, str] | None:
    import httpx

    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            resp = client.get(url)
    except httpx.HTTPError:
        return None
    return resp.status_code, resp.text


def probe(settings: Settings) -> dict[str, bool]:
    """Health of each service as reported by the services themselves (no pid checks)."""
    health = dict.fromkeys(SERVICES, False)
    got = _http_get(f"{settings.airflow_url}/api/v2/monitor/health")
    if got is not None and got[0] == 200:
        try:
            body: dict[str, Any] = json.loads(got[1])
        except ValueError:
            body = {}

        def ok(key: str) -> bool:
            part = body.get(key) or {}
            return bool(part.get("status") == "healthy")

        health["api-server"] = ok("metadatabase")
        health["scheduler"] = ok("scheduler")
        health["dag-processor"] = ok("dag_processor")
        health["triggerer"] = ok("triggerer")
    got = _http_get(f"http://{settings.mlflow_host}:{settings.mlflow_port}/health")
    health["mlflow"] = got is not None and got[0] == 200
    got = _http_get(f"http://{settings.serving_host}:{settings.serving_port}/health")
    health["serving"] = got is not None and got[0] == 200
    return health


def _wait_healthy(
    settings: Settings,
    console: Console,
    timeout: float,
    records: dict[str, ProcessRecord],
    names: Iterable[str] = SERVICES,
) -> float:
    names = tuple(names)
    start = time.monotonic()
    deadline = start + timeout
    with console.status("Waiting for the stack to become healthy...") as spinner:
        while True:
            for name, record in records.items():
                if not is_alive(record):
                    _print_tail(console, settings, name)
                    raise StackError(
                        f"{name} (pid {record.pid}) exited while starting; "
                        f"see {log_path(settings, name)}. Stop the rest with `dslc down`."
                    )
            health = probe(settings)
            waiting = [name for name in names if not health[name]]
            elapsed = time.monotonic() - start
            if not waiting:
                return elapsed
            if time.monotonic() > deadline:
                for name in waiting:
                    _print_tail(console, settings, name)
                raise StackError(
                    f"Not healthy after {timeout:.0f}s: {', '.join(waiting)}. Logs are in "
                    f"{_logs_dir(settings)}; `dslc up --timeout` waits longer, `dslc down` stops."
                )
            spinner.update(f"Waiting for {', '.join(waiting)} ({elapsed:.0f}s)...")
            time.sleep(_POLL_SECONDS)


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def up(timeout: float = 180.0, settings: Settings | None = None) -> None:
    """Start whatever part of the stack is not running and wait until all of it is healthy.

    Idempotent: a service whose recorded process is alive (same pid and create time) is left
    alone. Raises :class:`StackError` (a clean CLI error) if a port is taken by another program,
    a process dies while starting, or the stack is not healthy within ``timeout`` seconds.
    """
    with reported():
        _up(timeout, settings or get_settings())


def _up(timeout: float, settings: Settings) -> None:
    console = _console()
    for sub in ("logs", "pids", "mlflow/artifacts", "airflow"):
        (settings.state_dir / sub).mkdir(parents=True, exist_ok=True)
    alive = running(settings)
    missing = [name for name in SERVICES if name not in alive]
    if alive:
        console.print(f"Already running: {', '.join(sorted(alive))}")
    # A service whose main process died but whose children live on (e.g. a uvicorn worker
    # still holding the port) is stopped before it is started again.
    orphans = [
        record
        for record in (_read_record(settings, name) for name in missing)
        if record is not None and _owns_group(record)
    ]
    if orphans:
        console.print(f"Cleaning up leftovers of {', '.join(r.name for r in orphans)}")
        _stop_groups(orphans, STOP_GRACE_SECONDS, console)
    _check_ports(settings, missing)
    _seed_password(settings)
    _secrets(settings)
    if any(name != "mlflow" for name in missing):
        _migrate_if_needed(settings, console)
    started = {}
    # Serving starts last: it needs MLflow up to find the champion it serves.
    for name in (n for n in missing if n != "serving"):
        started[name] = _spawn(settings, name)
        console.print(f"Started {name} (pid {started[name].pid}), log: {log_path(settings, name)}")
    core = [n for n in SERVICES if n != "serving"]
    elapsed = _wait_healthy(settings, console, timeout, {**alive, **started}, core)
    if "serving" in missing:
        record = started["serving"] = _spawn(settings, "serving")
        console.print(
            f"Started serving (pid {record.pid}) on {record.argv[record.argv.index('--model') + 1]}"
            f", log: {log_path(settings, 'serving')}"
        )
        elapsed += _wait_healthy(settings, console, timeout, {**alive, **started})
    console.print(f"[green]Stack healthy[/green] after {elapsed:.1f}s")
    _print_access(console, settings)


def _print_access(console: Console, settings: Settings) -> None:
    from rich.markup import escape

    console.print(f"  Airflow UI   {settings.airflow_url}")
    console.print(f"  MLflow UI    http://{settings.mlflow_host}:{settings.mlflow_port}")
    console.print(f"  Serving API  {settings.serving_base_url}  (docs: /docs)")
    source = (
        "DSLC_AIRFLOW_PASSWORD"
        if settings.airflow_password is not None
        else str(password_file(settings))
    )
    console.print(
        f"  Airflow login  user [bold]{settings.airflow_username}[/bold]  "
        f"password [bold]{escape(admin_password(settings))}[/bold]  (from {escape(source)})",
    )
    console.print(f"  Logs         {_logs_dir(settings)}")
    console.print(
        "  New DAGs are unpaused at creation (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION)."
    )


# --------------------------------------------------------------------------------------------
# Stop


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(records: list[ProcessRecord], seconds: float) -> list[ProcessRecord]:
    deadline = time.monotonic() + seconds
    remaining = records
    while remaining and time.monotonic() < deadline:
        for record in remaining:
            _reap(record.pid)
        remaining = [r for r in remaining if _group_exists(r.pid) and _owns_group(r)]
        if remaining:
            time.sleep(0.25)
    return remaining


def _stoppable(settings: Settings) -> Iterator[tuple[str, ProcessRecord | None]]:
    for name in STOP_ORDER:
        yield name, _read_record(settings, name)


def down(settings: Settings | None = None, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop the process groups `up` started (SIGTERM, then SIGKILL after ``grace`` seconds).

    Only recorded processes that are still ours are signalled; pid files are removed. Idempotent.
    """
    with reported():
        _down(settings or get_settings(), grace)


def _down(settings: Settings, grace: float) -> None:
    console = _console()
    targets: list[ProcessRecord] = []
    for name, record in _stoppable(settings):
        if record is None:
            continue
        if _owns_group(record):
            targets.append(record)
        elif _create_time(record.pid) is None:
            console.print(f"{name} (pid {record.pid}) had already exited")
        else:
            console.print(f"{name}: pid {record.pid} now belongs to another program; left alone")
    if not targets:
        console.print("Nothing to stop.")
    else:
        _stop_groups(targets, grace, console)
        for record in targets:
            console.print(f"Stopped {record.name} (pid {record.pid})")
    _cleanup_pid_files(settings, SERVICES)


def _stop_groups(targets: list[ProcessRecord], grace: float, console: Console) -> None:
    """SIGTERM the process groups, wait up to ``grace`` s, SIGKILL what is left."""
    for record in targets:
        _signal_group(record.pid, signal.SIGTERM)
    with console.status(f"Stopping {', '.join(r.name for r in targets)}..."):
        left = _wait_gone(targets, grace)
        for record in left:
            console.print(f"{record.name} did not stop in {grace:.0f}s: sending SIGKILL")
            _signal_group(record.pid, signal.SIGKILL)
        _wait_gone(left, 5.0)


def _cleanup_pid_files(settings: Settings, names: Iterable[str]) -> None:
    for name in names:
        _pid_path(settings, name).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Status


def status(settings: Settings | None = None) -> int:
    """Print a table (service, pid, url, healthy).

    Returns 0 if every service is running and healthy, 3 if none is running, 1 otherwise.
    """
    from rich.table import Table

    settings = settings or get_settings()
    console = _console()
    alive = running(settings)
    health = probe(settings)
    table = Table(title=f"dslc stack ({settings.state_dir})")
    for column in ("service", "pid", "url", "healthy"):
        table.add_column(column)
    all_ok = True
    for name in SERVICES:
        record = alive.get(name)
        ok = record is not None and health[name]
        all_ok = all_ok and ok
        table.add_row(
            name,
            str(record.pid) if record else "-",
            _url_of(settings, name),
            "[green]yes[/green]" if ok else ("[red]no[/red]" if record else "not running"),
        )
    console.print(table)
    if all_ok:
        return 0
    return 3 if not alive else 1


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (for callers and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
