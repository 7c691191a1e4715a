"""The retrain decision (DESIGN.md section 6): per-feature verdicts, the dataset verdict, the
champion's performance on labelled rows, and whether to retrain, under a :class:`Policy`.

The statistics come from :func:`dslc.monitoring.statistics.score`. Everything here is pure: no
I/O, no Airflow.

Policy (:class:`Policy`, defaults from ``DSLC_DRIFT_*`` settings). Decisions use effect sizes
with fixed thresholds, never p-values: at thousands of rows a day every test is "significant".

- A feature drifted when ``psi >= 0.2`` (the industry convention: < 0.1 stable, 0.1-0.2 a
  moderate shift worth watching, >= 0.2 a significant shift), or ``js >= js_threshold`` if set
  (off by default: PSI and JS rank shifts alike, one threshold is enough), or its missing rate
  moved by ``>= 0.1`` (ten percentage points: a feed breaking, not weather-driven
  noise), or ``>= 5%`` of its values are categories never seen in training.
- The dataset drifted when ``>= 30%`` of the features drifted, or any of the model's
  ``3`` most important features drifted (importances logged in the profile).
- A feature is judged on at least ``min_rows = 200`` non-missing rows: a same-distribution
  batch of ``n`` rows has an expected PSI of about ``(bins - 1) / n`` (0.045 at 200 rows, 10
  bins), so much smaller batches would drift by chance.
- Retrain when the last ``2`` windows (days) all drifted (one odd day is not a trend), or
  the champion's ROC AUC on labelled recent rows fell by ``>= 0.05`` from its holdout value.
  Cooldown, in-flight runs, once per (version, window) and the kill switch are guards the
  DAG applies around :func:`decide` (:func:`cooldown_ok` helps).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dslc.errors import ConfigError

if TYPE_CHECKING:
    from dslc.settings import Settings


@dataclass(frozen=True)
class Policy:
    """Thresholds of the drift decision (see the module docstring for why these values)."""

    psi_threshold: float = 0.2
    js_threshold: float | None = None
    missing_delta_threshold: float = 0.1
    unseen_threshold: float = 0.05
    share_threshold: float = 0.3
    top_features: int = 3
    persistence: int = 2
    auc_tolerance: float = 0.05
    min_performance_rows: int = 200
    min_rows: int = 200
    cooldown_days: int = 7
    retrain_enabled: bool = True

    def __post_init__(self) -> None:
        checks = {
            "psi_threshold": self.psi_threshold > 0,
            "js_threshold": self.js_threshold is None or 0 < self.js_threshold <= 1,
            "missing_delta_threshold": 0 < self.missing_delta_threshold <= 1,
            "unseen_threshold": 0 < self.unseen_threshold <= 1,
            "share_threshold": 0 < self.share_threshold <= 1,
            "top_features": self.top_features >= 0,
            "persistence": self.persistence >= 1,
            "auc_tolerance": 0 <= self.auc_tolerance <= 1,
            "min_performance_rows": self.min_performance_rows >= 1,
            "min_rows": self.min_rows >= 1,
            "cooldown_days": self.cooldown_days >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid drift policy {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}: "
                "thresholds are positive (shares and JS at most 1), persistence >= 1"
            )

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Policy:
        """The policy from ``DSLC_DRIFT_*`` settings, with keyword overrides (e.g. DAG params)."""
        if settings is None:
            from dslc.settings import get_settings

            settings = get_settings()
        values: dict[str, Any] = {
            "psi_threshold": settings.drift_psi_threshold,
            "share_threshold": settings.drift_share_threshold,
            "top_features": settings.drift_top_features,
            "persistence": settings.drift_persistence,
            "auc_tolerance": settings.drift_auc_tolerance,
            "cooldown_days": settings.drift_cooldown_days,
            "retrain_enabled": settings.drift_retrain_enabled,
        }
        for field in ("js_threshold", "missing_delta_threshold", "unseen_threshold"):
            if hasattr(settings, f"drift_{field}"):
                values[field] = getattr(settings, f"drift_{field}")
        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown drift policy field(s) {sorted(unknown)}: "
                f"use {sorted(cls.__dataclass_fields__)}"
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _crossed(s: Mapping[str, Any], policy: Policy) -> list[dict[str, Any]]:
    rows = s.get("rows")
    present = None if rows is None else rows * (1 - (s.get("missing_cur") or 0.0))
    limits: list[tuple[str, float | None]] = []
    if present is None or present >= policy.min_rows:
        limits += [
            ("psi", policy.psi_threshold),
            ("js", policy.js_threshold),
            ("unseen_share", policy.unseen_threshold),
        ]
    if rows is None or rows >= policy.min_rows:
        limits.append(("missing_delta", policy.missing_delta_threshold))
    out = []
    for stat, limit in limits:
        value = s.get(stat)
        if limit is None or value is None:
            continue
        if (abs(value) if stat == "missing_delta" else value) >= limit:
            out.append({"statistic": stat, "value": float(value), "threshold": limit})
    return out


def feature_verdicts(
    scores: Mapping[str, Mapping[str, Any]], policy: Policy
) -> dict[str, dict[str, Any]]:
    """Per feature: ``drifted`` and ``crossed`` (which statistic crossed which threshold);
    features with fewer than ``min_rows`` rows (non-missing, for the distribution checks) are
    not judged."""
    out = {}
    for col, s in scores.items():
        crossed = _crossed(s, policy)
        out[col] = {
            "drifted": bool(crossed),
            "crossed": crossed,
            "psi": s.get("psi"),
            "js": s.get("js"),
        }
        if s.get("rows") is not None and s["rows"] < policy.min_rows:
            out[col]["note"] = f"only {s['rows']} rows (< {policy.min_rows}): not judged"
    return out


def top_features(
    importance: Mapping[str, float] | None, features: Sequence[str], n: int
) -> list[str]:
    """The ``n`` most important of ``features`` (ties by name); none without importances."""
    if not importance or n <= 0:
        return []
    ranked = sorted((f for f in features if f in importance), key=lambda f: (-importance[f], f))
    return ranked[:n]


def dataset_verdict(
    scores: Mapping[str, Mapping[str, Any]],
    policy: Policy,
    importance: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The dataset-level verdict: drifted when the share of drifted features reaches
    ``share_threshold`` or any of the ``top_features`` most important features drifted.

    ``importance`` is feature -> importance (the profile's ``importance``); without it only the
    share rule applies.
    """
    verdicts = feature_verdicts(scores, policy)
    drifted = [
        {
            "feature": col,
            "psi": scores[col].get("psi"),
            "js": scores[col].get("js"),
            "missing_delta": scores[col].get("missing_delta"),
            "unseen_share": scores[col].get("unseen_share"),
            "crossed": v["crossed"],
        }
        for col, v in verdicts.items()
        if v["drifted"]
    ]
    drifted.sort(key=lambda d: (-(d["psi"] if d["psi"] is not None else math.inf), d["feature"]))
    share = len(drifted) / len(verdicts) if verdicts else 0.0
    top = top_features(importance, list(scores), policy.top_features)
    important = [d for d in drifted if d["feature"] in top]
    reasons = []
    if verdicts and share >= policy.share_threshold:
        reasons.append(
            f"{len(drifted)} of {len(verdicts)} features drifted "
            f"({share:.0%} >= {policy.share_threshold:.0%})"
        )
    if important:
        names = ", ".join(d["feature"] for d in important)
        reasons.append(f"important feature(s) drifted: {names} (top {policy.top_features})")
    return {
        "drifted": bool(reasons),
        "share": share,
        "drifted_features": drifted,
        "important_drifted": important,
        "top_features": top,
        "reasons": reasons,
    }


