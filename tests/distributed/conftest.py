"""The distributed stack (PostgreSQL, CeleryExecutor on Redis with two workers, S3, MLflow with
basic auth on PostgreSQL and S3) started for real on free loopback ports, once for this folder.

It needs the PostgreSQL and Redis servers of ``DSLC_POSTGRES_URL`` / ``DSLC_REDIS_URL`` (default
127.0.0.1:5432 with trust auth, 127.0.0.1:6379); the S3 server is the stack's own (moto). The
stack creates its own databases, queue and bucket and drops them at the end, also on failure.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dslc.settings import Settings
from tests.support import SHORT_STORY, dslc_env, ephemeral_stack, run_demo

ROOT = Path(__file__).resolve().parents[2]
STORY = SHORT_STORY
SQL_MARKERS = ("postgresql", "postgres://", "sqlite:", "mysql")


@dataclass
class TaskEnvSampler:
    """Reads the environment of every process the Celery workers start (the task processes),
    while the story runs: which ones held a SQL connection string."""

    worker_pids: list[int]
    seen: dict[int, str] = field(default_factory=dict)
    with_sql: dict[int, list[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        import psutil

        for pid in self.worker_pids:
            try:
                children = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    env = child.environ()
                    cmd = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                self.seen.setdefault(child.pid, cmd)
                bad = [k for k, v in env.items() if any(m in v.lower() for m in SQL_MARKERS)]
                if bad:
                    self.with_sql[child.pid] = bad

    def run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


@dataclass(frozen=True)
class Story:
    settings: Settings
    result: subprocess.CompletedProcess[str]
    sampler: TaskEnvSampler


@pytest.fixture(scope="package")
def dist_stack() -> Iterator[Settings]:
    timeout = float(os.environ.get("DSLC_E2E_UP_TIMEOUT", "300"))
    with (
        dslc_env(**STORY),
        ephemeral_stack(prefix="dslc-dist-", up_timeout=timeout, distributed=True) as settings,
    ):
        yield settings


@pytest.fixture(scope="package")
def story(dist_stack: Settings) -> Story:
    """The shortened demo story, run once against the distributed stack."""
    from dslc.dev import stack
    from dslc.dev.stack.distributed import load_profile

    profile = load_profile(dist_stack)
    assert profile is not None
    running = stack.running(dist_stack)
    sampler = TaskEnvSampler([running[n].pid for n in profile.worker_names()])
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        result = run_demo()
    finally:
        sampler.stop()
        thread.join(5)
    return Story(dist_stack, result, sampler)
