"""A real MLflow tracking server on loopback (free port, temp SQLite + artifacts), for tests and
the B5 benchmark. Started as the stack starts its own (``dslc.dev.stack``'s command line and
``mlflow_env``), so with MLflow's basic-auth app: every request needs a login.

All servers of one test process share one admin login (:data:`USERNAME`, :data:`PASSWORD`,
random per process). ``start()`` exports it as ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` (what MLflow's client reads) and ``DSLC_MLFLOW_USERNAME`` /
``DSLC_MLFLOW_PASSWORD`` (what the stack hands its services) so clients and the processes a test
starts log in; ``stop()`` puts the previous values back.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from typing import TYPE_CHECKING

from tests.support import free_port

if TYPE_CHECKING:
    from pathlib import Path

USERNAME = "admin"
PASSWORD = secrets.token_urlsafe(24)


def login_env(username: str = USERNAME, password: str = PASSWORD) -> dict[str, str]:
    """The variables that make MLflow clients (and the stack's services) log in."""
    return {
        "MLFLOW_TRACKING_USERNAME": username,
        "MLFLOW_TRACKING_PASSWORD": password,
        "DSLC_MLFLOW_USERNAME": username,
        "DSLC_MLFLOW_PASSWORD": password,
    }


class MlflowServer:
    """``mlflow server`` in its own process group; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._saved_env: dict[str, str | None] = {}

    def start(self, timeout: float = 90) -> MlflowServer:
        from pydantic import SecretStr

        from dslc.dev.stack import mlflow_env
        from dslc.dev.stack.environment import command
        from dslc.settings import Settings

        self.root.mkdir(parents=True, exist_ok=True)
        # State under root: <root>/mlflow/{mlflow.db,artifacts,basic_auth.ini,basic_auth.db}.
        settings = Settings(
            home=self.root,
            mlflow_host="127.0.0.1",
            mlflow_port=self.port,
            mlflow_tracking_uri=self.url,
            mlflow_username=USERNAME,
            mlflow_password=SecretStr(PASSWORD),
        )
        env = mlflow_env(settings)
        cmd = command(settings, "mlflow")
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        self._export_login()
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy within {timeout} s: {self.log_tail()}")

    def _export_login(self) -> None:
        env = login_env()
        self._saved_env = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        from dslc.settings import get_settings

        get_settings.cache_clear()

    def _restore_login(self) -> None:
        for key, old in self._saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._saved_env = {}

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, grace: float = 10) -> None:
        """Stop the server's process group (the one this object started), SIGKILL if slow."""
        self._restore_login()
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        # Workers of the group may outlive the leader by a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
