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
