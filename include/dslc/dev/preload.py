"""Start an Airflow component with the lifecycle's heavy libraries already imported.

LocalExecutor (and Celery) fork each task process from a long-lived worker, and on Linux the
fork inherits every imported module. Importing pandas, pyarrow and Great Expectations once in
the scheduler, before its executor forks the workers, saves every task those imports
(Great Expectations alone costs 3-7 s a process here), and scikit-learn, skops and MLflow save
the train and drift tasks theirs. Then :func:`warm` validates a one-row frame of each of the
use case's datasets and renders its Data Docs, so the forked tasks also inherit GX's warm
caches (expectation registry, metric code paths, Jinja templates): the first validation in a
process cost ~2 s more than the next. DAG parsing is unaffected: the dag-processor is started
without this, and DAG files still import nothing heavy.

Usage: ``python -m dslc.dev.preload scheduler`` (any ``airflow`` sub-command).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from dslc.usecase import Dataset

# What ingest tasks import, and the drift report's charts; order matters only for the log.
PRELOAD = (
    "pandas",
    "pyarrow.parquet",
    "fsspec",
    "great_expectations",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.metrics",
    "skops.io",
    "mlflow",
    "mlflow.sklearn",
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


def _sample(dataset: Dataset) -> pd.DataFrame:
    """One row that satisfies ``dataset``'s description (for warming the validation only)."""
    import pandas as pd

    row: dict[str, object] = {}
    for col in dataset.columns:
        if col.kind == "str":
            row[col.name] = min(col.allowed) if col.allowed else "x"
        else:
            value = col.min if col.min is not None else (col.max if col.max is not None else 0)
            row[col.name] = int(value) if col.kind == "int" else float(value)
    return pd.DataFrame([row])


def warm() -> float:
    """Validate one sample row of each of the use case's datasets and render the Data Docs,
    in this process, before it forks; returns the seconds it took. Never fatal."""
    start = time.perf_counter()
    try:
        import tqdm

        # GX's progress bars are off, but tqdm would still start its monitor thread on first
        # use; no thread may run at fork time.
        tqdm.tqdm.monitor_interval = 0
        from dslc.data.validation import validate
        from dslc.settings import get_usecase

        for dataset in get_usecase().datasets:
            validate(_sample(dataset), dataset).to_html()
    except Exception as e:  # a cold task is slower, not wrong
        print(f"dslc.dev.preload: warming the validation failed: {e!r}", file=sys.stderr)
    return round(time.perf_counter() - start, 3)


# How often the supervisor looks for its task's exit once the task closed its sockets.
REAP_POLL_SECONDS = 0.02


def reap_promptly() -> bool:
    """Make Airflow's task supervisor notice its task's exit at once; True if applied.

    Airflow 3.3's supervisor waits for a task in ``select()`` on the task's sockets for up to
    ``[workers] min_heartbeat_interval`` (5 s). A task closes its sockets as it exits, so the
    supervisor often finds nothing left to select on while the process is not yet reaped, and
    ``select()`` on no file at all sleeps the whole 5 s: most short tasks here ended 5 s late,
    and the next task of the run started that much later. Lowering the interval instead
    multiplies every running task's heartbeat writes to the metadata DB (on SQLite that once
    held a write lock for its 60 s busy timeout). So when nothing is left to read, this polls
    the process's exit every 20 ms until the same deadline; everything else is Airflow's.

    Applied only when the supervisor has the methods it replaces, with the signature it
    expects (tests/unit/dev/test_preload.py pins them for the locked Airflow).
    """
    import inspect

    try:
        from airflow.sdk.execution_time.supervisor import WatchedSubprocess
    except ImportError:
        return False
    original = WatchedSubprocess.__dict__.get("_service_subprocess")
    if original is None or getattr(original, "_dslc_reaps_promptly", False):
        return original is not None
    import attrs

    params = list(inspect.signature(original).parameters)
    if (
        params != ["self", "max_wait_time", "raise_on_timeout", "expect_signal"]
        or not hasattr(WatchedSubprocess, "_check_subprocess_exit")
        or "selector" not in attrs.fields_dict(WatchedSubprocess)
    ):
        print("dslc.dev.preload: Airflow's supervisor changed; not patched", file=sys.stderr)
        return False

    def _service_subprocess(
        self: WatchedSubprocess,
        max_wait_time: float,
        raise_on_timeout: bool = False,
        expect_signal: int | None = None,
    ) -> int | None:
        if raise_on_timeout or self.selector.get_map():
            return original(self, max_wait_time, raise_on_timeout, expect_signal)  # type: ignore[no-any-return]
        deadline = time.monotonic() + max(0.01, max_wait_time)
        while True:
            code: int | None = self._check_subprocess_exit(expect_signal=expect_signal)
            if code is not None or time.monotonic() >= deadline:
                return code
            time.sleep(REAP_POLL_SECONDS)

    _service_subprocess._dslc_reaps_promptly = True  # type: ignore[attr-defined]
    WatchedSubprocess._service_subprocess = _service_subprocess  # type: ignore[method-assign]
    return True


def main() -> None:
    """Preload, then hand over to Airflow's own command line."""
    took = preload()
    print(f"dslc.dev.preload: imported {took} before starting airflow", file=sys.stderr)
    print(f"dslc.dev.preload: warmed the validation in {warm()} s", file=sys.stderr)
    print(f"dslc.dev.preload: supervisor reaps promptly: {reap_promptly()}", file=sys.stderr)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *sys.argv[1:]]
    airflow_main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
