"""Training: assemble a time-split window of feature partitions, fit the model, log it.

``assemble`` reads only published feature partitions and writes a split manifest to the lake
(``training/<dataset>/run=<id>/split.json``) naming each partition with its content hash and
split; ``train`` reads exactly those partitions back (refusing any whose hash changed), fits a
seeded pipeline and hands the MLflow side to :mod:`dslc.model.registry`. The same window and params
give the same model and metrics.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from dslc.errors import UserError
from dslc.lake import Lake, day
from dslc.usecases.flights.datasets import FEATURES

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

ZONE = "features"
SPLITS = ("train", "valid", "holdout")
MODEL_FEATURES = [*FEATURES.categorical, *FEATURES.numeric]
# What skops must be told to trust to load our pipeline, beyond its built-in safe set
# (skops.io.get_untrusted_types on a dumped pipeline; tests/unit/test_training.py checks it).
# Keeping skops, with an explicit list, means loading a model never runs arbitrary pickle code.
SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


class TrainingError(UserError):
    """A training run the user can fix (bad params, no data); the message says how."""


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


def resolve_window(lake: Lake, end: str | None, days: int, dataset: str) -> tuple[str, str]:
    """The window's (first, last) day; ``end`` defaults to the latest published day."""
    if days < 1:
        raise TrainingError(f"param 'window_days'={days} must be at least 1")
    if end in (None, ""):
        published = lake.published_days(ZONE, dataset)
        if not published:
            raise TrainingError(
                f"no published feature partitions at {lake.uri(ZONE, dataset)}: run `ingest` "
                "(or `dslc backfill ingest`) first"
            )
        end = published[-1]
    try:
        last = dt.date.fromisoformat(day(end))
    except ValueError:
        raise TrainingError(
            f"param 'window_end'={end!r} is not a date in YYYY-MM-DD form"
        ) from None
    first = last - dt.timedelta(days=days - 1)
    return first.isoformat(), last.isoformat()


def _split_of(index: int, n: int, valid_days: int, holdout_days: int) -> str:
    if index >= n - holdout_days:
        return "holdout"
    if index >= n - holdout_days - valid_days:
        return "valid"
    return "train"


def split_key(dataset: str, dag_run_id: str) -> str:
    """Where a run's split manifest lives in the lake."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dag_run_id)[:80]
    digest = hashlib.sha256(dag_run_id.encode()).hexdigest()[:8]
    return f"training/{dataset}/run={safe}-{digest}"


def assemble(
    lake: Lake,
    *,
    dag_run_id: str,
    window_end: str | None,
    window_days: int,
    params: TrainParams,
    min_days: int,
    min_rows: int,
    dataset: str = "flights",
) -> dict[str, Any]:
    """Pick the published partitions in the window, split them by date, write the manifest."""
    first, last = resolve_window(lake, window_end, window_days, dataset)
    published = [d for d in lake.published_days(ZONE, dataset) if first <= d <= last]
    wanted = [
        (dt.date.fromisoformat(first) + dt.timedelta(days=i)).isoformat()
        for i in range(window_days)
    ]
    missing = [d for d in wanted if d not in set(published)]
    if not published:
        raise TrainingError(
            f"no published feature partitions in the window {first}..{last} at "
            f"{lake.uri(ZONE, dataset)}: ingest those days first, or pick a window with data "
            "(params 'window_end' and 'window_days')"
        )
    if missing:
        log.warning(
            "%d of %d days in %s..%s have no features: %s",
            len(missing),
            window_days,
            first,
            last,
            ", ".join(missing),
        )
    need = min_days + params.valid_days + params.holdout_days
    if len(published) < need:
        raise TrainingError(
            f"the window {first}..{last} has {len(published)} days of features; at least "
            f"{need} are needed ({min_days} to train + {params.valid_days} valid + "
            f"{params.holdout_days} holdout). Widen 'window_days' or ingest the missing days."
        )
    partitions: list[dict[str, Any]] = []
    for i, ds in enumerate(published):
        key = Lake.partition(ZONE, dataset, ds)
        manifest = lake.manifest(key)
        assert manifest is not None  # published_days only lists partitions with a manifest
        partitions.append(
            {
                "ds": ds,
                "partition": key,
                "content_hash": manifest.content_hash,
                "rows": manifest.rows,
                "split": _split_of(i, len(published), params.valid_days, params.holdout_days),
            }
        )
    rows = {s: sum(int(p["rows"]) for p in partitions if p["split"] == s) for s in SPLITS}
    if rows["train"] < min_rows:
        raise TrainingError(
            f"the window {first}..{last} has {rows['train']} training rows, fewer than the "
            f"minimum {min_rows}: widen 'window_days'"
        )
    split = {
        "dataset": dataset,
        "window": {"first": first, "last": last, "days": window_days},
        "dag_run_id": dag_run_id,
        "missing_days": missing,
        "rows": rows,
        "partitions": partitions,
    }
    key = split_key(dataset, dag_run_id)
    lake.write_text(json.dumps(split, indent=2, sort_keys=True), key, "split.json")
    log.info(
        "split %s..%s: %s rows, %d missing days -> %s",
        first,
        last,
        rows,
        len(missing),
        lake.uri(key, "split.json"),
    )
    return {
        "split": f"{key}/split.json",
        "window": split["window"],
        "rows": rows,
        "missing_days": len(missing),
    }


def read_split(lake: Lake, split_path: str) -> dict[str, Any]:
    """The split manifest written by :func:`assemble`."""
    loaded: dict[str, Any] = json.loads(lake.read_text(split_path))
    return loaded


def load_frame(lake: Lake, split: dict[str, Any], which: str) -> pd.DataFrame:
    """The rows of one split, refusing partitions republished since ``assemble``."""
    import pandas as pd

    frames = []
    for p in split["partitions"]:
        if p["split"] != which:
            continue
        manifest = lake.manifest(p["partition"])
        if manifest is None or manifest.content_hash != p["content_hash"]:
            raise TrainingError(
                f"{p['partition']} changed since the split was assembled "
                f"({p['content_hash']} -> {manifest.content_hash if manifest else 'gone'}): "
                "clear the run from `assemble`"
            )
        frames.append(lake.read_partition(p["partition"]))
    return pd.concat(frames, ignore_index=True)


def build_pipeline(params: TrainParams) -> Pipeline:
    """Ordinal-encoded categoricals (native categorical splits) + numerics -> gradient boosting."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cat = list(FEATURES.categorical)
    prep = ColumnTransformer(
        [
            # Unseen categories at scoring time become missing, which the model handles.
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    dtype=np.float64,
                ),
                cat,
            ),
            ("num", "passthrough", list(FEATURES.numeric)),
        ],
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        categorical_features=list(range(len(cat))),
        early_stopping=False,
        random_state=params.seed,
    )
    return Pipeline([("prep", prep), ("model", model)])


