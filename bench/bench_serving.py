"""B3: the serving API under load vs `mlflow models serve` of the same model version.

In one run: a real MLflow server on a free loopback port; a model trained with the DAG's
default params on real NYC flights features (January 2013, the ingest functions) and
registered; then, one after the other, (a) ours, ``python -m dslc.serving --model
models:/<name>/<v>``, and (b) the reference, ``mlflow models serve -m models:/<name>/<v>
--env-manager local --workers 1``. Each server is pinned to one core (``taskset -c``), the
load generator to the other: wrk (one thread, keep-alive connections, ``--latency``) with the
Lua body script ``bench/wrk/post_json.lua``, single-row and 100-row requests at concurrency
1, 8 and 32. Before the load, the same 200 records go through both servers and are compared
with the offline pipeline (our probabilities bitwise, our late flags with the reference's
labels: the reference serves ``predict``). Also times the compiled predictor against
``pipeline.predict_proba`` in process (one OpenMP thread each, as a pinned server has).

Target (BENCHMARKS.md): >= 5x the reference's requests/s at c=32 with <= 0.5x its p99, and
<= 0.5x its p50 at c=1, with identical predictions. "Max req/s at p99 < 50 ms" is the
highest requests/s among the concurrency levels whose p99 stayed under 50 ms.

``python -m bench.bench_serving [--small]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CONCURRENCY = (1, 8, 32)
SMALL_CONCURRENCY = (8,)
SIZES = {"single": 1, "batch100": 100}
RUN_SECONDS, SMALL_RUN_SECONDS = 10, 2
WARMUP_SECONDS = 2
CHECK_RECORDS = 200
P99_LIMIT_MS = 50.0
TARGET_RPS_RATIO = 5.0  # ours / reference requests/s at the highest concurrency
TARGET_P99_RATIO = 0.5  # ours / reference p99 at the highest concurrency
TARGET_P50_RATIO = 0.5  # ours / reference p50 at concurrency 1
WEATHER = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post_json.lua"


class BenchError(RuntimeError):
    """The benchmark could not run (a tool is missing, a server did not start)."""


# -- processes -------------------------------------------------------------------------------


def pinning() -> tuple[list[str], list[str], dict[str, Any]]:
    """(server prefix, load prefix, description): two distinct CPUs via taskset if we can."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    taskset = shutil.which("taskset")
    if taskset and len(cpus) >= 2:
        server, load = cpus[0], cpus[1]
        return (
            [taskset, "-c", str(server)],
            [taskset, "-c", str(load)],
            {"pinned": True, "server_cpu": server, "load_cpu": load},
        )
    return [], [], {"pinned": False, "why": f"cpus {cpus}, taskset {taskset}"}


def wrk_binary() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)
    if found is None:
        raise BenchError("wrk is not installed: `make tools` (or apt-get install wrk)")
    return found


def wrk_run(
    url: str, body: Path, connections: int, seconds: int, prefix: list[str]
) -> dict[str, Any]:
    """One wrk run; the ``done()`` summary of bench/wrk/post_json.lua, parsed."""
    cmd = [
        *prefix,
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(body),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed (exit {proc.returncode}): {proc.stderr.strip()[-1000:]} "
            f"{proc.stdout.strip()[-1000:]}"
        )
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    result["connections"] = connections
    result["ok"] = result["requests"] > 0 and not any(result["errors"].values())
    return result


