"""Drift statistics on a fitted reference profile (DESIGN.md section 6).

:func:`score` bins a batch on the reference's own bins (:mod:`dslc.model.profile`, fitted at
registration) in one vectorised pass per column and returns effect sizes per feature; the
policy that turns them into a decision is :mod:`dslc.monitoring.policy`. Everything here is
pure: no I/O, no Airflow.

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
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dslc.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

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