def performance(
    y_true: Any, p: Any, reference: Mapping[str, float], policy: Policy
) -> dict[str, Any]:
    """Performance drift: ROC AUC / log loss of predicted probabilities ``p`` on labelled rows
    vs the model's holdout ``reference`` (``roc_auc``, ``log_loss``); drifted when the AUC
    fell by at least ``auc_tolerance``. Too few rows or one class only: not drifted, with a note.
    """
    import numpy as np

    y = np.asarray(y_true, dtype="float64").ravel()
    prob = np.asarray(p, dtype="float64").ravel()
    if len(y) != len(prob):
        raise ValueError(f"{len(y)} labels but {len(prob)} predictions: pass one per row")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1 (drop rows whose label has not arrived)")
    if not (np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()):
        raise ValueError("predictions must be probabilities in [0, 1]: pass predict_proba[:, 1]")
    y = y.astype("int64")
    out: dict[str, Any] = {
        "rows": len(y),
        "roc_auc": None,
        "log_loss": None,
        "auc_drop": None,
        "drifted": False,
    }
    classes = np.unique(y)
    if len(y) < policy.min_performance_rows:
        return out | {"note": f"only {len(y)} labelled rows (< {policy.min_performance_rows})"}
    if len(classes) < 2:
        return out | {"note": f"one class only ({classes.tolist()}): AUC is undefined"}
    from sklearn.metrics import log_loss, roc_auc_score

    auc = float(roc_auc_score(y, prob))
    ll = float(log_loss(y, np.clip(prob, 1e-15, 1 - 1e-15), labels=[0, 1]))
    drop = float(reference["roc_auc"]) - auc
    out |= {"roc_auc": auc, "log_loss": ll, "auc_drop": drop}
    if "log_loss" in reference:
        out["log_loss_increase"] = ll - float(reference["log_loss"])
    out["drifted"] = drop >= policy.auc_tolerance
    return out


def decide(
    history: Sequence[Mapping[str, Any]],
    policy: Policy,
    performance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Retrain or not: ``history`` is dataset verdicts oldest..newest (the last is today's);
    retrain when the last ``persistence`` windows all drifted, or ``performance`` drifted."""
    consecutive = 0
    for verdict in reversed(history):
        if not verdict.get("drifted"):
            break
        consecutive += 1
    reasons = []
    if consecutive >= policy.persistence:
        reasons.append(
            f"data drift in {consecutive} consecutive window(s) (>= {policy.persistence})"
        )
    if performance is not None and performance.get("drifted"):
        reasons.append(f"ROC AUC fell by {performance['auc_drop']:.3f} (>= {policy.auc_tolerance})")
    if reasons:
        reason = "; ".join(reasons)
    elif consecutive:
        reason = f"data drift in {consecutive} window(s), waiting for {policy.persistence}"
    else:
        reason = "no drift"
    return {"retrain": bool(reasons), "reason": reason, "consecutive": consecutive}


def cooldown_ok(last_trigger_ds: str | dt.date | None, ds: str | dt.date, days: int) -> bool:
    """True when the last retrain trigger is at least ``days`` before ``ds`` (logical dates,
    so a backfill replays the same decisions; a trigger dated after ``ds`` also blocks)."""
    if last_trigger_ds is None or days == 0:
        return True
    last = dt.date.fromisoformat(str(last_trigger_ds)[:10])
    today = dt.date.fromisoformat(str(ds)[:10])
    return (today - last).days >= days
