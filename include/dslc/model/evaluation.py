"""Evaluation: challenger and champion scored on the same holdout, overall and per slice.

The metrics are pure functions of labels and predicted probabilities; :func:`evaluate` is the
task's edge (lake + registry). Slices are the use case's (:class:`dslc.usecase.Slice`: e.g.
every origin airport and the top carriers by holdout volume); the promotion gate that reads
the result is :mod:`dslc.model.gate`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dslc.errors import UserError
from dslc.model.spec import features_of, label_of
from dslc.model.split import load_frame, read_split

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from dslc.lake import Lake
    from dslc.model.results import Evaluated, Headline
    from dslc.usecase import Slice

log = logging.getLogger(__name__)

MIN_SLICE_ROWS = 200
# A slice "collapses" when its ROC AUC drops by more than this against the champion's on the
# same slice (or, with no champion, falls to chance level).
SLICE_COLLAPSE_DROP = 0.05
CHANCE_AUC = 0.5


class EvaluationError(UserError):
    """Evaluation cannot be trusted (e.g. the champion cannot be loaded); says what to do."""


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier, label rate, mean prediction and calibration gap."""
    import numpy as np
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    y = np.asarray(y, dtype="int64")
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    both = 0 < y.sum() < len(y)
    label_rate, mean_pred = float(y.mean()), float(p.mean())
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "label_rate": label_rate,
        "mean_pred": mean_pred,
        "calibration_gap": mean_pred - label_rate,
        "n": float(len(y)),
    }


def slices(df: pd.DataFrame, spec: Sequence[Slice] | None = None) -> dict[str, pd.Series]:
    """Boolean masks per slice value (``column=value`` -> mask): every value of a column, or
    its ``top`` values by row count."""
    if spec is None:
        from dslc.settings import get_usecase

        spec = get_usecase().slices
    out: dict[str, pd.Series] = {}
    for sl in spec:
        col = df[sl.column]
        if sl.top is None:
            values = sorted(col.unique())
        else:
            counts = col.value_counts().sort_index(kind="stable")
            values = sorted(counts.sort_values(ascending=False, kind="stable").index[: sl.top])
        for v in values:
            out[f"{sl.column}={v}"] = col == v
    return out


def score(df: pd.DataFrame, p: np.ndarray, spec: Sequence[Slice] | None = None) -> dict[str, Any]:
    """Overall and per-slice metrics of predictions ``p`` for the rows of ``df``."""
    y = label_of(df)
    per_slice = {}
    for name, mask in slices(df, spec).items():
        m = mask.to_numpy()
        per_slice[name] = metrics(y[m], p[m])
    return {"overall": metrics(y, p), "slices": per_slice}


def collapsed_slices(
    challenger: dict[str, Any], champion: dict[str, Any] | None, drop: float = SLICE_COLLAPSE_DROP
) -> list[str]:
    """Slices (with enough rows) where the challenger's ROC AUC collapsed."""
    import math

    out = []
    for name, m in challenger["slices"].items():
        auc = m["roc_auc"]
        if m["n"] < MIN_SLICE_ROWS or math.isnan(auc):
            continue
        ref = (champion or {}).get("slices", {}).get(name)
        if ref is not None and not math.isnan(ref["roc_auc"]):
            if auc < ref["roc_auc"] - drop:
                out.append(f"{name} ({auc:.3f} vs champion {ref['roc_auc']:.3f})")
        elif auc <= CHANCE_AUC:
            out.append(f"{name} ({auc:.3f}, chance level)")
    return out


def evaluate(
    lake: Lake,
    *,
    split_path: str,
    run_id: str,
    model_name: str,
    force_promote: bool,
    tracking_uri: str | None = None,
) -> Evaluated:
    """Score challenger and champion on the holdout; log both to the run; return a summary."""
    from dslc.model import registry

    split = read_split(lake, split_path)
    holdout = load_frame(lake, split, "holdout")
    x = features_of(holdout)
    challenger = registry.load_run_model(run_id, tracking_uri=tracking_uri)
    result: dict[str, Any] = {"challenger": score(holdout, challenger.predict_proba(x)[:, 1])}
    champ_version, champ_model, note = registry.load_champion(
        model_name, force=force_promote, tracking_uri=tracking_uri
    )
    result["champion_version"] = champ_version
    result["champion_note"] = note
    if champ_model is not None:
        result["champion"] = score(holdout, champ_model.predict_proba(x)[:, 1])
    result["collapsed_slices"] = collapsed_slices(result["challenger"], result.get("champion"))
    result["holdout"] = {"rows": len(holdout), "days": sorted(holdout["ds"].unique().tolist())}
    registry.log_evaluation(run_id, result, tracking_uri=tracking_uri)
    summary: Evaluated = {
        "run_id": run_id,
        "challenger": _headline(result["challenger"]),
        "champion": _headline(result["champion"]) if "champion" in result else None,
        "champion_version": champ_version,
        "champion_note": note,
        "collapsed_slices": result["collapsed_slices"],
    }
    log.info("evaluation: %s", json.dumps(summary, sort_keys=True))
    return summary


def _headline(scored: dict[str, Any]) -> Headline:
    o = scored["overall"]
    return {
        "roc_auc": round(float(o["roc_auc"]), 5),
        "pr_auc": round(float(o["pr_auc"]), 5),
        "log_loss": round(float(o["log_loss"]), 5),
        "brier": round(float(o["brier"]), 5),
    }
