"""The stack's processes: start a service in its own process group, recognise it later, stop
its group, show the end of its log.

Every service runs as its own background process group (``start_new_session=True``), logs to
``<state>/logs/<name>.log`` and is recorded in ``<state>/pids/<name>.pid`` as JSON holding the
pid *and* the process create time, so a stop only ever signals processes this module started,
never a program that happens to have reused the pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dslc.dev.stack.environment import command, env_for, services
from dslc.dev.stack.paths import log_path, pid_path

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from rich.console import Console

    from dslc.settings import Settings

LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class ProcessRecord:
    """What ``<state>/pids/<name>.pid`` holds: enough to recognise our own process later."""

    name: str
    pid: int
    create_time: float
    argv: tuple[str, ...]
    log_offset: int | None = None
    """Where this start's part of the service's log begins (None in records of older stacks)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "pid": self.pid,
                "create_time": self.create_time,
                "argv": list(self.argv),
                "log_offset": self.log_offset,
            }
        )


# Popen objects of children started by this process, so their exit is reaped (no zombies that
# would look alive, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def read_record(settings: Settings, name: str) -> ProcessRecord | None:
    """The record of service ``name``, or None if there is none (or not one we wrote)."""
    path = pid_path(settings, name)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return ProcessRecord(
            name=name,
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            argv=tuple(data.get("argv", ())),
            log_offset=None if data.get("log_offset") is None else int(data["log_offset"]),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # Not ours (e.g. an old format): ignore it rather than signal an unknown pid.
        return None


def create_time(pid: int) -> float | None:
    """When process ``pid`` started (psutil's create time), or None if it is gone or a zombie."""
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
    created = create_time(record.pid)
    return created is not None and abs(created - record.create_time) < 0.05


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owns_group(record: ProcessRecord) -> bool:
    """Whether signalling process group ``record.pid`` can only reach processes we started.

    Each service is a session leader, so its pgid is its pid. If the leader is alive and has our
    create time, the group is ours. If no process has that pid any more but the group still has
    members, they are ours too: Linux never hands out a pid still in use as a process group id.
    If another program now has that pid, our group is gone and we must not signal it.
    """
    if is_alive(record):
        return True
    return create_time(record.pid) is None and _group_exists(record.pid)


def running(settings: Settings) -> dict[str, ProcessRecord]:
    """Services whose recorded process is still ours and alive."""
    records = (read_record(settings, name) for name in services(settings))
    return {r.name: r for r in records if r is not None and is_alive(r)}


def spawn(settings: Settings, name: str) -> ProcessRecord:
    """Start service ``name`` in a new session, logging to its log file, and record it."""
    argv = command(settings, name)
    log = log_path(settings, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        offset = out.tell()
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} dslc up: {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env_for(settings, name),
            cwd=settings.state_dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    created = create_time(proc.pid)
    record = ProcessRecord(name, proc.pid, created or time.time(), tuple(argv), offset)
    path = pid_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.to_json() + "\n")
    return record


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(records: list[ProcessRecord], seconds: float) -> list[ProcessRecord]:
    deadline = time.monotonic() + seconds
    remaining = records
    while remaining and time.monotonic() < deadline:
        for record in remaining:
            _reap(record.pid)
        remaining = [r for r in remaining if _group_exists(r.pid) and owns_group(r)]
        if remaining:
            time.sleep(0.25)
    return remaining


def stop_groups(targets: list[ProcessRecord], grace: float, console: Console) -> None:
    """SIGTERM the process groups, wait up to ``grace`` s, SIGKILL what is left."""
    for record in targets:
        _signal_group(record.pid, signal.SIGTERM)
    with console.status(f"Stopping {', '.join(r.name for r in targets)}..."):
        left = _wait_gone(targets, grace)
        for record in left:
            console.print(f"{record.name} did not stop in {grace:.0f}s: sending SIGKILL")
            _signal_group(record.pid, signal.SIGKILL)
        _wait_gone(left, 5.0)


def cleanup_pid_files(settings: Settings, names: Iterable[str]) -> None:
    """Remove the pid files of ``names`` (missing ones are fine)."""
    for name in names:
        pid_path(settings, name).unlink(missing_ok=True)


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


def print_tail(console: Console, settings: Settings, name: str) -> None:
    """Print the end of service ``name``'s log, framed, as it is (no markup)."""
    path = log_path(settings, name)
    console.print(f"[bold]--- last {LOG_TAIL_LINES} lines of {path} ---[/bold]")
    console.print(tail(path), markup=False, highlight=False)
    console.print("[bold]---[/bold]")
