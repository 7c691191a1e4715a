"""Drift scoring and the retrain decision (DESIGN.md section 6), on a fitted reference profile.

:func:`score` bins a batch on the reference's own bins (:mod:`dslc.model.profile`, fitted at
registration) in one vectorised pass per column and returns effect sizes per feature;
:func:`feature_verdicts`, :func:`dataset_verdict`, :func:`performance` and :func:`decide` turn
them into a decision under a :class:`Policy`. Everything here is pure: no I/O, no Airflow.

Statistics (per feature, on the reference bins; numeric bins are the reference's quantile
bins over non-missing values, categorical bins its top categories plus ``__other__``):

- ``psi``: population stability index ``sum((cur - ref) * ln(cur / ref))``, shares floored at
  ``1e-4`` so one empty bin does not make it infinite (Evidently puts ``1e-4`` in empty bins;
  the two agree unless a share is non-zero but below ``1e-4``).
- ``js``: Jensen-Shannon **distance**, base 2 (in [0, 1]; ``scipy.spatial.distance.
  jensenshannon(ref, cur, base=2)``), no floor needed.
- ``wasserstein`` (numeric): 1-D Wasserstein distance between the binned distributions, mass
  placed at the bin centers (``scipy.stats.wasserstein_distance`` on the centers with the
  frequencies as weights), divided by the reference's inner span: the distance between its
  second and second-to-last edges (the inter-decile range q10..q90 with 10 quantile bins;
  the full edge range when there are fewer than 3 bins). Scale-free: 0.1 is a shift of a
  tenth of the inter-decile range, roughly 0.26 standard deviations of a normal.
- ``ks`` (numeric): max absolute difference of the binned CDFs (the KS statistic on the bins).
- ``missing_ref`` / ``missing_cur`` / ``missing_delta``: missing rates and their difference.
- ``unseen_share`` (categorical): share of the batch's non-missing values in categories the
  training data never had.

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
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dslc.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from dslc.settings import Settings

PSI_FLOOR = 1e-4


# -- statistics on two frequency vectors --------------------------------------------------------
# Plain Python on short lists: a profile has ~10-30 bins, where each numpy call costs more in
# overhead than the arithmetic (this was a fifth of a 100k-row score).


def _normalised(freq: Sequence[float]) -> list[float]:
    total = math.fsum(freq)
    return [float(f) / total for f in freq] if total > 0 else [0.0] * len(freq)


def psi(ref: Sequence[float], cur: Sequence[float]) -> float:
    """Population stability index of two frequency vectors, shares floored at 1e-4."""
    total = 0.0
    for r, c in zip(ref, cur, strict=True):
        r, c = max(float(r), PSI_FLOOR), max(float(c), PSI_FLOOR)
        total += (c - r) * math.log(c / r)
    return total


def js_distance(ref: Sequence[float], cur: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two frequency vectors."""
    kl = 0.0
    for r, c in zip(_normalised(ref), _normalised(cur), strict=True):
        m = (r + c) / 2
        if r > 0:
            kl += r * math.log2(r / m)
        if c > 0:
            kl += c * math.log2(c / m)
    return math.sqrt(max(0.0, kl / 2))


def bin_centers(edges: Sequence[float]) -> list[float]:
    """Centers of the reference bins (one center for a single-edge, constant column)."""
    if len(edges) < 2:
        return [float(e) for e in edges]
    return [(float(a) + float(b)) / 2 for a, b in itertools.pairwise(edges)]


def inner_span(edges: Sequence[float]) -> float:
    """The Wasserstein scale: second to second-to-last edge, else the full range, else 0."""
    if len(edges) >= 4 and edges[-2] > edges[1]:
        return float(edges[-2] - edges[1])
    if len(edges) >= 2:
        return float(edges[-1] - edges[0])
    return 0.0


def _cdf_gaps(ref: Sequence[float], cur: Sequence[float]) -> list[float]:
    """|CDF_ref - CDF_cur| at the end of each bin."""
    gaps, cr, cc = [], 0.0, 0.0
    for r, c in zip(_normalised(ref), _normalised(cur), strict=True):
        cr += r
        cc += c
        gaps.append(abs(cr - cc))
    return gaps


