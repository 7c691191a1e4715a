"""Each benchmark runs once on small inputs so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]


def _positive(x: Any) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_parse_bench_small() -> None:
    from bench import bench_parse

    result = bench_parse.run(small=True)

    assert result["benchmark"] == "B1 parse"
    assert result["small"] is True
    dag_files = sorted(p.name for p in (ROOT / "dags").glob("*.py") if p.name != "__init__.py")
    assert [f["file"] for f in result["files"]] == dag_files
    for f in result["files"]:
        assert f["dag_ids"], f"{f['file']}: no DAG parsed"
        assert f["same_shape"], f"{f['file']}: the reference does not have the DAG's shape"
        for which in ("ours", "reference"):
            s = f[which]
            for key in ("import_sdk_s", "import_dagbag_s", "first_parse_s", "later_parse_s"):
                assert _positive(s[key]), (f["file"], which, key, s[key])
            assert len(s["first_parse_runs_s"]) == result["rounds"] == 1
            assert s["bytecode_fresh"], f"{f['file']} {which}: parsed without its bytecode"
        for key in ("first_parse_ratio", "later_parse_ratio", "first_parse_cpu_ratio"):
            assert _positive(f[key]), (f["file"], key)
        # Behaviour, not timing: parsing our DAGs (and the reference) loads no heavy module.
        assert f["ours"]["heavy_modules"] == [], f["file"]
        assert f["reference"]["heavy_modules"] == []
    assert result["heavy_modules_loaded"] == []
    assert "pandas" in result["heavy_modules_checked"]
    assert "ingest.py" in bench_parse.table(result)
    json.dumps(result)  # what bench/__main__ writes


def test_validation_bench_small() -> None:
    bench_validation = pytest.importorskip("bench.bench_validation")

    result = bench_validation.run(small=True)

    assert result["small"] is True
    assert _positive(result["import_great_expectations_s"])
    assert [c["case"] for c in result["cases"]] == ["day", "10000_rows"]
    for case in result["cases"]:
        assert case["rows"] > 0 and case["expectations"] > 0
        for key in ("gx_s", "pandas_s", "ratio"):
            assert _positive(case[key]), (case["case"], key)
    assert isinstance(result["meets_target"], bool)
    json.dumps(result)


def test_runner_writes_results_with_provenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.__main__ as runner

    calls: list[bool] = []

    def run(small: bool) -> dict[str, Any]:
        calls.append(small)
        return {"benchmark": "fake", "value_s": 0.5}

    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    monkeypatch.setattr(runner, "ROOT", tmp_path.parent)
    runner.run_one("fake", SimpleNamespace(run=run), small=True)  # type: ignore[arg-type]

    assert calls == [True]
    written = json.loads((tmp_path / "fake.json").read_text())
    assert written["benchmark"] == "fake" and written["value_s"] == 0.5
    assert written["name"] == "fake" and written["small"] is True
    assert written["timestamp"].endswith("+00:00")
    assert "git_sha" in written
    assert written["machine"]["nproc"] >= 1
    assert written["machine"]["python"].startswith("3.")
    assert "value_s" in capsys.readouterr().out


def test_runner_skips_a_missing_bench(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.__main__ as runner

    monkeypatch.setattr(runner, "BENCHES", {"nothing": "bench.bench_does_not_exist"})
    assert runner.main([]) == 1
    out = capsys.readouterr().out
    assert "nothing: skipped (bench.bench_does_not_exist is not there yet)" in out


@pytest.mark.e2e
def test_stack_bench_small() -> None:
    from bench import bench_stack

    result = bench_stack.run(small=True)

    assert result["single_cold_state"] == "success"
    assert result["single_warm_state"] == "success"
    assert result["backfill_ok"] is True
    assert result["backfill_runs"] == bench_stack.SMALL_DAYS
    for key in ("up_s", "single_cold_run_s", "single_warm_run_s", "backfill_span_s"):
        assert result[key] > 0, key
    assert "backfill" in bench_stack.table(result)
    json.dumps(result)


def test_train_bench_small() -> None:
    from bench import bench_train

    result = bench_train.run(small=True)

    assert result["benchmark"] == "B5 train" and result["small"] is True
    for run in (result["cold"], result["warm"]):
        for key in ("fit_s", "train_step_s", "mlflow_in_train_s", "register_s"):
            assert _positive(float(run[key])), key
        assert 0 < run["mlflow_share"] < 1
        assert run["holdout_roc_auc"] > 0.5  # a model that learned something, not a stub
    assert "fit_s" in bench_train.table(result)
    json.dumps(result)


def test_drift_bench_small() -> None:
    from bench import bench_drift

    result = bench_drift.run(small=True)  # needs .venv-evidently (`make .venv-evidently`)

    assert result["benchmark"] == "B2 drift" and result["reference_rows"] == 20_000
    for key in ("fit_s", "naive_fit_s", "fit_speedup_vs_naive"):
        assert _positive(result[key]), key
    assert [c["rows"] for c in result["cases"]] == [5_000, 20_000]
    for case in result["cases"]:
        for key in ("ours_values_per_s", "floor_values_per_s", "naive_values_per_s", "peak_mib"):
            assert _positive(case[key]), (case["batch"], key)
        assert case["drifted_as_built"] and case["naive_psi_verdicts_agree"], case["batch"]
    ev = result["evidently"]
    assert ev["evidently_version"] == "0.7.23" and _positive(ev["evidently_run_s"])
    assert ev["verdicts_match"], ev["verdicts_differ"]
    assert result["meets_target"] is False  # never claimed on small inputs
    assert "Evidently" in bench_drift.table(result)
    json.dumps(result)


def test_serving_bench_small() -> None:
    from bench import bench_serving

    result = bench_serving.run(small=True)

    assert result["benchmark"] == "B3 serving" and result["small"] is True
    assert result["model"]["trees"] > 0
    for server in ("ours", "reference"):
        for size in bench_serving.SIZES:
            runs = result[server][size]
            assert [r["connections"] for r in runs] == list(bench_serving.SMALL_CONCURRENCY)
            for r in runs:
                assert r["ok"], (server, size, r["errors"])  # every answer a 2xx, no timeouts
                assert r["requests"] > 0
                for key in ("requests_per_s", "p50_ms", "p99_ms"):
                    assert _positive(r[key]), (server, size, key, r[key])
                assert r["p50_ms"] <= r["p99_ms"]
    check = result["predictions"]
    assert check["records"] == bench_serving.CHECK_RECORDS
    assert check["ours_bitwise_equal"] and check["ours_late_equal_reference"], check
    assert check["identical"] is True
    assert set(result["compare"]) == set(bench_serving.SIZES)
    for t in ("predictor_1_rows_us", "pipeline_1_rows_us", "predictor_100_rows_us"):
        assert _positive(result["predictor"][t]), t
    assert isinstance(result["meets_target"], bool)
    assert "identical predictions" in bench_serving.table(result)
    json.dumps(result)


@pytest.mark.e2e
@pytest.mark.distributed
def test_distributed_bench_small() -> None:
    from bench import bench_distributed as b7

    result = b7.run(small=True)

    assert result["benchmark"] == "B7 distributed" and result["days"] == b7.SMALL_DAYS
    for name, executor, database in (
        ("embedded", "LocalExecutor", "sqlite"),
        ("distributed", "CeleryExecutor", "postgresql+psycopg2"),
    ):
        stack = result[name]
        assert (stack["executor"], stack["database"]) == (executor, database), name
        backfill = stack["ingest_backfill"]
        assert backfill["ok"] is True and backfill["states"] == ["success"], name
        assert backfill["runs"] == b7.SMALL_DAYS, name
        assert set(backfill["task_median_s"]) == {
            "wait_for_landing",
            "extract",
            "validate",
            "build_features",
        }, name
        # Every task after the first of a run has a gap: 3 per 4-task ingest run.
        assert backfill["gaps"] == 3 * b7.SMALL_DAYS, name
        assert stack["train"]["state"] == "success", name
        chain = stack["chain"]
        assert chain["states"] == ["success"] * b7.SMALL_CHAIN_RUNS, name
        assert chain["tasks"] == 10 and chain["gaps"] == 9 * b7.SMALL_CHAIN_RUNS, name
        for key in ("gap_median_s", "gap_p90_s", "gap_mean_s", "notice_median_s"):
            assert isinstance(chain[key], float), (name, key)
        assert len(chain["gap_values_s"]) == chain["gaps"], name
        assert chain["gap_median_s"] <= chain["gap_p90_s"], name
        assert stack["bounds"]["binding"] in ("latency", "slots", "cpu"), name
        # The stack's own CPU is counted where its tasks run.
        assert backfill["task_cpu_s"] > 0 and backfill["stack_cpu_s"] >= backfill["task_cpu_s"]
    assert result["distributed"]["lake"] == "s3" and result["embedded"]["lake"] == "file"
    assert result["distributed"]["task_slots"] == 4  # 2 workers x worker_concurrency 2
    assert result["meets_target"] is False  # never claimed on small inputs
    assert "Workers:" in result["scaling"]
    assert "no-op chain run" in b7.table(result)
    json.dumps(result)


def test_distributed_bench_keeps_its_dag_out_of_dags(tmp_path: Path) -> None:
    from bench import bench_distributed as b7

    root = b7.project_root(tmp_path / "project")

    linked = sorted(p.name for p in (root / "dags").iterdir())
    real = sorted(p.name for p in (ROOT / "dags").glob("*.py"))
    assert linked == sorted([*real, b7.CHAIN_FILE.name])
    for name in real:
        assert (root / "dags" / name).resolve() == (ROOT / "dags" / name).resolve()
    assert (root / "plugins").resolve() == (ROOT / "plugins").resolve()
    assert b7.CHAIN_FILE.name not in real  # the project's dags/ never holds the chain
