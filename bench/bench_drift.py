"""B2: drift profile fit and batch scoring vs the memory floor, plain numpy and Evidently.

Data: a synthetic reference of 1M rows x 100 columns (80 numeric of several shapes, some with
missing values, 20 categorical Arrow-string columns of 5..62 categories) and current batches
of 100k and 1M rows in which 30% of the columns are clearly shifted. In the same run:

- ours: :func:`dslc.model.profile.fit_profile` once, :func:`dslc.monitoring.statistics.score`
  per batch;
- ``np.sum`` over the batch's numeric columns (the memory-read floor);
- a plain numpy PSI: quantile edges fitted once with ``np.quantile`` on every row, batches
  binned with ``np.digitize`` + ``np.bincount``, categoricals counted with pandas
  ``value_counts``;
- Evidently ``DataDriftPreset(method="psi", threshold=0.2)`` in .venv-evidently (pandas 2)
  on a 100k-row sample of the reference vs the 100k batch (``DSLC_BENCH_EVIDENTLY_FULL=1``:
  the full 1M reference; that takes minutes). Ours is timed on the same sample for the ratio,
  and the per-column PSI verdicts are compared.

Reports values/s, ratios, fit time, peak memory relative to the batch, and the verdict match;
prints a table and writes ``bench/results/drift.json``.

    python -m bench.bench_drift [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "drift.json"
EVIDENTLY_PYTHON = ROOT / ".venv-evidently" / "bin" / "python"
EVIDENTLY_SCRIPT = ROOT / "bench" / "evidently" / "reference.py"
FULL_ENV = "DSLC_BENCH_EVIDENTLY_FULL"
PSI_THRESHOLD = 0.2
TARGET_VALUES_PER_S = 100e6
TARGET_FIT_S = 2.0


# -- data ---------------------------------------------------------------------------------------


def _numeric(rng: Any, rows: int, j: int, shifted: bool) -> Any:
    """Column ``j``: normal, log-normal (sigma 0.5), small integers or normal with 5% missing.

    Shifted: by 1.5 sd before the transform. A heavier tail (log-normal sigma 1) defeats
    Evidently's equal-width bins: one extreme value stretches them until nearly all rows share
    a bin, and a clearly shifted column (our PSI ~2) scores 0.09-0.48 there (seen here).
    """
    import numpy as np

    shape = j % 4
    scale = 1.0 + j % 5
    loc = 1.5 * scale if shifted else 0.0  # a 1.5-sd shift: clear drift on any binning
    x = rng.standard_normal(rows) * scale + loc
    if shape == 1:
        x = np.exp(0.5 * x / scale)
    elif shape == 2:
        x = np.round(np.abs(x))
    elif shape == 3:
        x[rng.random(rows) < 0.05] = np.nan
    return x


def _categorical(rng: Any, rows: int, j: int, shifted: bool) -> Any:
    """Arrow strings (as pandas 3 reads parquet) with Zipf-like frequencies; shifted: the
    frequencies reversed."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    k = 5 + 3 * j
    p = 1.0 / np.arange(1, k + 1)
    if shifted:
        p = p[::-1]
    codes = np.searchsorted(np.cumsum(p / p.sum()), rng.random(rows), side="right")
    codes = np.minimum(codes, k - 1).astype("int32")
    labels = pa.array([f"{'abcdefghijklmnopqrst'[j % 20]}{i}" for i in range(k)])
    arr = pa.DictionaryArray.from_arrays(pa.array(codes), labels).cast(pa.large_string())
    return pd.Series(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def make_frames(
    ref_rows: int,
    cur_rows: int | list[int],
    n_numeric: int = 80,
    n_categorical: int = 20,
    shifted_share: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """Reference and current frames; the first ``shifted_share`` of each kind is shifted in
    every current frame. Returns ``ref``, ``cur`` (a list when ``cur_rows`` is), ``numeric``,
    ``categorical`` and ``shifted`` (column names)."""
    import numpy as np
    import pandas as pd

    numeric = [f"num{j}" for j in range(n_numeric)]
    categorical = [f"cat{j}" for j in range(n_categorical)]
    shifted = [
        *numeric[: round(shifted_share * n_numeric)],
        *categorical[: round(shifted_share * n_categorical)],
    ]

    def frame(rows: int, seed: int, shift: bool) -> Any:
        rng = np.random.default_rng(seed)
        cols = {c: _numeric(rng, rows, j, shift and c in shifted) for j, c in enumerate(numeric)}
        for j, c in enumerate(categorical):
            cols[c] = _categorical(rng, rows, j, shift and c in shifted)
        return pd.DataFrame(cols)

    sizes = cur_rows if isinstance(cur_rows, list) else [cur_rows]
    curs = [frame(n, seed + 1 + i, True) for i, n in enumerate(sizes)]
    return {
        "ref": frame(ref_rows, seed, False),
        "cur": curs if isinstance(cur_rows, list) else curs[0],
        "numeric": numeric,
        "categorical": categorical,
        "shifted": shifted,
    }


# -- references ---------------------------------------------------------------------------------


def numpy_fit(df: Any, numeric: list[str], categorical: list[str], bins: int = 10) -> Any:
    """The plain reference: ``np.quantile`` edges on every row, ``value_counts`` categories."""
    import numpy as np

    prof: dict[str, Any] = {}
    for c in numeric:
        x = df[c].to_numpy(dtype="float64", na_value=np.nan)
        x = x[~np.isnan(x)]
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
        idx = np.digitize(x, edges[1:-1])
        prof[c] = (edges, np.bincount(idx, minlength=len(edges) - 1) / len(x))
    for c in categorical:
        prof[c] = df[c].value_counts(normalize=True)
    return prof


def _plain_psi(ref: Any, cur: Any) -> float:
    import numpy as np

    r, c = np.maximum(ref, 1e-4), np.maximum(cur, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def numpy_score(prof: Any, df: Any, numeric: list[str], categorical: list[str]) -> dict[str, float]:
    """PSI per column on the pre-fitted edges/categories (unseen categories dropped)."""
    import numpy as np

    out = {}
    for c in numeric:
        edges, ref = prof[c]
        x = df[c].to_numpy(dtype="float64", na_value=np.nan)
        x = x[~np.isnan(x)]
        cur = np.bincount(np.digitize(x, edges[1:-1]), minlength=len(ref)) / len(x)
        out[c] = _plain_psi(ref, cur)
    for c in categorical:
        ref = prof[c]
        cur = df[c].value_counts(normalize=True).reindex(ref.index, fill_value=0.0)
        out[c] = _plain_psi(ref.to_numpy(), cur.to_numpy())
    return out


def memory_floor(df: Any, numeric: list[str]) -> float:
    """``np.sum`` over every numeric column: the cost of reading the values once."""
    import numpy as np

    return float(sum(np.sum(df[c].to_numpy()) for c in numeric))


def run_evidently(
    ref: Any,
    cur: Any,
    numeric: list[str],
    categorical: list[str],
    threshold: float = PSI_THRESHOLD,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Evidently's per-column PSI verdicts on the same frames, via .venv-evidently."""
    if not EVIDENTLY_PYTHON.exists():
        raise RuntimeError(
            f"{EVIDENTLY_PYTHON.relative_to(ROOT)} is missing: run `make .venv-evidently` "
            "(Evidently needs pandas 2, so it has its own venv)"
        )
    with tempfile.TemporaryDirectory(prefix="dslc-evidently-") as tmp:
        paths = [Path(tmp) / n for n in ("ref.parquet", "cur.parquet", "out.json")]
        ref.to_parquet(paths[0], index=False)
        cur.to_parquet(paths[1], index=False)
        cmd = [
            str(EVIDENTLY_PYTHON),
            str(EVIDENTLY_SCRIPT),
            *map(str, paths),
            f"--numeric={','.join(numeric)}",
            f"--categorical={','.join(categorical)}",
            f"--threshold={threshold}",
        ]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"the Evidently reference failed:\n{done.stderr[-4000:]}")
        out: dict[str, Any] = json.loads(paths[2].read_text())
    out["process_s"] = wall
    return out


# -- measuring ----------------------------------------------------------------------------------


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median wall seconds, last result)."""
    wall, _, result = _times(fn, repeats)
    return wall, result


def _times(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(median wall seconds, median CPU seconds of this process, last result). CPU time leaves
    out the time other processes held the core, so it is steadier on a shared machine."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - t)
    return statistics.median(walls), statistics.median(cpus), result


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak extra memory of one call: tracemalloc's peak (Python objects and numpy buffers)
    plus the peak of Arrow's allocations, tracked by a proxy pool set as the default for the
    call. Summing two peaks over-states the true peak, never under-states it."""
    import pyarrow as pa

    previous = pa.default_memory_pool()
    proxy = pa.proxy_memory_pool(previous)
    pa.set_memory_pool(proxy)
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)
    return int(peak + proxy.max_memory())


def _frame_bytes(df: Any) -> int:
    return int(df.memory_usage(deep=True, index=False).sum())


def _batch(name: str, profile: Any, naive: Any, df: Any, data: dict[str, Any], repeats: int):
    from dslc.monitoring import statistics

    numeric, categorical = data["numeric"], data["categorical"]
    values = df.shape[0] * df.shape[1]
    statistics.score(profile, df)  # warm
    ours_s, ours_cpu_s, scores = _times(lambda: statistics.score(profile, df), repeats)
    floor_s, floor_cpu_s, _ = _times(lambda: memory_floor(df, numeric), repeats)
    naive_s, naive_cpu_s, naive_psi = _times(
        lambda: numpy_score(naive, df, numeric, categorical), repeats
    )
    peak = _peak_bytes(lambda: statistics.score(profile, df))
    verdicts = {c: s["psi"] is not None and s["psi"] >= PSI_THRESHOLD for c, s in scores.items()}
    numeric_values = df.shape[0] * len(numeric)
    return {
        "batch": name,
        "rows": df.shape[0],
        "columns": df.shape[1],
        "values": values,
        "ours_s": ours_s,
        "ours_values_per_s": values / ours_s,
        "ours_cpu_s": ours_cpu_s,
        "ours_values_per_cpu_s": values / ours_cpu_s,
        "floor_cpu_s": floor_cpu_s,
        "naive_cpu_s": naive_cpu_s,
        "floor_s": floor_s,
        "floor_values_per_s": numeric_values / floor_s,
        "floor_note": "np.sum over the numeric columns only",
        "naive_s": naive_s,
        "naive_values_per_s": values / naive_s,
        "speedup_vs_naive": naive_s / ours_s,
        "ours_vs_floor_rate": (values / ours_s) / (numeric_values / floor_s),
        "batch_mib": _frame_bytes(df) / 2**20,
        "peak_mib": peak / 2**20,
        "peak_vs_batch": peak / _frame_bytes(df),
        "drifted": sorted(c for c, d in verdicts.items() if d),
        "drifted_as_built": sorted(verdicts) == sorted(scores)
        and {c for c, d in verdicts.items() if d} == set(data["shifted"]),
        "naive_psi_verdicts_agree": all(
            (naive_psi[c] >= PSI_THRESHOLD) == verdicts[c] for c in verdicts
        ),
    }


def _evidently(data: dict[str, Any], ref_rows: int, cur: Any) -> dict[str, Any]:
    """Evidently vs ours on the same (possibly sampled) reference and batch."""
    from dslc.model.profile import fit_profile
    from dslc.monitoring import statistics

    numeric, categorical = data["numeric"], data["categorical"]
    ref = data["ref"]
    if ref_rows < len(ref):
        ref = ref.sample(n=ref_rows, random_state=0).reset_index(drop=True)
    ev = run_evidently(ref, cur, numeric, categorical)
    fit_s, profile = _time(lambda: fit_profile(ref, numeric, categorical), 1)
    score_s, scores = _time(lambda: statistics.score(profile, cur), 3)
    ours = {c: s["psi"] is not None and s["psi"] >= PSI_THRESHOLD for c, s in scores.items()}
    theirs = {c: v["drifted"] for c, v in ev["columns"].items()}
    differ = sorted(c for c in ours if ours[c] != theirs.get(c))
    values = cur.shape[0] * cur.shape[1]
    return {
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "evidently_version": ev["evidently"],
        "evidently_run_s": ev["run_s"],
        "evidently_process_s": ev["process_s"],
        "evidently_values_per_s": values / ev["run_s"],
        "ours_fit_s": fit_s,
        "ours_score_s": score_s,
        "speedup_score": ev["run_s"] / score_s,
        "speedup_fit_and_score": ev["run_s"] / (fit_s + score_s),
        "verdicts_match": not differ,
        "verdicts_differ": differ,
        "evidently_drifted": sorted(c for c, d in theirs.items() if d),
        "scores": {
            c: {"ours_psi": scores[c]["psi"], "evidently_psi": ev["columns"][c]["score"]}
            for c in ours
        },
    }


def run(small: bool = False) -> dict[str, Any]:
    """Run B2; ``small``: 20k reference rows, 5k/20k batches, 10 columns (for a test)."""
    from dslc.model.profile import SAMPLE_ROWS, fit_profile

    if small:
        ref_rows, batches, n_num, n_cat, repeats = 20_000, [5_000, 20_000], 8, 2, 2
    else:
        ref_rows, batches, n_num, n_cat, repeats = 1_000_000, [100_000, 1_000_000], 80, 20, 5
    t = time.perf_counter()
    data = make_frames(ref_rows, batches, n_num, n_cat)
    gen_s = time.perf_counter() - t
    ref = data["ref"]
    numeric, categorical = data["numeric"], data["categorical"]

    fit_profile(ref.head(1000), numeric, categorical)  # warm imports
    fit_s, fit_cpu_s, profile = _times(lambda: fit_profile(ref, numeric, categorical), 3)
    naive_fit_s, naive = _time(lambda: numpy_fit(ref, numeric, categorical), 1)
    fit_peak = _peak_bytes(lambda: fit_profile(ref, numeric, categorical))
    cases = [_batch(f"{len(df)}_rows", profile, naive, df, data, repeats) for df in data["cur"]]
    full = os.environ.get(FULL_ENV, "") not in ("", "0")
    ev_ref_rows = ref_rows if (full or small) else min(ref_rows, 100_000)
    evidently = _evidently(data, ev_ref_rows, data["cur"][0])
    first = cases[0]
    return {
        "benchmark": "B2 drift",
        "reference_rows": ref_rows,
        "columns": {"numeric": n_num, "categorical": n_cat},
        "shifted_columns": len(data["shifted"]),
        "generate_s": gen_s,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "fit_sample_rows": min(SAMPLE_ROWS, ref_rows),
        "fit_peak_mib": fit_peak / 2**20,
        "reference_mib": _frame_bytes(ref) / 2**20,
        "naive_fit_s": naive_fit_s,
        "fit_speedup_vs_naive": naive_fit_s / fit_s,
        "cases": cases,
        "evidently": evidently,
        "evidently_full_reference": full,
        "meets_target": _meets(small, fit_s, first["ours_values_per_s"], cases, evidently),
        "meets_target_cpu": _meets(
            small, fit_cpu_s, first["ours_values_per_cpu_s"], cases, evidently
        ),
    }


def _meets(small: bool, fit_s: float, rate: float, cases: list[Any], ev: dict[str, Any]) -> bool:
    """B2's targets (never claimed on small inputs): fit, 100k-batch rate, memory, verdicts."""
    return bool(
        not small
        and fit_s <= TARGET_FIT_S
        and rate >= TARGET_VALUES_PER_S
        and all(c["peak_vs_batch"] <= 2 for c in cases)
        and ev["verdicts_match"]
    )


def table(result: dict[str, Any]) -> str:
    """The printed summary."""
    lines = [
        f"B2 drift: reference {result['reference_rows']:,} rows x "
        f"{sum(result['columns'].values())} columns, {result['shifted_columns']} shifted",
        f"fit            {result['fit_s']:8.3f} s   (CPU {result['fit_cpu_s']:.3f} s; "
        f"plain numpy {result['naive_fit_s']:.3f} s, "
        f"{result['fit_speedup_vs_naive']:.1f}x; target <= {TARGET_FIT_S} s; peak "
        f"{result['fit_peak_mib']:.0f} MiB of {result['reference_mib']:.0f} MiB frame)",
        "values/s: wall clock (CPU time of this process in brackets: the machine is shared)",
        f"{'batch':<16}{'ours M val/s':>18}{'floor':>10}{'numpy':>10}{'vs numpy':>10}"
        f"{'vs floor':>10}{'peak/batch':>12}{'as built':>10}",
    ]
    for c in result["cases"]:
        lines.append(
            f"{c['batch']:<16}{c['ours_values_per_s'] / 1e6:>10.0f}"
            f"{'(' + format(c['ours_values_per_cpu_s'] / 1e6, '.0f') + ')':>8}"
            f"{c['floor_values_per_s'] / 1e6:>10.0f}{c['naive_values_per_s'] / 1e6:>10.0f}"
            f"{c['speedup_vs_naive']:>9.1f}x{c['ours_vs_floor_rate']:>10.3f}"
            f"{c['peak_vs_batch']:>12.4f}{'yes' if c['drifted_as_built'] else 'NO':>10}"
        )
    ev = result["evidently"]
    lines.append(
        f"Evidently {ev['evidently_version']} on {ev['reference_rows']:,} ref x "
        f"{ev['current_rows']:,} cur rows: {ev['evidently_run_s']:.2f} s "
        f"(process {ev['evidently_process_s']:.1f} s); ours score {ev['ours_score_s']:.4f} s "
        f"= {ev['speedup_score']:.0f}x, fit+score {ev['speedup_fit_and_score']:.0f}x; "
        f"verdicts {'match' if ev['verdicts_match'] else 'DIFFER: ' + str(ev['verdicts_differ'])}"
    )
    lines.append(
        f"meets target: {result['meets_target']} (wall clock), "
        f"{result['meets_target_cpu']} (CPU time)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args(argv)
    result = run(small=args.small)
    print(table(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
