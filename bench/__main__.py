"""Run the benchmarks: ``python -m bench [--small] [--only NAME]`` (``make bench``).

Each module in :data:`BENCHES` has ``run(small: bool) -> dict`` (and may have
``table(result) -> str``). The results are printed and written to
``bench/results/<name>.json`` with when, where and on what commit they were measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
# name -> module; the name is also the results file (bench/results/<name>.json).
BENCHES = {
    "parse": "bench.bench_parse",
    "validation": "bench.bench_validation",
    "train": "bench.bench_train",
    "drift": "bench.bench_drift",
    "stack": "bench.bench_stack",
    "serving": "bench.bench_serving",
    "distributed": "bench.bench_distributed",
}


def git_sha() -> str | None:
    """The checked-out commit (with ``-dirty`` for local changes), or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return info


def _load(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise  # the bench exists but one of its imports is missing: a real error
        return None


def _generic_table(result: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in result.items() if isinstance(v, (int, float, str, bool))]
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(
        f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in rows
    )


def run_one(name: str, module: ModuleType, small: bool) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    t = time.perf_counter()
    result: dict[str, Any] = module.run(small=small)
    result = {
        **result,
        "name": name,
        "timestamp": started.isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - t, 3),
        "git_sha": git_sha(),
        "machine": machine(),
        "small": small,
    }
    table = getattr(module, "table", None)
    print(table(result) if callable(table) else _generic_table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    print(f"wrote {out.relative_to(ROOT)} ({result['wall_s']:.0f} s)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small inputs, few repeats")
    parser.add_argument("--only", choices=sorted(BENCHES), help="run one benchmark")
    args = parser.parse_args(argv)

    names = [args.only] if args.only else list(BENCHES)
    ran = 0
    for name in names:
        module = _load(BENCHES[name])
        if module is None:
            print(f"== {name}: skipped ({BENCHES[name]} is not there yet)\n")
            continue
        print(f"== {name} ({'small' if args.small else 'full'})")
        run_one(name, module, small=args.small)
        print()
        ran += 1
    if not ran:
        print("no benchmark ran", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
