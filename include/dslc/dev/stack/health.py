"""What answers on the stack's ports: each service's own health endpoint, the wait until all
of them are healthy, and the check before a start that no other program holds a port."""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING, Any

from dslc.dev.stack.distributed import load_profile
from dslc.dev.stack.environment import port_of, services
from dslc.dev.stack.errors import StackError
from dslc.dev.stack.paths import log_path, logs_dir
from dslc.dev.stack.processes import ProcessRecord, is_alive, print_tail

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from rich.console import Console

    from dslc.settings import Settings

# How often `up` polls the health endpoints while waiting.
_POLL_SECONDS = 1.0
# A Celery worker logs that it is ready within its first few dozen lines after a start.
_READY_WITHIN_BYTES = 256 * 1024


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings, names: Iterable[str]) -> None:
    """Raise :class:`StackError` if another program holds the port one of ``names`` needs."""
    host_of = {
        "api-server": settings.airflow_host,
        "mlflow": settings.mlflow_host,
        "serving": settings.serving_host,
        "s3": "127.0.0.1",
    }
    for name in names:
        port = port_of(settings, name)
        if port is None:
            continue
        number, var = port
        if not _port_free(host_of[name], number):
            raise StackError(
                f"Port {number} on {host_of[name]} (for {name}) is already used by another "
                f"program. Stop it, or pick a free port with {var}=<port>."
            )


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
    health = dict.fromkeys(services(settings), False)
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
    profile = load_profile(settings)
    if profile is not None:
        if profile.local_s3:
            got = _http_get(f"{profile.s3_endpoint}/")
            health["s3"] = got is not None and got[0] == 200
        for name in profile.worker_names():
            health[name] = _worker_ready(settings, name)
    return health


def _worker_ready(settings: Settings, name: str) -> bool:
    """Whether Celery worker ``name`` said it is ready since its last start: Celery's
    ``celery@<host> ready.`` in its log after the ``dslc up`` header of that start.

    Read from where that start's part of the log begins (recorded with the pid), not from the
    end: a busy worker logs a line per task, and the ready line soon falls out of any tail.
    """
    from dslc.dev.stack.processes import read_record, tail

    record = read_record(settings, name)
    if record is None or not is_alive(record):
        return False
    path = log_path(settings, name)
    if record.log_offset is None:  # a record written before offsets were: the tail it is
        text = tail(path, lines=400).rsplit(f"dslc up: {name}", 1)[-1]
    else:
        try:
            with path.open("rb") as fh:
                fh.seek(record.log_offset)
                text = fh.read(_READY_WITHIN_BYTES).decode("utf-8", errors="replace")
        except FileNotFoundError:
            return False
    return f"{name}@" in text and " ready." in text


def wait_healthy(
    settings: Settings,
    console: Console,
    timeout: float,
    records: dict[str, ProcessRecord],
    names: Iterable[str] | None = None,
) -> float:
    """Wait until ``names`` (default: all) are healthy; seconds waited. Raises if a process dies
    or time is up."""
    names = tuple(services(settings) if names is None else names)
    start = time.monotonic()
    deadline = start + timeout
    with console.status("Waiting for the stack to become healthy...") as spinner:
        while True:
            for name, record in records.items():
                if not is_alive(record):
                    print_tail(console, settings, name)
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
                    print_tail(console, settings, name)
                raise StackError(
                    f"Not healthy after {timeout:.0f}s: {', '.join(waiting)}. Logs are in "
                    f"{logs_dir(settings)}; `dslc up --timeout` waits longer, `dslc down` stops."
                )
            spinner.update(f"Waiting for {', '.join(waiting)} ({elapsed:.0f}s)...")
            time.sleep(_POLL_SECONDS)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (for callers and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
