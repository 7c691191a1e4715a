"""The drift reference profile (DESIGN.md section 6): fitted once on the training data.

Per numeric feature: quantile bin edges, the share of non-missing rows in each bin and the
missing rate. Per categorical feature: the frequencies of its most common categories plus an
``__other__`` bucket. The profile is plain JSON, logged with the model version, so the drift
DAG scores a batch with :func:`bin_frequencies` against the same bins, one pass per column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PROFILE_VERSION = 1
OTHER = "__other__"


def _numeric(values: pd.Series, bins: int) -> dict[str, Any]:
    import numpy as np

    x = values.to_numpy(dtype="float64", na_value=np.nan)
    present = x[~np.isnan(x)]
    missing_rate = float(1 - len(present) / len(x)) if len(x) else 0.0
    if len(present) == 0:
        return {"kind": "numeric", "edges": [], "freq": [], "missing_rate": missing_rate}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)))
    profile = {"kind": "numeric", "edges": [float(e) for e in edges], "missing_rate": missing_rate}
    profile["freq"] = [float(f) for f in _numeric_freq(profile, values)]
    return profile


def _numeric_freq(profile: dict[str, Any], values: pd.Series) -> list[float]:
    """Share of non-missing values per bin; values beyond the edges fall in the end bins."""
    import numpy as np

    edges = np.asarray(profile["edges"], dtype="float64")
    x = values.to_numpy(dtype="float64", na_value=np.nan)
    x = x[~np.isnan(x)]
    nbins = max(len(edges) - 1, 1)
    if len(x) == 0:
        return [0.0] * nbins
    # Interior edges only: everything below the first edge lands in bin 0, above the last
    # in the last bin, so a shifted batch is counted, not dropped.
    idx = np.searchsorted(edges[1:-1], x, side="right") if len(edges) > 2 else np.zeros(len(x))
    counts = np.bincount(idx.astype("int64"), minlength=nbins)
    return [float(c) for c in counts / len(x)]


def _categorical(values: pd.Series, max_categories: int) -> dict[str, Any]:
    freq = values.astype("string").fillna(OTHER).value_counts(normalize=True, sort=False)
    freq = freq.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    top = freq.iloc[:max_categories]
    out = {str(k): float(v) for k, v in top.items()}
    out[OTHER] = float(max(0.0, 1.0 - sum(out.values())))
    return {"kind": "categorical", "freq": out, "missing_rate": float(values.isna().mean())}


def fit_profile(
    df: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int = 10,
    max_categories: int = 30,
) -> dict[str, Any]:
    """Fit the reference profile of ``df`` (the training rows)."""
    if df.empty:
        raise ValueError("cannot fit a reference profile on an empty frame")
    features: dict[str, Any] = {}
    for col in numeric:
        features[col] = _numeric(df[col], bins)
    for col in categorical:
        features[col] = _categorical(df[col], max_categories)
    return {"version": PROFILE_VERSION, "rows": len(df), "bins": bins, "features": features}


def bin_frequencies(feature_profile: dict[str, Any], values: pd.Series) -> dict[str, float]:
    """A batch's frequencies on the reference's bins/categories (keys match the profile)."""
    if feature_profile["kind"] == "numeric":
        freq = _numeric_freq(feature_profile, values)
        return {str(i): f for i, f in enumerate(freq)}
    ref = feature_profile["freq"]
    counts = values.astype("string").fillna(OTHER).value_counts(normalize=True)
    out = {k: float(counts.get(k, 0.0)) for k in ref if k != OTHER}
    out[OTHER] = float(max(0.0, 1.0 - sum(out.values())))
    return out
