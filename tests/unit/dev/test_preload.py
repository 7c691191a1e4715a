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