def features_of(df: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, in order (strings for categoricals, floats for numerics)."""
    out = df.loc[:, MODEL_FEATURES].copy()
    for col in FEATURES.numeric:
        out[col] = out[col].astype("float64")
    for col in FEATURES.categorical:
        out[col] = out[col].astype("object")
    return out


def fit(train: pd.DataFrame, params: TrainParams) -> Pipeline:
    """Fit the pipeline on the training rows (deterministic for the same rows and params)."""
    pipe = build_pipeline(params)
    pipe.fit(features_of(train), train[FEATURES.label].to_numpy())
    return pipe


def train(
    lake: Lake,
    *,
    split_path: str,
    params: TrainParams,
    dag_run_id: str,
    lineage: dict[str, str],
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Fit on the split's train rows and log the run (idempotent per DAG run id)."""
    from dslc.model import evaluation, registry

    split = read_split(lake, split_path)
    t0 = time.perf_counter()
    train_df = load_frame(lake, split, "train")
    valid_df = load_frame(lake, split, "valid")
    t_fit = time.perf_counter()
    pipe = fit(train_df, params)
    fit_s = time.perf_counter() - t_fit
    valid_metrics = evaluation.metrics(
        valid_df[FEATURES.label].to_numpy(), pipe.predict_proba(features_of(valid_df))[:, 1]
    )
    t_ml = time.perf_counter()
    logged = registry.log_training_run(
        dag_run_id=dag_run_id,
        pipeline=pipe,
        params={
            **params.to_dict(),
            "window_first": split["window"]["first"],
            "window_last": split["window"]["last"],
            "window_days": split["window"]["days"],
            "train_rows": len(train_df),
            "valid_rows": len(valid_df),
        },
        metrics={"fit_seconds": fit_s, **{f"valid_{k}": v for k, v in valid_metrics.items()}},
        split=split,
        input_example=features_of(train_df.head(5)),
        lineage=lineage,
        tracking_uri=tracking_uri,
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


def assemble_run(
    lake: Lake, params: dict[str, Any], *, dag_run_id: str, run_type: str
) -> dict[str, Any]:
    """The `assemble` task: check the DAG's params, split the window, record why we train.

    Returns the split location, the checked config and the lineage tags for the later tasks.
    """
    from dslc.settings import get_settings

    settings = get_settings()
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
        params=train_params,
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
    config = {
        "train": train_params.to_dict(),
        "tolerance": float(tolerance),
        "force_promote": bool(params.get("force_promote", False)),
        "model_name": settings.model_name,
    }
    return {**split, "config": config, "lineage": tags}