def binned_wasserstein(ref: Sequence[float], cur: Sequence[float], edges: Sequence[float]) -> float:
    """1-D Wasserstein distance of the binned distributions (mass at bin centers) / inner span."""
    centers = bin_centers(edges)
    span = inner_span(edges)
    if len(centers) < 2 or span <= 0:
        return 0.0
    gaps = _cdf_gaps(ref, cur)
    w = math.fsum(g * (b - a) for g, (a, b) in zip(gaps, itertools.pairwise(centers), strict=False))
    return w / span


def binned_ks(ref: Sequence[float], cur: Sequence[float]) -> float:
    """Max absolute difference of the binned CDFs."""
    return max(_cdf_gaps(ref, cur), default=0.0)


# -- scoring ------------------------------------------------------------------------------------


def _numeric_labels(edges: Sequence[float]) -> list[str]:
    if len(edges) < 2:
        return [f"[{edges[0]:.6g}]"] if edges else []
    inner = [f"{e:.6g}" for e in edges[1:-1]]
    lows = ["-inf", *inner]
    highs = [*inner, "inf"]
    return [f"[{lo}, {hi})" for lo, hi in zip(lows, highs, strict=True)]


def _score_numeric(fp: Mapping[str, Any], values: pd.Series) -> dict[str, Any]:
    from dslc.model.profile import numeric_counts

    counts, missing = numeric_counts(fp, values)
    rows = len(values)
    ref = [float(f) for f in fp["freq"]]
    present = rows - missing
    out: dict[str, Any] = {"kind": "numeric", "rows": rows}
    if present and ref and sum(ref) > 0:
        cur = [c / present for c in counts.tolist()]
        out |= {
            "psi": psi(ref, cur),
            "js": js_distance(ref, cur),
            "wasserstein": binned_wasserstein(ref, cur, fp["edges"]),
            "ks": binned_ks(ref, cur),
        }
    else:  # nothing to compare: an all-missing batch or column; missing_delta speaks for it
        cur = [0.0] * len(ref)
        out |= {"psi": None, "js": None, "wasserstein": None, "ks": None}
    out |= _missing(fp, missing, rows)
    out |= {"ref_freq": ref, "cur_freq": cur, "bins": _numeric_labels(fp["edges"])}
    return out


def _score_categorical(fp: Mapping[str, Any], values: pd.Series) -> dict[str, Any]:
    from dslc.model.profile import categorical_counts

    labels = list(fp["freq"])
    ref = [float(fp["freq"][k]) for k in labels]
    counts, missing, unseen = categorical_counts(fp, values)
    rows = len(values)
    total = int(counts.sum())
    present = rows - missing
    out: dict[str, Any] = {"kind": "categorical", "rows": rows}
    if total and sum(ref) > 0:
        cur = [c / total for c in counts.tolist()]
        out |= {"psi": psi(ref, cur), "js": js_distance(ref, cur)}
    else:
        cur = [0.0] * len(ref)
        out |= {"psi": None, "js": None}
    out |= _missing(fp, missing, rows)
    out |= {
        "unseen_share": None if unseen is None else (unseen / present if present else 0.0),
        "ref_freq": ref,
        "cur_freq": cur,
        "bins": labels,
    }
    return out


def _missing(fp: Mapping[str, Any], missing: int, rows: int) -> dict[str, float]:
    ref = float(fp.get("missing_rate", 0.0))
    cur = missing / rows if rows else 0.0
    return {"missing_ref": ref, "missing_cur": cur, "missing_delta": cur - ref}


def score(profile: Mapping[str, Any], df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per profiled feature, the batch's drift statistics on the reference bins.

    Keys per feature: ``kind``, ``psi``, ``js`` (Jensen-Shannon distance, base 2),
    ``wasserstein`` and ``ks`` (numeric only), ``missing_ref``, ``missing_cur``,
    ``missing_delta``, ``unseen_share`` (categorical only), ``rows``, ``ref_freq``,
    ``cur_freq`` and ``bins`` (labels). ``psi``/``js``/... are None when the batch has no
    non-missing value of the feature (``missing_delta`` then says so).
    """
    from dslc.model.profile import check_profile

    profile = check_profile(profile)
    missing = [c for c in profile["features"] if c not in df.columns]
    if missing:
        raise DataError(
            f"the batch lacks profiled feature(s) {missing}: score the same feature table "
            "the model was trained on"
        )
    out: dict[str, dict[str, Any]] = {}
    for col, fp in profile["features"].items():
        if fp["kind"] == "numeric":
            out[col] = _score_numeric(fp, df[col])
        else:
            out[col] = _score_categorical(fp, df[col])
    return out


# -- policy and verdicts ------------------------------------------------------------------------


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
