"""The reference profile: bins and frequencies a drift check can rely on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dslc.drift_profile import OTHER, bin_frequencies, fit_profile


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
