"""The serving service as a real process on loopback, and real registered models to serve.

Reused by the serving tests, the deploy tests and the B3 benchmark:

* :class:`ServingServer` / :func:`serving_server`: ``python -m dslc.serving`` in its own
  process group on a free port, with the environment given; waits for ``/health`` (and, by
  default, ``/ready``); SIGTERM on exit (graceful: the prediction log is flushed), SIGKILL if slow.
* :func:`register_test_models`: trains small models on real NYC flights features (January
  2013) and registers them as versions of a model in an MLflow server, plus optionally a
  version whose artifact is garbage; returns the records to send and the offline predictions.
* fixture ``serving_models`` (session): those versions in the session's ``mlflow_server``.
  Import it into a test module (``from tests.integration.serving_server import
  serving_models``) or a conftest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dslc.model.spec import features_of
from tests.support import free_port, stop_process_group

if TYPE_CHECKING:
    import pandas as pd

TRAIN_DAYS = ("2013-01-01", "2013-01-07")
HOLDOUT_DAY = "2013-01-08"


class ServingServer:
    """``python -m dslc.serving`` in its own process group; ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        model: str | None,
        *,
        env: dict[str, str | None] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        cmd_prefix: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model = model or "none"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="dslc-serving-")) / "server.log"
        self.cmd_prefix = list(cmd_prefix)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def cmd(self) -> list[str]:
        return [
            *self.cmd_prefix,
            sys.executable,
            "-m",
            "dslc.serving",
            "--model",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    def start(self, timeout: float = 60, wait_ready: bool = True) -> ServingServer:
        env = dict(os.environ)
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env.setdefault("NO_PROXY", "127.0.0.1,localhost")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self.wait_for("/health", timeout)
            if wait_ready:
                self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def get(self, path: str, timeout: float = 5) -> tuple[int, Any]:
        """(status, parsed JSON body) of a GET; status 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body or b"null")
            except ValueError:
                return e.code, body.decode(errors="replace")
        except OSError:
            return 0, None

    def wait_for(self, path: str, timeout: float, status: int = 200) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the serving process exited: {self.log_tail()}")
            got, body = self.get(path, timeout=2)
            if got == status:
                return body
            time.sleep(0.1)
        raise RuntimeError(f"{self.url}{path} not {status} within {timeout} s: {self.log_tail()}")

    def wait_ready(self, timeout: float = 60, version: str | None = None) -> dict[str, Any]:
        """Wait until ``/ready`` is 200 (and serves ``version``, if given); its body."""
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.wait_for("/ready", max(0.1, deadline - time.monotonic()))
            if version is None or body.get("version") == str(version):
                return body
            if time.monotonic() > deadline:
                raise RuntimeError(f"still serving {body} after {timeout} s: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, grace: float = 20) -> int | None:
        """SIGTERM the process group (graceful shutdown), SIGKILL if slow; the exit code."""
        if self.proc is None:
            return None
        return stop_process_group(self.proc, grace)

    def __enter__(self) -> ServingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving_server(
    model: str | None,
    *,
    env: dict[str, str | None] | None = None,
    wait_ready: bool = True,
    timeout: float = 60,
    **kwargs: Any,
) -> Iterator[ServingServer]:
    """A started :class:`ServingServer`, stopped on exit."""
    server = ServingServer(model, env=env, **kwargs)
    server.start(timeout=timeout, wait_ready=wait_ready)
    try:
        yield server
    finally:
        server.stop()


# -- real models -------------------------------------------------------------------------------


def day_features(day: dt.date) -> pd.DataFrame:
    """One day's feature rows, built from the package data by the real ingest functions."""
    import pandas as pd

    from dslc.data import features, ingest
    from dslc.usecases.flights import USECASE, source

    frames = {}
    for name in ("flights", "weather"):
        data = source.day_csv(name, day)
        assert data is not None, f"no {name} rows on {day}"
        frames[name] = ingest.typed(pd.read_csv(io.BytesIO(data)), USECASE.dataset(name))
    return features.build(frames, day.isoformat(), USECASE)


def feature_frame(first: str, last: str) -> pd.DataFrame:
    import pandas as pd

    from dslc.data.sources import days

    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return pd.concat([day_features(d) for d in days(start, end)], ignore_index=True)


def records_of(frame: pd.DataFrame, *, with_keys: bool = False) -> list[dict[str, Any]]:
    """Feature rows as /predict records (None for missing values)."""
    import math

    from dslc.usecases.flights.model import MODEL_FEATURES

    cols = [*MODEL_FEATURES, *(["ds", "flight"] if with_keys else [])]
    out = []
    for row in frame.loc[:, cols].itertuples(index=False):
        rec = {}
        for name, value in zip(cols, row, strict=True):
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            rec[name] = value
        out.append(rec)
    return out


@dataclass
class RegisteredModels:
    """Versions registered by :func:`register_test_models` and what to send them."""

    tracking_uri: str
    name: str
    versions: list[str]
    """Good versions, oldest first (each trained with different params)."""
    corrupt_version: str | None
    holdout: pd.DataFrame
    """Feature rows of :data:`HOLDOUT_DAY`, the records tests send."""
    offline: dict[str, Any] = field(default_factory=dict)
    """version -> offline ``pipeline.predict_proba(features_of(holdout))[:, 1]``."""

    def records(self, n: int | None = None, *, with_keys: bool = False) -> list[dict[str, Any]]:
        frame = self.holdout if n is None else self.holdout.head(n)
        return records_of(frame, with_keys=with_keys)


def _log_version(
    c: Any, exp_id: str, name: str, pipe: Any, example: Any, corrupt: bool = False
) -> str:
    from dslc.model import registry

    run = c.create_run(exp_id, run_name=f"serving-test {name}{' corrupt' if corrupt else ''}")
    run_id = run.info.run_id
    with tempfile.TemporaryDirectory(prefix="dslc-test-model-") as tmp:
        path = Path(tmp) / registry.MODEL_PATH
        registry.save_model(pipe, path, example)
        if corrupt:
            (path / "model.skops").write_bytes(b"this is not a skops file")
        c.log_artifacts(run_id, str(path), registry.MODEL_PATH)
    c.set_terminated(run_id, "FINISHED")
    mv = c.create_model_version(
        name, source=f"{run.info.artifact_uri}/{registry.MODEL_PATH}", run_id=run_id
    )
    return str(mv.version)


def register_test_models(
    tracking_uri: str,
    *,
    name: str = "flights_late",
    params: Sequence[dict[str, Any]] = ({"max_iter": 30}, {"max_iter": 60, "learning_rate": 0.2}),
    corrupt: bool = True,
) -> RegisteredModels:
    """Train one model per ``params`` on real features and register each as a version."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        # On a busy machine OpenMP's spinning workers make a fit ~20x slower than one thread.
        return _register(tracking_uri, name, params, corrupt)


def _register(
    tracking_uri: str, name: str, params: Sequence[dict[str, Any]], corrupt: bool
) -> RegisteredModels:
    from mlflow.exceptions import MlflowException

    from dslc.model import registry, training

    train = feature_frame(*TRAIN_DAYS)
    holdout = day_features(dt.date.fromisoformat(HOLDOUT_DAY))
    c = registry.client(tracking_uri)
    exp_id = registry.experiment_id(c, "dslc-serving-tests")
    with contextlib.suppress(MlflowException):
        c.create_registered_model(name)
    out = RegisteredModels(tracking_uri, name, [], None, holdout)
    example = features_of(train.head(5))
    pipe = None
    for p in params:
        pipe = training.fit(train, training.TrainParams(**p))
        version = _log_version(c, exp_id, name, pipe, example)
        out.versions.append(version)
        out.offline[version] = pipe.predict_proba(features_of(holdout))[:, 1]
    if corrupt and pipe is not None:
        out.corrupt_version = _log_version(c, exp_id, name, pipe, example, corrupt=True)
    return out


@pytest.fixture(scope="session")
def serving_models(mlflow_server: Any) -> RegisteredModels:
    """Two good versions (different params) and one corrupt version of ``flights_late``."""
    return register_test_models(mlflow_server.url)
