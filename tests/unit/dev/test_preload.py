"""The scheduler starts through dslc.preload, which imports the tasks' heavy libraries first."""

from __future__ import annotations

import subprocess
import sys


def test_preload_imports_then_hands_over_to_airflow() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dslc.dev.preload", "version"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dslc.dev.preload: imported" in out.stderr
    assert "great_expectations" in out.stderr
    assert out.stdout.strip().startswith("3.")  # `airflow version` ran after the preload


def test_warm_validates_a_passing_sample_of_each_dataset_and_leaves_no_thread() -> None:
    """The forked tasks inherit the warm validation; a thread alive at fork would not be
    inherited (and could hold a lock), so none may be left running."""
    code = (
        "import threading\n"
        "from dslc.dev import preload\n"
        "from dslc.data.validation import validate\n"
        "from dslc.settings import get_usecase\n"
        "print('took', preload.warm())\n"
        "for d in get_usecase().datasets:\n"
        "    r = validate(preload._sample(d), d)\n"
        "    assert r.success and r.evaluated == len(r.results), r.message()\n"
        "print('threads', [t.name for t in threading.enumerate()])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "warming the validation failed" not in out.stderr
    assert "threads ['MainThread']" in out.stdout


class _Supervised:
    """The parts of Airflow's WatchedSubprocess the prompt reaping touches: its selector and
    its exit check (here: the process is seen to exit at the ``exits_at``-th check)."""

    def __init__(self, exits_at: int) -> None:
        import selectors

        self.selector = selectors.DefaultSelector()
        self.checks = 0
        self.exits_at = exits_at

    def _check_subprocess_exit(
        self, raise_on_timeout: bool = False, expect_signal: int | None = None
    ) -> int | None:
        self.checks += 1
        return 0 if self.checks >= self.exits_at else None


def test_the_supervisor_patch_fits_the_locked_airflow() -> None:
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from dslc.dev import preload

    assert preload.reap_promptly() is True
    assert WatchedSubprocess._service_subprocess._dslc_reaps_promptly is True  # type: ignore[attr-defined]
    assert preload.reap_promptly() is True  # idempotent


def test_with_no_socket_left_the_exit_is_seen_at_once_not_after_the_select_timeout() -> None:
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from dslc.dev import preload

    preload.reap_promptly()
    task = _Supervised(exits_at=3)
    # A 60 s wait budget: Airflow's empty select() would sleep all of it.
    code = WatchedSubprocess._service_subprocess(task, 60.0)  # type: ignore[arg-type]
    assert code == 0
    assert task.checks == 3  # returned on the check that saw the exit


def test_with_sockets_open_the_supervisor_selects_as_airflow_does() -> None:
    import socket

    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    from dslc.dev import preload

    preload.reap_promptly()
    task = _Supervised(exits_at=100)
    ours, theirs = socket.socketpair()
    got: list[bytes] = []
    task.selector.register(ours, 1, (lambda s: got.append(s.recv(10)) or True, lambda s: None))
    theirs.sendall(b"log")
    try:
        assert WatchedSubprocess._service_subprocess(task, 5.0) is None  # type: ignore[arg-type]
    finally:
        task.selector.close()
        ours.close()
        theirs.close()
    assert got == [b"log"]  # Airflow's own path read the socket
    assert task.checks == 1