class ReferenceServer:
    """``mlflow models serve`` of a registered version in its own process group."""

    def __init__(self, model_uri: str, tracking_uri: str, log_path: Path, prefix: list[str]):
        from tests.support import free_port

        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.log_path = log_path
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> ReferenceServer:
        from tests.integration.mlflow_server import login_env

        # A model server, not a tracking server: it logs in to MLflow to load the model.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
        env.update(login_env())
        env["NO_PROXY"] = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1,localhost"]))
        env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        # MLflow 3.17 refuses skops models without it; only this process gets it.
        env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
        cmd = [
            *self.prefix,
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            self.model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--workers",
            "1",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"mlflow models serve exited: {self.log_tail()}")
            if get_status(f"{self.url}/ping") == 200:
                return self
            time.sleep(0.3)
        self.stop()
        raise BenchError(f"mlflow models serve not up within {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self, grace: float = 15) -> None:
        from tests.support import stop_process_group

        if self.proc is None or self.proc.poll() is not None:
            return
        stop_process_group(self.proc, grace)

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def get_status(url: str, timeout: float = 2) -> int:
    """HTTP status of a GET; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def post_json(url: str, payload: Any, timeout: float = 60) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise BenchError(f"POST {url}: {e.code} {e.read()[:2000]!r}") from e


# -- measuring -------------------------------------------------------------------------------


def measure(
    url: str, bodies: dict[str, Path], levels: tuple[int, ...], seconds: int, prefix: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """wrk at each concurrency level for each request size (after a short warm-up)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for size, body in bodies.items():
        if seconds >= RUN_SECONDS:
            wrk_run(url, body, max(levels), WARMUP_SECONDS, prefix)
        out[size] = [wrk_run(url, body, c, seconds, prefix) for c in levels]
    return out


def best_under_limit(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the most requests/s among those with p99 < 50 ms and no errors."""
    fine = [r for r in runs if r["ok"] and r["p99_ms"] < P99_LIMIT_MS]
    if not fine:
        return None
    best = max(fine, key=lambda r: r["requests_per_s"])
    return {"requests_per_s": best["requests_per_s"], "connections": best["connections"]}


def compare(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios and targets for one request size."""
    by_c = {r["connections"]: r for r in ours}
    ref_c = {r["connections"]: r for r in ref}
    hi, lo = max(by_c), min(by_c)
    rps = by_c[hi]["requests_per_s"] / ref_c[hi]["requests_per_s"]
    p99 = by_c[hi]["p99_ms"] / ref_c[hi]["p99_ms"]
    p50 = by_c[lo]["p50_ms"] / ref_c[lo]["p50_ms"]
    return {
        "high_c": hi,
        "low_c": lo,
        "rps_ratio_high_c": round(rps, 3),
        "p99_ratio_high_c": round(p99, 4),
        "p50_ratio_low_c": round(p50, 4),
        "ours_max_rps_p99_under_50ms": best_under_limit(ours),
        "reference_max_rps_p99_under_50ms": best_under_limit(ref),
        "meets_rps": rps >= TARGET_RPS_RATIO,
        "meets_p99": p99 <= TARGET_P99_RATIO,
        "meets_p50": p50 <= TARGET_P50_RATIO,
        "ours_ok": all(r["ok"] for r in ours),
        "reference_ok": all(r["ok"] for r in ref),
    }


def predictor_timings(pipeline: Any, frame: Any) -> dict[str, Any]:
    """Per-call seconds of the compiled predictor vs ``pipeline.predict_proba``, 1 and 100 rows."""
    from threadpoolctl import threadpool_limits

    from dslc.model.spec import features_of
    from dslc.serving.predictor import compile_model
    from dslc.usecases.flights.model import MODEL_FEATURES
    from tests.integration.serving_server import records_of

    t = time.perf_counter()
    predictor = compile_model(pipeline)
    out: dict[str, Any] = {"compile_s": round(time.perf_counter() - t, 4)}
    with threadpool_limits(1, "openmp"):
        for n in (1, 100):
            records = records_of(frame.head(n))
            columns = {c: [r[c] for r in records] for c in MODEL_FEATURES}
            feats = features_of(frame.head(n))
            for name, fn in (
                ("pipeline", lambda f=feats: pipeline.predict_proba(f)),
                ("predictor", lambda c=columns: predictor.predict_proba(c)),
            ):
                timer = timeit.Timer(fn)
                number = max(1, int(0.1 / max(timer.timeit(1), 1e-6)))
                out[f"{name}_{n}_rows_us"] = round(min(timer.repeat(5, number)) / number * 1e6, 1)
            out[f"speedup_{n}_rows"] = round(
                out[f"pipeline_{n}_rows_us"] / out[f"predictor_{n}_rows_us"], 1
            )
    return out


def check_predictions(
    ours_url: str, ref_url: str, models: Any, pipeline: Any, n: int
) -> dict[str, Any]:
    """The same records through both servers vs the offline pipeline.

    Ours answers probabilities (compared bitwise) and late flags; the reference serves the
    model's ``predict`` (labels), compared with our flags and the offline labels.
    """
    import numpy as np

    from dslc.model.spec import features_of

    frame = models.holdout.head(n)
    want = pipeline.predict_proba(features_of(frame))[:, 1]
    labels = pipeline.predict(features_of(frame)).astype(bool)
    got = post_json(ours_url, models.records(n, with_keys=True))["predictions"]
    proba = np.array([p["probability"] for p in got], dtype=np.float64)
    late = np.array([p["late"] for p in got], dtype=bool)
    ref = np.asarray(
        post_json(ref_url, {"dataframe_records": models.records(n)})["predictions"]
    ).astype(bool)
    out: dict[str, Any] = {
        "records": n,
        "rows_with_missing_weather": int(frame[list(WEATHER)].isna().any(axis=1).sum()),
        "ours_max_abs_diff": float(np.max(np.abs(proba - want))),
        "ours_bitwise_equal": bool(np.array_equal(proba, want)),
        "ours_late_equal_offline_labels": bool(np.array_equal(late, labels)),
        "reference_equal_offline_labels": bool(np.array_equal(ref, labels)),
        "ours_late_equal_reference": bool(np.array_equal(late, ref)),
    }
    out["identical"] = all(
        out[k]
        for k in (
            "ours_bitwise_equal",
            "ours_late_equal_offline_labels",
            "reference_equal_offline_labels",
            "ours_late_equal_reference",
        )
    )
    return out


def _bodies(root: Path, models: Any) -> tuple[dict[str, Path], dict[str, Path]]:
    root.mkdir(parents=True, exist_ok=True)
    ours, ref = {}, {}
    for size, n in SIZES.items():
        ours[size] = root / f"ours_{size}.json"
        ours[size].write_text(json.dumps(models.records(n, with_keys=True)))
        ref[size] = root / f"reference_{size}.json"
        ref[size].write_text(json.dumps({"dataframe_records": models.records(n)}))
    return ours, ref


def run(small: bool = False) -> dict[str, Any]:
    from dslc.model import registry
    from tests.integration.mlflow_server import MlflowServer
    from tests.integration.serving_server import ServingServer, register_test_models
    from tests.support import dslc_env

    levels = SMALL_CONCURRENCY if small else CONCURRENCY
    seconds = SMALL_RUN_SECONDS if small else RUN_SECONDS
    server_pin, load_pin, pin = pinning()
    wrk_binary()
    result: dict[str, Any] = {
        "benchmark": "B3 serving",
        "small": small,
        "concurrency": list(levels),
        "run_seconds": seconds,
        "sizes": SIZES,
        "pinning": pin,
    }
    with tempfile.TemporaryDirectory(prefix="dslc-bench-serving-") as tmp:
        root = Path(tmp)
        with (
            MlflowServer(root / "mlflow") as mlflow_server,
            dslc_env(DSLC_MLFLOW_TRACKING_URI=mlflow_server.url),
        ):
            t = time.perf_counter()
            # The DAG's default params (TrainParams()): the model the lifecycle serves.
            models = register_test_models(mlflow_server.url, params=({},), corrupt=False)
            version = models.versions[0]
            uri = f"models:/{models.name}/{version}"
            pipeline = registry.load_version(models.name, version, mlflow_server.url)
            hgb = pipeline.named_steps["model"]
            result["model"] = {
                "uri": uri,
                "trees": int(hgb.n_iter_),
                "leaves": int(sum(p.get_n_leaf_nodes() for it in hgb._predictors for p in it)),
                "setup_s": round(time.perf_counter() - t, 1),
            }
            result["predictor"] = predictor_timings(pipeline, models.holdout)
            ours_bodies, ref_bodies = _bodies(root / "bodies", models)
            env: dict[str, str | None] = {
                "DSLC_MLFLOW_TRACKING_URI": mlflow_server.url,
                "DSLC_LAKE_URL": f"file://{root / 'lake'}",
                "DSLC_HOME": str(root / "home"),
                "DSLC_SERVING_ADMIN_TOKEN": None,
            }
            # Both up (each idle while the other is loaded), so one check sees both.
            t = time.perf_counter()
            with ServingServer(
                uri, env=env, log_path=root / "ours.log", cmd_prefix=server_pin
            ) as ours:
                result["ours_start_s"] = round(time.perf_counter() - t, 1)
                t = time.perf_counter()
                with ReferenceServer(
                    uri, mlflow_server.url, root / "reference.log", server_pin
                ) as ref:
                    result["reference_start_s"] = round(time.perf_counter() - t, 1)
                    ours_url, ref_url = f"{ours.url}/predict", f"{ref.url}/invocations"
                    check = check_predictions(ours_url, ref_url, models, pipeline, CHECK_RECORDS)
                    result["ours"] = measure(ours_url, ours_bodies, levels, seconds, load_pin)
                    result["ours_batches"] = batch_rows(ours.url)
                    result["reference"] = measure(ref_url, ref_bodies, levels, seconds, load_pin)
    result["predictions"] = check
    result["compare"] = {
        size: compare(result["ours"][size], result["reference"][size]) for size in SIZES
    }
    result["meets_target"] = bool(
        check["identical"]
        and all(
            c["meets_rps"] and c["meets_p99"] and c["meets_p50"] and c["ours_ok"]
            for c in result["compare"].values()
        )
    )
    return result


def batch_rows(url: str) -> dict[str, float] | None:
    """Model calls and mean rows per call, from our /metrics (dslc_batch_rows histogram)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("dslc_batch_rows_sum", "dslc_batch_rows_count"):
            values[name] = float(value)
    calls = values.get("dslc_batch_rows_count")
    if not calls:
        return None
    return {"calls": calls, "mean_rows": round(values["dslc_batch_rows_sum"] / calls, 2)}


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    model, pin = result["model"], result["pinning"]
    where = (
        f"server on cpu {pin['server_cpu']}, wrk on cpu {pin['load_cpu']}"
        if pin["pinned"]
        else "NOT pinned"
    )
    lines = [
        f"{model['uri']} ({model['trees']} trees, {model['leaves']} leaves); {where}; "
        f"{result['run_seconds']} s per wrk run",
        "",
        f"{'size':<9}{'c':>3} | {'ours p50':>9}{'p99':>8}{'req/s':>9} | "
        f"{'ref p50':>9}{'p99':>8}{'req/s':>8} | {'req/s x':>8}{'p99 x':>7}{'p50 x':>7}",
    ]
    for size in result["sizes"]:
        for o, r in zip(result["ours"][size], result["reference"][size], strict=True):
            flag = "" if o["ok"] and r["ok"] else "  (errors)"
            lines.append(
                f"{size:<9}{o['connections']:>3} | {o['p50_ms']:>9.2f}{o['p99_ms']:>8.2f}"
                f"{o['requests_per_s']:>9.0f} | {r['p50_ms']:>9.2f}{r['p99_ms']:>8.2f}"
                f"{r['requests_per_s']:>8.0f} | {o['requests_per_s'] / r['requests_per_s']:>8.1f}"
                f"{o['p99_ms'] / r['p99_ms']:>7.3f}{o['p50_ms'] / r['p50_ms']:>7.3f}{flag}"
            )
    lines.append("")
    yes = {True: "yes", False: "NO"}
    for size, c in result["compare"].items():
        ob, rb = c["ours_max_rps_p99_under_50ms"], c["reference_max_rps_p99_under_50ms"]
        lines.append(
            f"{size}: max req/s at p99 < 50 ms: ours {_fmt(ob and ob['requests_per_s'], 0)}"
            f" (c={ob and ob['connections']}), reference {_fmt(rb and rb['requests_per_s'], 0)}"
            f" (c={rb and rb['connections']})"
        )
        lines.append(
            f"  req/s at c={c['high_c']} {c['rps_ratio_high_c']:.1f}x (>= {TARGET_RPS_RATIO:g}x: "
            f"{yes[c['meets_rps']]}); p99 at c={c['high_c']} {c['p99_ratio_high_c']:.3f}x "
            f"(<= {TARGET_P99_RATIO:g}x: {yes[c['meets_p99']]}); p50 at c={c['low_c']} "
            f"{c['p50_ratio_low_c']:.3f}x (<= {TARGET_P50_RATIO:g}x: {yes[c['meets_p50']]})"
        )
    p = result["predictions"]
    lines.append(
        f"identical predictions on {p['records']} records: {yes[p['identical']]} "
        f"(our probabilities bitwise = offline: {yes[p['ours_bitwise_equal']]}, "
        f"max diff {p['ours_max_abs_diff']:.3g}; our late = reference labels: "
        f"{yes[p['ours_late_equal_reference']]})"
    )
    t = result["predictor"]
    lines.append(
        f"predictor in process (1 thread): 1 row {t['predictor_1_rows_us']:.0f} us vs pipeline "
        f"{t['pipeline_1_rows_us']:.0f} us ({t['speedup_1_rows']:.0f}x); 100 rows "
        f"{t['predictor_100_rows_us']:.0f} us vs {t['pipeline_100_rows_us']:.0f} us "
        f"({t['speedup_100_rows']:.1f}x)"
    )
    if result.get("ours_batches"):
        b = result["ours_batches"]
        lines.append(f"our model calls: {b['calls']:.0f}, {b['mean_rows']} rows each on average")
    lines.append(f"targets met: {yes[result['meets_target']]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    result = run(small=args.small)
    print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
