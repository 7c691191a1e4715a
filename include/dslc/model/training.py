"""Training: check the run's params, fit the use case's pipeline on the split, log it.

``assemble_run`` checks the params and cuts the window (:mod:`dslc.model.split`); ``train``
reads exactly the split's partitions back, fits a seeded pipeline and hands the MLflow side to
:mod:`dslc.model.registry`. The same window and params give the same model and metrics.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from dslc.model.spec import build_pipeline, features_of, label_of
from dslc.model.split import TrainingError, assemble, load_frame, read_split

if TYPE_CHECKING:
    import pandas as pd

    from dslc.lake import Lake
    from dslc.model.results import Assembled, Logged, TrainConfig, Trained

log = logging.getLogger(__name__)

__all__ = [
    "TrainParams",
    "TrainingError",
    "assemble_run",
    "fit",
    "lineage",
    "nothing_to_do",
    "train",
]


@dataclass(frozen=True)
class TrainParams:
    """Model hyperparameters and split sizes; every field is a param of the `train` DAG."""

    learning_rate: float = 0.1
    max_iter: int = 200
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 42
    valid_days: int = 3
    holdout_days: int = 3

    _BOUNDS = {
        "learning_rate": (1e-4, 1.0),
        "max_iter": (1, 5000),
        "max_leaf_nodes": (2, 4096),
        "min_samples_leaf": (1, 100_000),
        "l2_regularization": (0.0, 1e6),
        "seed": (0, 2**31 - 1),
        "valid_days": (1, 60),
        "holdout_days": (1, 60),
    }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainParams:
        """Build from the DAG's params (extra keys ignored), naming any bad param."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in params or params[f.name] is None:
                continue
            raw = params[f.name]
            kind = float if f.type in ("float", float) else int
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise TrainingError(
                    f"param {f.name!r}={raw!r} is not a {kind.__name__}; "
                    "trigger the run again with a number"
                ) from None
            lo, hi = cls._BOUNDS[f.name]
            if not lo <= value <= hi:
                raise TrainingError(
                    f"param {f.name!r}={raw!r} is out of range: it must be between {lo} and {hi}"
                )
            values[f.name] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(train: pd.DataFrame, params: TrainParams) -> Any:
    """Fit the pipeline on the training rows (deterministic for the same rows and params)."""
    pipe = build_pipeline(params.to_dict())
    pipe.fit(features_of(train), label_of(train))
    return pipe


def train(
    lake: Lake,
    *,
    split_path: str,
    params: TrainParams,
    dag_run_id: str,
    lineage: dict[str, str],
    tracking_uri: str | None = None,
) -> Trained:
    """Fit on the split's train rows and log the run (idempotent per DAG run id)."""
    from dslc.model import evaluation, registry

    split = read_split(lake, split_path)
    t0 = time.perf_counter()
    train_df = load_frame(lake, split, "train")
    valid_df = load_frame(lake, split, "valid")
    # The MLflow run opens (and takes the params, tags and split) while the model fits; only
    # saving the model and finishing the run are left once it is fitted.
    opened_in: list[float] = []

    def open_run(**kwargs: Any) -> Logged:
        t = time.perf_counter()
        try:
            return registry.open_training_run(**kwargs)
        finally:
            opened_in.append(time.perf_counter() - t)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        opening = pool.submit(
            open_run,
            dag_run_id=dag_run_id,
            params={
                **params.to_dict(),
                "window_first": split["window"]["first"],
                "window_last": split["window"]["last"],
                "window_days": split["window"]["days"],
                "train_rows": len(train_df),
                "valid_rows": len(valid_df),
            },
            split=split,
            lineage=lineage,
            tracking_uri=tracking_uri,
        )
        t_fit = time.perf_counter()
        try:
            pipe = fit(train_df, params)
        except Exception:
            if opening.exception() is None:
                registry.fail_training_run(opening.result())
            raise
        fit_s = time.perf_counter() - t_fit
        valid_metrics = evaluation.metrics(
            label_of(valid_df), pipe.predict_proba(features_of(valid_df))[:, 1]
        )
        t_ml = time.perf_counter()  # MLflow time the step waits for, from here
        opened = opening.result()
    logged = registry.log_model(
        opened,
        pipeline=pipe,
        metrics={"fit_seconds": fit_s, **{f"valid_{k}": v for k, v in valid_metrics.items()}},
        input_example=features_of(train_df.head(5)),
    )
    mlflow_s = time.perf_counter() - t_ml
    total_s = time.perf_counter() - t0
    log.info(
        "fit %.2f s, MLflow %.2f s of %.2f s; valid ROC AUC %.4f; run %s",
        fit_s,
        mlflow_s,
        total_s,
        valid_metrics["roc_auc"],
        logged["run_id"],
    )
    return {
        **logged,
        "fit_s": round(fit_s, 3),
        "mlflow_s": round(mlflow_s, 3),
        "mlflow_open_s": round(opened_in[0], 3),
        "train_s": round(total_s, 3),
        "valid_roc_auc": round(valid_metrics["roc_auc"], 5),
    }


