"""Evaluation: challenger and champion scored on the same holdout, overall and per slice,
and the promotion gate that reads the result.

The metrics are pure functions of labels and predicted probabilities; :func:`evaluate` is the
task's edge (lake + registry). Slices are the origin airports and the top carriers by
holdout volume.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dslc.errors import UserError
from dslc.usecases.flights.datasets import FEATURES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from dslc.lake import Lake

log = logging.getLogger(__name__)

TOP_CARRIERS = 5
MIN_SLICE_ROWS = 200
# A slice "collapses" when its ROC AUC drops by more than this against the champion's on the
# same slice (or, with no champion, falls to chance level).
SLICE_COLLAPSE_DROP = 0.05
CHANCE_AUC = 0.5


class EvaluationError(UserError):
    """Evaluation cannot be trusted (e.g. the champion cannot be loaded); says what to do."""


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier, late rate, mean prediction and calibration gap."""
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
    late_rate, mean_pred = float(y.mean()), float(p.mean())
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "late_rate": late_rate,
        "mean_pred": mean_pred,
        "calibration_gap": mean_pred - late_rate,
        "n": float(len(y)),
    }


def slices(df: pd.DataFrame, top_carriers: int = TOP_CARRIERS) -> dict[str, pd.Series]:
    """Boolean masks by origin and for the top carriers by row count (name -> mask)."""
    out = {f"origin={o}": df["origin"] == o for o in sorted(df["origin"].unique())}
    counts = df["carrier"].value_counts().sort_index(kind="stable")
    top = counts.sort_values(ascending=False, kind="stable").index[:top_carriers]
    for c in sorted(top):
        out[f"carrier={c}"] = df["carrier"] == c
    return out


def score(df: pd.DataFrame, p: np.ndarray, top_carriers: int = TOP_CARRIERS) -> dict[str, Any]:
    """Overall and per-slice metrics of predictions ``p`` for the rows of ``df``."""
    y = df[FEATURES.label].to_numpy()
    per_slice = {}
    for name, mask in slices(df, top_carriers).items():
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


@dataclass(frozen=True)
class Decision:
    """The promotion gate's answer."""

    promote: bool
    reason: str


def decide(evaluation: dict[str, Any], *, tolerance: float, floor: float, force: bool) -> Decision:
    """The gate: not worse than the champion by more than ``tolerance``, above ``floor``, no
    slice collapsed; or ``force``."""
    ch = evaluation["challenger"]["roc_auc"]
    champ = evaluation.get("champion")
    problems = []
    if not ch >= floor:
        problems.append(f"holdout ROC AUC {ch:.4f} is below the floor {floor:.4f}")
    if champ is not None and ch < champ["roc_auc"] - tolerance:
        problems.append(
            f"holdout ROC AUC {ch:.4f} is worse than the champion's "
            f"{champ['roc_auc']:.4f} by more than the tolerance {tolerance:.4f}"
        )
    if evaluation.get("collapsed_slices"):
        problems.append("slices collapsed: " + "; ".join(evaluation["collapsed_slices"]))
    if force:
        why = "forced by force_promote" + (f" despite: {'; '.join(problems)}" if problems else "")
        return Decision(True, why)
    if problems:
        return Decision(False, "; ".join(problems))
    vs = (
        f"champion v{evaluation['champion_version']} {champ['roc_auc']:.4f}"
        if champ is not None
        else "no champion"
    )
    return Decision(
        True, f"holdout ROC AUC {ch:.4f} vs {vs} (tolerance {tolerance}, floor {floor})"
    )


def evaluate(
    lake: Lake,
    *,
    split_path: str,
    run_id: str,
    model_name: str,
    force_promote: bool,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Score challenger and champion on the holdout; log both to the run; return a summary."""
    from dslc.model import registry, training

    split = training.read_split(lake, split_path)
    holdout = training.load_frame(lake, split, "holdout")
    x = training.features_of(holdout)
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
    summary = {
        "run_id": run_id,
        "challenger": _headline(result["challenger"]),
        "champion": _headline(result["champion"]) if "champion" in result else None,
        "champion_version": champ_version,
        "champion_note": note,
        "collapsed_slices": result["collapsed_slices"],
    }
    log.info("evaluation: %s", json.dumps(summary, sort_keys=True))
    return summary


def _headline(scored: dict[str, Any]) -> dict[str, float]:
    o = scored["overall"]
    return {k: round(float(o[k]), 5) for k in ("roc_auc", "pr_auc", "log_loss", "brier")}
