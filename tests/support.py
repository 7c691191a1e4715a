"""Helpers shared by the tests and the benchmarks that start real services on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dslc.lake import Lake
    from dslc.settings import Settings


# The demo's story, shortened, as the e2e and distributed suites run it: three weeks of January
# through a REST backfill of `ingest`, the first champion trained and deployed, four days of
# June replayed, scored and monitored until drift triggers a retrain.
SHORT_STORY = {
    "DSLC_DEMO_START": "2013-01-01",
    "DSLC_DEMO_END": "2013-01-21",
    "DSLC_DEMO_REPLAY_START": "2013-06-01",
    "DSLC_DEMO_REPLAY_END": "2013-06-04",
    # The retraining window reaches back over the gap to January.
    "DSLC_TRAIN_WINDOW_DAYS": "200",
}


def run_demo(timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """``python -m dslc.dev.demo`` on the stack this process's environment points at; the end
    of its output is printed for the test report."""
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "dslc.dev.demo"],
        cwd=Path(__file__).resolve().parents[1],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(result.stdout[-6000:])
    print(result.stderr[-3000:], file=sys.stderr)
    return result


def stop_process_group(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """SIGTERM a ``start_new_session`` child's group, SIGKILL after ``grace`` s; exit code.

    Whatever is left of the group afterwards (e.g. a uvicorn worker) is killed too.
    """
    if proc.poll() is None:
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dslc_env(**overrides: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block, then restore them.

    The settings cache is cleared on the way in and out so code under test reads the block's
    values.
    """
    from dslc.settings import get_settings

    saved = {key: os.environ.get(key) for key in overrides}
    try:
        for key, value in overrides.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        get_settings.cache_clear()


# What `stack.use_stack_env` sets in the test process for a distributed stack (restored after).
_STACK_CLIENT_ENV = (
    "DSLC_LAKE_CONN_ID",
    "AIRFLOW_CONN_LAKE_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL",
)


@contextmanager
def ephemeral_stack(
    prefix: str = "dslc-stack-", up_timeout: float = 300.0, *, distributed: bool = False
) -> Iterator[Settings]:
    """The real stack on free ports with its own DSLC_HOME; stopped and removed after.

    ``distributed``: the distributed profile (PostgreSQL, CeleryExecutor on Redis, a local S3
    server), purged after: its databases, queue and bucket are dropped too.

    MLflow clients of this process log in to the stack's MLflow inside the block (and, for a
    distributed stack, the lake is its S3 bucket).

        Set DSLC_E2E_KEEP=1 to keep the state dir (logs) for a post-mortem.
    """
    from dslc.dev import stack
    from dslc.settings import get_settings

    home = Path(tempfile.mkdtemp(prefix=prefix))
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port())
    airflow_port, mlflow_port, serving_port, s3_port = list(ports)
    with dslc_env(
        DSLC_HOME=str(home),
        DSLC_AIRFLOW_PORT=str(airflow_port),
        DSLC_MLFLOW_PORT=str(mlflow_port),
        DSLC_SERVING_PORT=str(serving_port),
        DSLC_S3_PORT=str(s3_port),
        DSLC_S3_ENDPOINT_URL=None,  # the distributed stack's own S3 server
        DSLC_SERVING_ADMIN_TOKEN=None,  # use the token the stack generates
        DSLC_SERVING_URL=None,  # the stack's own serving process
        DSLC_LAKE_URL=None,  # the stack's default lake: <home>/lake, or its bucket
        DSLC_AIRFLOW_PASSWORD=None,  # use the password the stack generates
        DSLC_MLFLOW_USERNAME=None,  # the stack's generated MLflow login, not a test server's
        DSLC_MLFLOW_PASSWORD=None,
        MLFLOW_TRACKING_USERNAME=None,  # set below to the stack's, restored on the way out
        MLFLOW_TRACKING_PASSWORD=None,
        **dict.fromkeys(_STACK_CLIENT_ENV),
    ):
        settings = get_settings()
        try:
            stack.up(timeout=up_timeout, settings=settings, distributed=distributed)
            # MLflow clients of the test process (and what it starts) log in to this stack.
            stack.use_stack_env(settings)
            yield get_settings()
        finally:
            stack.down(settings=settings, purge=distributed)
            if os.environ.get("DSLC_E2E_KEEP") != "1":
                shutil.rmtree(home, ignore_errors=True)


def train_and_register(
    lake: Lake,
    name: str,
    params: dict[str, Any],
    *,
    run_prefix: str = "manual__test",
    promote: bool = False,
) -> dict[str, Any]:
    """One model version through the functions the train DAG's tasks call (assemble, train,
    register; with ``promote`` also evaluate and promote). ``params`` are the DAG's params
    (window_end, window_days, hyperparameters). Returns the version and the split path."""
    import uuid

    from dslc.model import evaluation, registry, training

    dag_run_id = f"{run_prefix}_{uuid.uuid4().hex[:8]}"
    assembled = training.assemble_run(lake, params, dag_run_id=dag_run_id, run_type="manual")
    trained = training.train(
        lake,
        split_path=assembled["split"],
        params=training.TrainParams(**assembled["config"]["train"]),
        dag_run_id=dag_run_id,
        lineage=assembled["lineage"],
    )
    evaluated = None
    if promote:
        evaluated = evaluation.evaluate(
            lake,
            split_path=assembled["split"],
            run_id=trained["run_id"],
            model_name=name,
            force_promote=False,
        )
    version = str(
        registry.register(
            lake,
            split_path=assembled["split"],
            run_id=trained["run_id"],
            model_name=name,
            lineage=assembled["lineage"],
        )["version"]
    )
    if evaluated is not None:
        registry.promote(name, version, evaluated, tolerance=0.01, floor=0.5, force=False)
    return {"version": version, "split": assembled["split"], "run_id": trained["run_id"]}
