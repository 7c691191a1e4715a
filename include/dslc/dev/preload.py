"""Start an Airflow component with the lifecycle's heavy libraries already imported.

LocalExecutor (and Celery) fork each task process from a long-lived worker, and on Linux the
fork inherits every imported module. Importing pandas, pyarrow and Great Expectations once in
the scheduler, before its executor forks the workers, saves every task those imports
(Great Expectations alone costs 3-7 s a process here). DAG parsing is unaffected: the
dag-processor is started without this, and DAG files still import nothing heavy.

Usage: ``python -m dslc.dev.preload scheduler`` (any ``airflow`` sub-command).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

# What ingest tasks import, and the drift report's charts; order matters only for the log.
PRELOAD = (
    "pandas",
    "pyarrow.parquet",
    "fsspec",
    "great_expectations",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
)


def preload(modules: tuple[str, ...] = PRELOAD) -> dict[str, float]:
    """Import ``modules``; returns the seconds each took. A missing one is skipped."""
    # No analytics thread may exist at fork time (and none is wanted at all).
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # Charts are rendered to files: no GUI backend (and none of its threads) in the workers.
    os.environ.setdefault("MPLBACKEND", "Agg")
    took: dict[str, float] = {}
    for name in modules:
        start = time.perf_counter()
        try:
            importlib.import_module(name)
        except ImportError as e:  # pragma: no cover - only on a broken install
            print(f"dslc.dev.preload: skipping {name}: {e}", file=sys.stderr)
            continue
        took[name] = round(time.perf_counter() - start, 3)
    return took


def main() -> None:
    """Preload, then hand over to Airflow's own command line."""
    took = preload()
    print(f"dslc.dev.preload: imported {took} before starting airflow", file=sys.stderr)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *sys.argv[1:]]
    airflow_main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
