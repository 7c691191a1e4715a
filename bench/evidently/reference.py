"""Evidently's per-column drift verdicts on the same data (run by .venv-evidently's python).

Evidently 0.7 needs pandas 2, the project runs pandas 3, so this script runs in its own venv
(``make .venv-evidently``; pins in bench/evidently/requirements.txt) and talks to ours through
files. It runs ``DataDriftPreset(method=..., threshold=...)`` on a reference and a current
parquet file and writes, per column, Evidently's drift score and verdict (its own test status),
plus the time ``Report.run`` took:

    .venv-evidently/bin/python bench/evidently/reference.py REF.parquet CUR.parquet OUT.json \
        --numeric a,b --categorical c [--method psi] [--threshold 0.2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _columns(text: str) -> list[str]:
    return [c for c in text.split(",") if c]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("current", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--numeric", type=_columns, default=[])
    parser.add_argument("--categorical", type=_columns, default=[])
    parser.add_argument("--method", default="psi")
    parser.add_argument("--threshold", type=float, default=0.2)
    args = parser.parse_args(argv)

    t_import = time.perf_counter()
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - t_import
    columns = [*args.numeric, *args.categorical]
    ref = pd.read_parquet(args.reference, columns=columns)
    cur = pd.read_parquet(args.current, columns=columns)
    definition = DataDefinition(
        numerical_columns=args.numeric, categorical_columns=args.categorical
    )
    report = Report(
        [DataDriftPreset(method=args.method, threshold=args.threshold)], include_tests=True
    )
    t = time.perf_counter()
    snapshot = report.run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    run_s = time.perf_counter() - t
    result = snapshot.dict()

    scores: dict[str, float] = {}
    by_metric: dict[str, str] = {}
    for m in result["metrics"]:
        config = m["config"]
        if config["type"].endswith("ValueDrift"):
            scores[config["column"]] = float(m["value"])
            by_metric[m["id"]] = config["column"]
    verdicts: dict[str, bool] = {}
    for test in result["tests"]:
        column = by_metric.get(test["metric_config"]["metric_id"])
        if column is not None:
            verdicts[column] = test["status"] == "FAIL"  # FAIL: drift detected
    missing = sorted(set(columns) - set(verdicts))
    if missing:
        print(f"Evidently returned no verdict for {missing}", file=sys.stderr)
        return 1
    out = {
        "evidently": evidently.__version__,
        "pandas": pd.__version__,
        "method": args.method,
        "threshold": args.threshold,
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "import_s": import_s,
        "run_s": run_s,
        "columns": {c: {"score": scores[c], "drifted": verdicts[c]} for c in columns},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
