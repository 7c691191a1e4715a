"""The reference profile: bins and frequencies a drift check can rely on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dslc.errors import DataError
from dslc.model.profile import (
    OTHER,
    SAMPLE_ROWS,
    bin_frequencies,
    check_profile,
    count_bins,
    fit_profile,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 10_000)
    x[:500] = np.nan
    cats = rng.choice(list("ABCDEFGH"), 10_000, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02])
    return pd.DataFrame({"x": x, "c": cats, "const": 5.0})


def test_numeric_bins_are_quantiles_with_missing_rate(frame):
    p = fit_profile(frame, ["x", "const"], ["c"], bins=10)
    f = p["features"]["x"]
    assert f["missing_rate"] == pytest.approx(0.05)
    assert f["edges"] == sorted(f["edges"]) and len(f["edges"]) == 11
    assert sum(f["freq"]) == pytest.approx(1.0)
    assert all(abs(v - 0.1) < 0.01 for v in f["freq"])  # quantile bins: equal shares
    assert p["features"]["const"]["edges"] == [5.0]  # a constant column: one edge, one bin
    assert p["features"]["const"]["freq"] == [1.0]
    json.dumps(p)  # logged as JSON with the model version


def test_edges_are_numpys_quantiles(frame):
    for col, values in [("x", frame["x"].dropna()), ("h", pd.Series(np.arange(1001) % 24))]:
        edges = fit_profile(pd.DataFrame({col: values}), [col], [], bins=7)["features"][col]
        expected = np.unique(np.quantile(values, np.linspace(0, 1, 8)))
        np.testing.assert_allclose(edges["edges"], expected, rtol=1e-12, atol=1e-12)


def test_categorical_keeps_top_categories_and_an_other_bucket(frame):
    f = fit_profile(frame, [], ["c"], max_categories=3)["features"]["c"]
    assert list(f["freq"]) == ["A", "B", "C", OTHER]
    assert f["freq"][OTHER] == pytest.approx(0.3, abs=0.02)
    assert sum(f["freq"].values()) == pytest.approx(1.0)


def test_the_reference_binned_on_itself_gives_its_own_frequencies(frame):
    p = fit_profile(frame, ["x"], ["c"])
    x = bin_frequencies(p["features"]["x"], frame["x"])
    assert list(x.values()) == pytest.approx(p["features"]["x"]["freq"])
    c = bin_frequencies(p["features"]["c"], frame["c"])
    assert c == pytest.approx(p["features"]["c"]["freq"])


def test_a_shifted_batch_lands_in_the_end_bins_and_unseen_categories_in_other(frame):
    p = fit_profile(frame, ["x"], ["c"])
    shifted = bin_frequencies(p["features"]["x"], pd.Series(np.full(100, 50.0)))
    assert shifted["9"] == 1.0 and sum(shifted.values()) == 1.0
    unseen = bin_frequencies(p["features"]["c"], pd.Series(["Z"] * 10))
    assert unseen[OTHER] == 1.0


def test_an_empty_frame_is_refused():
    with pytest.raises(ValueError, match="empty frame"):
        fit_profile(pd.DataFrame({"x": []}), ["x"], [])


# -- version 2: fast fitting, missing values, unseen categories, importances --------------------


def test_categorical_frequencies_exclude_missing_and_remember_every_category(frame):
    df = frame.assign(c=frame["c"].where(np.arange(len(frame)) % 10 != 0))  # 10% missing
    f = fit_profile(df, [], ["c"], max_categories=3)["features"]["c"]
    present = df["c"].dropna()
    assert f["missing_rate"] == pytest.approx(0.1)
    assert f["freq"]["A"] == pytest.approx((present == "A").mean())
    assert sum(f["freq"].values()) == pytest.approx(1.0)
    assert f["categories"] == list("ABCDEFGH") and f["categories_complete"]


def test_categories_are_labels_whatever_the_dtype(frame):
    as_str = fit_profile(frame, [], ["c"])["features"]["c"]
    for values in (frame["c"].astype(object), frame["c"].astype("category")):
        assert fit_profile(frame.assign(c=values), [], ["c"])["features"]["c"] == as_str
    ints = pd.DataFrame({"k": np.repeat([3, 1, 2], [50, 30, 20])})
    f = fit_profile(ints, [], ["k"])["features"]["k"]
    assert list(f["freq"]) == ["3", "1", "2", OTHER]
    assert bin_frequencies(f, pd.Series(["3", "1", "1", "9"])) == {
        "3": 0.25,
        "1": 0.5,
        "2": 0.0,
        OTHER: 0.25,
    }


def test_importances_are_stored_for_the_dataset_rule(frame):
    p = fit_profile(frame, ["x"], ["c"], importance={"x": np.float64(0.25), "c": 0.01})
    assert p["importance"] == {"x": 0.25, "c": 0.01}
    assert "importance" not in fit_profile(frame, ["x"], ["c"])
    json.dumps(p)


def test_large_frames_take_edges_from_a_sample_and_count_every_row():
    rng = np.random.default_rng(3)
    n = 3 * SAMPLE_ROWS
    df = pd.DataFrame({"x": rng.lognormal(0, 1, n)})
    p = fit_profile(df, ["x"], [])
    f = p["features"]["x"]
    assert p["sample_rows"] == SAMPLE_ROWS and p["rows"] == n
    # frequencies are exact on every row for the (sampled) edges ...
    edges = np.asarray(f["edges"])
    exact = np.bincount(np.searchsorted(edges[1:-1], df["x"], side="right"), minlength=10) / n
    np.testing.assert_allclose(f["freq"], exact, rtol=0, atol=1e-15)
    # ... and the edges are within the documented DKW bound (0.6 points at 100k) of deciles
    eps = np.sqrt(np.log(2 / 0.001) / (2 * SAMPLE_ROWS))
    assert np.max(np.abs(np.asarray(f["freq"]) - 0.1)) <= 2 * eps
    assert fit_profile(df, ["x"], []) == p  # a fixed seed: the same data, the same profile


@pytest.mark.parametrize("chunk", [131_072, 1000])  # one block, and many with a ragged tail
def test_count_bins_agrees_with_a_binary_search_on_every_path(monkeypatch, chunk):
    from dslc.model import profile as drift_profile

    monkeypatch.setattr(drift_profile, "CHUNK", chunk)
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, 5000), [np.nan] * 50, [-1e9, 1e9, 0.0, 0.5]])
    for k in (1, 2, 3, 10, 40):  # 40 bins: more interior edges than the comparison path takes
        edges = np.unique(np.quantile(x[~np.isnan(x)], np.linspace(0, 1, k + 1)))
        edges = np.append(edges, 0.5) if k == 10 else edges  # a value equal to an edge
        edges = np.unique(edges)
        counts, missing = count_bins(x, edges)
        present = x[~np.isnan(x)]
        idx = np.searchsorted(edges[1:-1], present, side="right")
        assert missing == 50
        assert counts.tolist() == np.bincount(idx, minlength=len(edges) - 1).tolist(), k


# Written by version 1 of fit_profile (git b23a02e), as logged with registered models:
# missing values ranked among the categories (__other__ in the middle, the tail only) ...
V1_MISSING_KEPT = {
    "version": 1,
    "rows": 100,
    "bins": 2,
    "features": {
        "x": {
            "kind": "numeric",
            "edges": [0.0, 49.5, 99.0],
            "missing_rate": 0.0,
            "freq": [0.5, 0.5],
        },
        "c": {
            "kind": "categorical",
            "freq": {"A": 0.5, "B": 0.25, "C": 0.1, OTHER: 0.0, "D": 0.05},
            "missing_rate": 0.1,
        },
    },
}
V1_MISSING_KEPT_DATA = {
    "x": [float(i) for i in range(100)],
    "c": ["A"] * 50 + ["B"] * 25 + ["C"] * 10 + ["D"] * 5 + [None] * 10,
}
# ... or not (__other__ last: tail + missing).
V1_MISSING_IN_OTHER = {
    "version": 1,
    "rows": 100,
    "bins": 10,
    "features": {
        "c": {
            "kind": "categorical",
            "freq": {"A": 0.5, "B": 0.25, OTHER: 0.25},
            "missing_rate": 0.02,
        }
    },
}
V1_MISSING_IN_OTHER_DATA = {"c": ["A"] * 50 + ["B"] * 25 + ["C"] * 13 + ["D"] * 10 + [None] * 2}


def test_version_1_profiles_still_score_their_own_data_as_no_drift():
    from dslc.monitoring import statistics

    s = statistics.score(V1_MISSING_KEPT, pd.DataFrame(V1_MISSING_KEPT_DATA))
    assert s["x"]["psi"] == pytest.approx(0.0) and s["c"]["psi"] == pytest.approx(0.0, abs=1e-12)
    assert s["c"]["cur_freq"] == pytest.approx([5 / 9, 2.5 / 9, 1 / 9, 0.5 / 9, 0.0])
    assert s["c"]["unseen_share"] == 0.0  # it kept every category: unseen is known
    assert s["c"]["missing_delta"] == 0.0

    s = statistics.score(V1_MISSING_IN_OTHER, pd.DataFrame(V1_MISSING_IN_OTHER_DATA))["c"]
    assert s["psi"] == pytest.approx(0.0, abs=1e-12)
    assert s["ref_freq"] == pytest.approx([0.5 / 0.98, 0.25 / 0.98, 0.23 / 0.98])
    assert s["unseen_share"] is None  # C and D were cut: rare and unseen look alike
    assert check_profile(V1_MISSING_IN_OTHER)["version"] == 2


def test_an_unknown_profile_version_says_what_to_do():
    with pytest.raises(DataError, match="re-register the model"):
        check_profile({"version": 99, "features": {}})
    with pytest.raises(ValueError, match="not columns of the training frame"):
        fit_profile(pd.DataFrame({"x": [1.0]}), ["x", "y"], [])
