"""B5: MLflow's share of the `train` step (logging, model save, registration) vs the bare fit.

In one process: build a lake of real feature partitions (the ingest functions), start a real
MLflow server on a free loopback port (temp SQLite + artifacts), then run the train DAG's task
functions in order (assemble -> train -> evaluate -> register -> promote) twice with different
DAG run ids: the first pays the imports (as a fresh task process would), the second is warm.
Reports the bare fit, the MLflow time inside `train` and in `register`, the share, the
holdout AUC, per-task times and peak RSS. Target: MLflow <= 10% of the train step.

`train` opens its MLflow run (params, tags, split) in a thread while the model fits: the MLflow
time counted is the time the step waits for MLflow after the fit (saving the model with skops,
uploading it, finishing the run); ``mlflow_open_s`` is what the opening took meanwhile.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from dslc.model.spec import features_of
from dslc.model.split import load_frame, read_split

TARGET_SHARE = 0.10


def _build_lake(root: Path, days: int) -> tuple[Any, float]:
    from dslc.data import ingest, sources
    from dslc.lake import Lake

    lake = Lake(f"file://{root / 'lake'}")
    first = dt.date(2013, 1, 1)
    last = first + dt.timedelta(days=days - 1)
    t = time.perf_counter()
    sources.replay(lake, first, last)
    for d in sources.days(first, last):
        ingest.extract_day(lake, d.isoformat())
        ingest.validate_day(lake, d.isoformat())
        ingest.build_features(lake, d.isoformat())
    return lake, time.perf_counter() - t


def _one_run(lake: Any, dag_run_id: str, window_days: int) -> dict[str, Any]:
    from dslc.model import evaluation, registry, training
    from dslc.settings import get_settings

    times: dict[str, float] = {}
    t = time.perf_counter()
    assembled = training.assemble_run(
        lake, {"window_days": window_days}, dag_run_id=dag_run_id, run_type="manual"
    )
    times["assemble_s"] = time.perf_counter() - t
    t = time.perf_counter()
    trained = training.train(
        lake,
        split_path=assembled["split"],
        params=training.TrainParams(**assembled["config"]["train"]),
        dag_run_id=dag_run_id,
        lineage=assembled["lineage"],
    )
    times["train_task_s"] = time.perf_counter() - t
    t = time.perf_counter()
    evaluated = evaluation.evaluate(
        lake,
        split_path=assembled["split"],
        run_id=trained["run_id"],
        model_name=get_settings().model_name,
        force_promote=False,
    )
    times["evaluate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    registered = registry.register(
        lake,
        split_path=assembled["split"],
        run_id=trained["run_id"],
        model_name=get_settings().model_name,
        lineage=assembled["lineage"],
    )
    times["register_s"] = time.perf_counter() - t
    t = time.perf_counter()
    decision = registry.promote(
        get_settings().model_name,
        registered["version"],
        evaluated,
        tolerance=0.01,
        floor=0.6,
        force=False,
    )
    times["promote_s"] = time.perf_counter() - t
    # The reference profile is computed inside `register` but is not MLflow overhead.
    register_mlflow_s = times["register_s"] - registered["profile_s"]
    mlflow_s = trained["mlflow_s"] + register_mlflow_s
    step_s = trained["train_s"] + register_mlflow_s
    return {
        **{k: round(v, 3) for k, v in times.items()},
        "rows": assembled["rows"],
        "fit_s": trained["fit_s"],
        "train_step_s": trained["train_s"],
        "mlflow_in_train_s": trained["mlflow_s"],
        "mlflow_open_s": trained["mlflow_open_s"],
        "register_mlflow_s": round(register_mlflow_s, 3),
        "profile_s": registered["profile_s"],
        "mlflow_s": round(mlflow_s, 3),
        **_save_formats(lake, assembled),
        "mlflow_share": round(mlflow_s / step_s, 4),
        "all_tasks_s": round(sum(times.values()), 3),
        "holdout_roc_auc": evaluated["challenger"]["roc_auc"],
        "valid_roc_auc": trained["valid_roc_auc"],
        "promoted": decision["promote"],
    }


def _save_formats(lake: Any, assembled: dict[str, Any]) -> dict[str, float]:
    """What skops (our choice) costs over cloudpickle to save the same fitted pipeline."""
    import mlflow.sklearn

    from dslc.model import registry, training

    split = read_split(lake, assembled["split"])
    train = load_frame(lake, split, "train")
    pipe = training.fit(train, training.TrainParams(**assembled["config"]["train"]))
    example = features_of(train.head(5))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        registry.save_model(pipe, Path(tmp) / "skops", example)
        out["save_skops_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        mlflow.sklearn.save_model(
            pipe,
            str(Path(tmp) / "pickle"),
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
        )
        out["save_cloudpickle_s"] = round(time.perf_counter() - t, 3)
    return out


def run(small: bool = False, days: int | None = None) -> dict[str, Any]:
    from tests.integration.mlflow_server import MlflowServer
    from tests.support import dslc_env

    days = days or (14 if small else 60)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="dslc-bench-train-") as tmp:
        root = Path(tmp)
        lake, build_s = _build_lake(root, days)
        with (
            MlflowServer(root / "mlflow") as server,
            dslc_env(
                DSLC_LAKE_URL=lake.url,
                DSLC_MLFLOW_TRACKING_URI=server.url,
                DSLC_TRAIN_MIN_ROWS="1000",
            ),
        ):
            cold = _one_run(lake, "bench__cold", days)
            warm = _one_run(lake, "bench__warm", days)
    return {
        "benchmark": "B5 train",
        "small": small,
        "window_days": days,
        "build_lake_s": round(build_s, 2),
        "cold": cold,
        "warm": warm,
        "mlflow_share": warm["mlflow_share"],
        "target_share": TARGET_SHARE,
        "meets_target": warm["mlflow_share"] <= TARGET_SHARE,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python": platform.python_version(),
    }


def table(result: dict[str, Any]) -> str:
    keys = [
        "fit_s",
        "train_step_s",
        "mlflow_in_train_s",
        "mlflow_open_s",
        "register_s",
        "profile_s",
        "register_mlflow_s",
        "save_skops_s",
        "save_cloudpickle_s",
        "mlflow_share",
        "assemble_s",
        "train_task_s",
        "evaluate_s",
        "promote_s",
        "all_tasks_s",
        "holdout_roc_auc",
    ]
    lines = [f"{result['window_days']} days, rows {result['warm']['rows']}", ""]
    lines.append(f"{'':<20}{'cold':>10}{'warm':>10}")
    for k in keys:
        lines.append(f"{k:<20}{result['cold'][k]:>10.3f}{result['warm'][k]:>10.3f}")
    lines.append(
        f"\nMLflow share (warm) {result['mlflow_share']:.1%}, target <= "
        f"{result['target_share']:.0%}: {'met' if result['meets_target'] else 'NOT met'}; "
        f"max RSS {result['max_rss_mib']:.0f} MiB"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    res = run(small="--small" in sys.argv)
    print(table(res))
    print(json.dumps(res, indent=2))
