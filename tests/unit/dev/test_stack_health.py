"""A Celery worker of the distributed stack is ready once its log says so after its last start,
however much it has logged since (a worker that ran a story's tasks has logged megabytes)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dslc.dev.stack import health
from dslc.dev.stack.paths import log_path, pid_path
from dslc.dev.stack.processes import ProcessRecord, read_record
from dslc.settings import Settings

NAME = "worker-1"
TASK_LINE = "2013-01-01T00:00:00Z [info] Task execute_workload[...] succeeded in 1.2s " + "x" * 150


@pytest.fixture
def live_pid() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def start(settings: Settings, pid: int, lines: list[str]) -> None:
    """Append this start's header and ``lines`` to the log and record the start at its offset,
    as ``processes.spawn`` does."""
    log = log_path(settings, NAME)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        offset = out.tell()
        out.write(f"\n==== 2013-01-01 00:00:00 dslc up: {NAME}\n".encode())
        out.write("".join(f"{line}\n" for line in lines).encode())
    record = ProcessRecord(NAME, pid, psutil.Process(pid).create_time(), ("celery",), offset)
    pid_path(settings, NAME).parent.mkdir(parents=True, exist_ok=True)
    pid_path(settings, NAME).write_text(record.to_json() + "\n")


def test_ready_stays_ready_however_much_the_worker_logs(tmp_path: Path, live_pid: int) -> None:
    settings = Settings(home=tmp_path / "state")
    start(settings, live_pid, ["starting", f"{NAME}@vm ready.", *[TASK_LINE] * 5000])
    assert read_record(settings, NAME) is not None
    assert log_path(settings, NAME).stat().st_size > 500_000
    assert health._worker_ready(settings, NAME)


def test_a_ready_line_of_an_earlier_start_does_not_count(tmp_path: Path, live_pid: int) -> None:
    settings = Settings(home=tmp_path / "state")
    start(settings, live_pid, ["starting", f"{NAME}@vm ready.", TASK_LINE])
    start(settings, live_pid, ["starting again"])
    assert not health._worker_ready(settings, NAME)
    with log_path(settings, NAME).open("a") as out:
        out.write(f"{NAME}@vm ready.\n")
    assert health._worker_ready(settings, NAME)