def lineage(
    *,
    dag_run_id: str,
    run_type: str,
    reason: str | None,
    report_uri: str | None = None,
    drifted: list[str] | None = None,
) -> dict[str, str]:
    """The tags that say where a model came from and why it was trained."""
    from dslc.model.registry import git_sha

    out = {
        "dslc.git_sha": git_sha(),
        "dslc.trigger_reason": (reason or "").strip() or f"{run_type} run",
        "dslc.run_type": run_type,
        "dslc.source_dag_run_id": dag_run_id,
    }
    if report_uri:
        out["dslc.drift_report"] = report_uri
    if drifted:
        out["dslc.drifted_features"] = ",".join(drifted)
    return out


def nothing_to_do(
    published: list[str], champion_window: str | None, *, where: str, model_name: str
) -> str | None:
    """Why a scheduled run has nothing to train on, or None when it has work.

    ``published``: the published feature days, sorted; ``champion_window``: the champion's
    ``dslc.window`` tag (``first..last``), None without a champion; ``where``: the feature
    table's URI, for the message.
    """
    if not published:
        return (
            f"no data yet: no published feature partitions at {where}; the next scheduled run "
            "looks again (run `ingest`, or `dslc backfill ingest`, to publish some)"
        )
    if champion_window:
        window_end = champion_window.rsplit("..", 1)[-1]
        if published[-1] <= window_end:
            return (
                f"nothing new since the champion's window: the latest published feature day "
                f"{published[-1]} is inside the window {champion_window} of the champion of "
                f"{model_name!r}; trigger `train` by hand to retrain anyway"
            )
    return None


def _skip_unless_work(lake: Lake, *, dataset: str, model_name: str) -> None:
    """Raise :class:`~dslc.errors.NothingToDo` when a scheduled run has nothing to train on."""
    from dslc.errors import NothingToDo
    from dslc.model import registry
    from dslc.model.split import ZONE

    published = lake.published_days(ZONE, dataset)
    window = None
    if published:  # no data: no need to ask MLflow
        champion = registry.get_alias(registry.client(), model_name, "champion")
        window = (champion.tags or {}).get("dslc.window") if champion is not None else None
    why = nothing_to_do(published, window, where=lake.uri(ZONE, dataset), model_name=model_name)
    if why is not None:
        raise NothingToDo(why)


def assemble_run(
    lake: Lake, params: dict[str, Any], *, dag_run_id: str, run_type: str
) -> Assembled:
    """The `assemble` task: check the DAG's params, split the window, record why we train.

    A ``scheduled`` run with no data yet, or none newer than the champion's window, raises
    :class:`~dslc.errors.NothingToDo` (the task skips); any other run type with bad input fails.
    Returns the split location, the checked config and the lineage tags for the later tasks.
    """
    from dslc.settings import get_settings

    settings = get_settings()
    if run_type == "scheduled":
        _skip_unless_work(lake, dataset=settings.dataset, model_name=settings.model_name)
    train_params = TrainParams.from_params(params)
    tolerance = params.get("tolerance", settings.promote_tolerance)
    if tolerance is None or not 0 <= float(tolerance) <= 1:
        raise TrainingError(f"param 'tolerance'={tolerance!r} must be between 0 and 1")
    raw_days = params.get("window_days") or settings.train_window_days
    try:
        window_days = int(raw_days)
    except (TypeError, ValueError):
        raise TrainingError(f"param 'window_days'={raw_days!r} is not a whole number") from None
    split = assemble(
        lake,
        dag_run_id=dag_run_id,
        window_end=params.get("window_end"),
        window_days=window_days,
        valid_days=train_params.valid_days,
        holdout_days=train_params.holdout_days,
        min_days=settings.train_min_days,
        min_rows=settings.train_min_rows,
        dataset=settings.dataset,
    )
    tags = lineage(
        dag_run_id=dag_run_id,
        run_type=run_type,
        reason=params.get("reason"),
        report_uri=params.get("report_uri"),
        drifted=params.get("drifted_features"),
    )
    config: TrainConfig = {
        "train": train_params.to_dict(),
        "tolerance": float(tolerance),
        "force_promote": bool(params.get("force_promote", False)),
        "model_name": settings.model_name,
    }
    return {**split, "config": config, "lineage": tags}
