"""Drift statistics against scipy on the same bins, and the policy on constructed data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from dslc.errors import ConfigError, DataError
from dslc.model.profile import OTHER, fit_profile
from dslc.monitoring import policy as drift_policy
from dslc.monitoring import statistics

N = 100_000


def _frame(rng: np.random.Generator, n: int = N, *, shift: float = 0.0) -> pd.DataFrame:
    """Mixed features; ``shift`` moves the numerics by that many sd and skews the categories."""
    p = np.array([0.4, 0.3, 0.2, 0.1])
    if shift:
        p = p[::-1]
    x = rng.normal(shift, 1, n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "y": rng.lognormal(shift, 1, n),
            "hour": rng.integers(5, 23, n).astype("float64") + (3 if shift else 0),
            "carrier": pd.Series(rng.choice(list("ABCD"), n, p=p), dtype="str"),
        }
    )


NUMERIC, CATEGORICAL = ["x", "y", "hour"], ["carrier"]


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _frame(np.random.default_rng(0))


@pytest.fixture(scope="module")
def profile(reference: pd.DataFrame) -> dict:
    return fit_profile(reference, NUMERIC, CATEGORICAL, importance={"hour": 0.5, "x": 0.1})


def _plain_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    total = 0.0
    for r, c in zip(ref, cur, strict=True):
        r, c = max(r, 1e-4), max(c, 1e-4)
        total += (c - r) * np.log(c / r)
    return total


# -- statistics vs references -------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0])
def test_numeric_statistics_match_scipy_on_the_same_bins(profile, shift):
    cur = _frame(np.random.default_rng(1), 20_000, shift=shift)
    s = statistics.score(profile, cur)["x"]
    edges = np.asarray(profile["features"]["x"]["edges"])
    # the batch's frequencies, binned independently with a binary search
    x = cur["x"].dropna().to_numpy()
    expected = np.bincount(np.searchsorted(edges[1:-1], x, side="right"), minlength=10) / len(x)
    np.testing.assert_allclose(s["cur_freq"], expected, rtol=0, atol=1e-12)
    ref, got = np.asarray(s["ref_freq"]), np.asarray(s["cur_freq"])

    assert s["psi"] == pytest.approx(_plain_psi(ref, got), abs=1e-9)
    assert s["js"] == pytest.approx(jensenshannon(ref, got, base=2), abs=1e-9)
    centers = (edges[:-1] + edges[1:]) / 2
    w = wasserstein_distance(centers, centers, ref, got) / (edges[-2] - edges[1])
    assert s["wasserstein"] == pytest.approx(w, abs=1e-9)
    assert s["ks"] == pytest.approx(np.max(np.abs(np.cumsum(ref) - np.cumsum(got))), abs=1e-9)
    assert s["missing_cur"] == pytest.approx(cur["x"].isna().mean(), abs=1e-12)
    assert s["missing_delta"] == pytest.approx(s["missing_cur"] - s["missing_ref"])
    assert len(s["bins"]) == len(ref) == len(got)
    if shift == 2.0:
        assert s["psi"] > 1 and s["wasserstein"] > 0.5 and s["ks"] > 0.5
    if shift == 0.0:
        assert s["psi"] < 0.01 and s["wasserstein"] < 0.02


@pytest.mark.parametrize("edges", [[0.0, 1.0, 3.0], [2.0, 2.0001], [5.0]])
def test_wasserstein_on_few_bins_is_scaled_by_the_full_range(edges):
    bins = max(len(edges) - 1, 1)
    ref, cur = np.full(bins, 1 / bins), np.r_[np.ones(1), np.zeros(bins - 1)]
    w = statistics.binned_wasserstein(ref, cur, edges)
    if len(edges) < 2:
        assert w == 0.0  # a constant column cannot move on its own bins
        return
    centers = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    expected = wasserstein_distance(centers, centers, ref, cur) / (edges[-1] - edges[0])
    assert w == pytest.approx(expected, abs=1e-9)


def test_categorical_statistics_and_unseen_share_match_pandas(profile):
    rng = np.random.default_rng(2)
    values = pd.Series(rng.choice(list("ABCDEZ"), 10_000), dtype="str")
    values[:500] = None
    s = statistics.score(profile, pd.DataFrame({**{c: 1.0 for c in NUMERIC}, "carrier": values}))
    s = s["carrier"]
    counts = values.dropna().value_counts(normalize=True)
    assert s["bins"] == ["A", "B", "C", "D", OTHER]
    expected = [counts.get(k, 0.0) for k in "ABCD"] + [counts["E"] + counts["Z"]]
    np.testing.assert_allclose(s["cur_freq"], expected, rtol=0, atol=1e-12)
    ref, got = np.asarray(s["ref_freq"]), np.asarray(s["cur_freq"])
    assert s["psi"] == pytest.approx(_plain_psi(ref, got), abs=1e-9)
    assert s["js"] == pytest.approx(jensenshannon(ref, got, base=2), abs=1e-9)
    assert s["unseen_share"] == pytest.approx(counts["E"] + counts["Z"], abs=1e-12)
    assert s["missing_cur"] == 0.05
    assert "wasserstein" not in s and "ks" not in s


@pytest.mark.parametrize("dtype", [object, "category", pd.ArrowDtype(pa.large_string())])
def test_a_categorical_scores_the_same_whatever_its_dtype(profile, dtype):
    rng = np.random.default_rng(8)
    values = pd.Series(rng.choice(list("ABCDEZ"), 2000), dtype="str")
    values[:100] = None
    batch = pd.DataFrame({**{c: 1.0 for c in NUMERIC}, "carrier": values})
    expected = statistics.score(profile, batch)["carrier"]
    got = statistics.score(profile, batch.assign(carrier=values.astype(dtype)))["carrier"]
    assert got == expected and expected["unseen_share"] > 0


def test_scores_are_plain_json_and_an_all_missing_column_is_reported_not_crashed(profile):
    cur = _frame(np.random.default_rng(3), 1000)
    cur["x"] = np.nan
    s = statistics.score(profile, cur)
    json.dumps(s, allow_nan=False)
    assert s["x"]["psi"] is None and s["x"]["missing_delta"] == pytest.approx(0.95, abs=0.01)
    v = drift_policy.feature_verdicts(s, drift_policy.Policy())["x"]
    assert v["drifted"] and v["crossed"][0]["statistic"] == "missing_delta"


def test_a_batch_without_a_profiled_feature_is_refused(profile):
    with pytest.raises(DataError, match=r"lacks profiled feature\(s\) \['carrier'\]"):
        statistics.score(profile, pd.DataFrame({c: [1.0] for c in NUMERIC}))


# -- the policy on constructed data -------------------------------------------------------------


def test_two_samples_of_the_same_distribution_do_not_drift(profile):
    s = statistics.score(profile, _frame(np.random.default_rng(4)))
    policy = drift_policy.Policy()
    assert not any(v["drifted"] for v in drift_policy.feature_verdicts(s, policy).values())
    verdict = drift_policy.dataset_verdict(s, policy, profile["importance"])
    assert verdict == {**verdict, "drifted": False, "share": 0.0, "reasons": []}
    assert max(f["psi"] for f in s.values()) < 0.01


def test_a_shifted_batch_drifts_on_every_feature_with_reasons(profile):
    s = statistics.score(profile, _frame(np.random.default_rng(5), shift=1.0))
    verdict = drift_policy.dataset_verdict(s, drift_policy.Policy(), profile["importance"])
    assert verdict["drifted"] and verdict["share"] == 1.0
    psis = [f["psi"] for f in verdict["drifted_features"]]
    assert psis == sorted(psis, reverse=True)
    assert {f["feature"] for f in verdict["important_drifted"]} == {"hour", "x"}
    assert verdict["top_features"] == ["hour", "x"]  # only two features have importances
    assert any("4 of 4 features drifted" in r for r in verdict["reasons"])


def _scores(psis: dict[str, float]) -> dict[str, dict]:
    return {
        c: {"kind": "numeric", "psi": p, "js": 0.0, "missing_delta": 0.0} for c, p in psis.items()
    }


def test_one_important_feature_drifting_is_dataset_drift_below_the_share():
    scores = _scores({f"f{i}": 0.01 for i in range(10)} | {"f3": 0.5})
    policy = drift_policy.Policy(share_threshold=0.3, top_features=2)
    importance = {f"f{i}": float(i) for i in range(10)}
    assert not drift_policy.dataset_verdict(scores, policy, importance)["drifted"]  # f3 ranks 7th
    importance["f3"] = 100.0
    verdict = drift_policy.dataset_verdict(scores, policy, importance)
    assert verdict["drifted"] and verdict["share"] == pytest.approx(0.1)
    assert verdict["reasons"] == ["important feature(s) drifted: f3 (top 2)"]
    assert not drift_policy.dataset_verdict(scores, policy, None)["drifted"]


def test_feature_verdicts_name_the_statistic_and_the_threshold_crossed():
    scores = {
        "a": {"psi": 0.2, "js": 0.1, "missing_delta": 0.0},
        "b": {"psi": 0.19, "js": 0.35, "missing_delta": -0.1},
        "c": {"psi": 0.0, "js": 0.0, "missing_delta": 0.0, "unseen_share": 0.05},
        "d": {"psi": 0.19, "js": 0.29, "missing_delta": 0.09, "unseen_share": 0.049},
    }
    v = drift_policy.feature_verdicts(scores, drift_policy.Policy(js_threshold=0.3))
    assert v["a"]["crossed"] == [{"statistic": "psi", "value": 0.2, "threshold": 0.2}]
    assert [c["statistic"] for c in v["b"]["crossed"]] == ["js", "missing_delta"]
    assert [c["statistic"] for c in v["c"]["crossed"]] == ["unseen_share"]
    assert not v["d"]["drifted"] and v["d"]["crossed"] == []
    default = drift_policy.feature_verdicts(scores, drift_policy.Policy())  # JS is off by default
    assert [c["statistic"] for c in default["b"]["crossed"]] == ["missing_delta"]


def test_a_tiny_batch_is_not_judged_on_chance_drift(profile):
    small = _frame(np.random.default_rng(9), 150)
    scores = statistics.score(profile, small)
    assert max(s["psi"] for s in scores.values()) > 0.02  # noise at 150 rows ...
    verdicts = drift_policy.feature_verdicts(scores, drift_policy.Policy())
    assert not any(v["drifted"] for v in verdicts.values())  # ... is not judged
    assert verdicts["x"]["note"] == "only 150 rows (< 200): not judged"
    judged = drift_policy.feature_verdicts(
        scores, drift_policy.Policy(min_rows=100, psi_threshold=0.01)
    )
    assert any(v["drifted"] for v in judged.values())


@pytest.mark.parametrize(
    ("history", "retrain", "consecutive"),
    [
        ([], False, 0),
        ([True], False, 1),
        ([True, False], False, 0),
        ([False, True, True], True, 2),
        ([True, True, False, True], False, 1),
        ([True, True, True], True, 3),
    ],
)
def test_retrain_needs_persistent_drift(history, retrain, consecutive):
    d = drift_policy.decide([{"drifted": h} for h in history], drift_policy.Policy(persistence=2))
    assert (d["retrain"], d["consecutive"]) == (retrain, consecutive)
    assert ("consecutive" in d["reason"]) == retrain


def test_performance_drift_alone_triggers_a_retrain():
    d = drift_policy.decide(
        [{"drifted": False}], drift_policy.Policy(), {"drifted": True, "auc_drop": 0.08}
    )
    assert d["retrain"] and "ROC AUC fell by 0.080" in d["reason"]


# -- performance --------------------------------------------------------------------------------


def _labelled(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    logit = (2 * y - 1) * 2.0 + rng.normal(0, noise, n)
    return y, 1 / (1 + np.exp(-logit))


def test_performance_drift_is_an_auc_drop_beyond_the_tolerance():
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(6)
    y, p = _labelled(rng, 5000, noise=1.0)
    reference = {"roc_auc": roc_auc_score(y, p), "log_loss": log_loss(y, p)}
    policy = drift_policy.Policy(auc_tolerance=0.05)
    same = drift_policy.performance(*_labelled(rng, 5000, noise=1.0), reference, policy)
    assert not same["drifted"] and abs(same["auc_drop"]) < 0.02 and same["rows"] == 5000
    worse = drift_policy.performance(*_labelled(rng, 5000, noise=4.0), reference, policy)
    assert worse["drifted"] and worse["auc_drop"] >= 0.05
    assert worse["log_loss_increase"] > 0
    yw, pw = _labelled(np.random.default_rng(7), 5000, noise=4.0)
    assert worse["roc_auc"] == pytest.approx(roc_auc_score(yw, pw), abs=0.02)


def test_performance_is_not_judged_on_one_class_or_few_rows():
    policy = drift_policy.Policy(min_performance_rows=100)
    one = drift_policy.performance(np.zeros(500), np.full(500, 0.9), {"roc_auc": 0.9}, policy)
    assert not one["drifted"] and "one class" in one["note"] and one["roc_auc"] is None
    few = drift_policy.performance([0, 1] * 10, [0.9, 0.1] * 10, {"roc_auc": 0.9}, policy)
    assert not few["drifted"] and "only 20 labelled rows" in few["note"]
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        drift_policy.performance([0, 1, 0], [0.1, 0.2], {"roc_auc": 0.9}, policy)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        drift_policy.performance([0, 1, np.nan], [0.1, 0.2, 0.3], {"roc_auc": 0.9}, policy)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        drift_policy.performance([0, 1], [0.1, np.nan], {"roc_auc": 0.9}, policy)


# -- policy plumbing ----------------------------------------------------------------------------


def test_policy_reads_settings_and_takes_overrides():
    settings = SimpleNamespace(
        drift_psi_threshold=0.25,
        drift_share_threshold=0.5,
        drift_top_features=4,
        drift_persistence=3,
        drift_auc_tolerance=0.02,
        drift_cooldown_days=5,
        drift_retrain_enabled=False,
    )
    p = drift_policy.Policy.from_settings(settings, persistence=1, js_threshold=None)  # type: ignore[arg-type]
    assert (p.psi_threshold, p.share_threshold, p.top_features) == (0.25, 0.5, 4)
    assert (p.persistence, p.auc_tolerance, p.cooldown_days) == (1, 0.02, 5)
    assert p.retrain_enabled is False and p.js_threshold is None


def test_policy_from_the_real_settings_uses_the_documented_defaults(monkeypatch):
    from dslc.settings import Settings

    monkeypatch.setenv("DSLC_DRIFT_PSI_THRESHOLD", "0.1")
    p = drift_policy.Policy.from_settings(Settings())
    assert p.psi_threshold == 0.1 and p.share_threshold == 0.3 and p.persistence == 2


def test_a_bad_policy_says_what_is_wrong():
    # ConfigError: the drift DAG fails without retries; still a ValueError for older callers.
    with pytest.raises(ConfigError, match=r"persistence=0"):
        drift_policy.Policy(persistence=0)
    with pytest.raises(ConfigError, match=r"unknown drift policy field\(s\) \['psi'\]"):
        drift_policy.Policy.from_settings(SimpleNamespace(**_DEFAULTS), psi=0.3)  # type: ignore[arg-type]


_DEFAULTS = {
    "drift_psi_threshold": 0.2,
    "drift_share_threshold": 0.3,
    "drift_top_features": 3,
    "drift_persistence": 2,
    "drift_auc_tolerance": 0.05,
    "drift_cooldown_days": 7,
    "drift_retrain_enabled": True,
}


@pytest.mark.parametrize(
    ("last", "ds", "days", "ok"),
    [
        (None, "2013-03-01", 7, True),
        ("2013-03-01", "2013-03-08", 7, True),
        ("2013-03-01", "2013-03-07", 7, False),
        ("2013-03-08", "2013-03-01", 7, False),  # a backfill behind a later trigger
        ("2013-03-01T00:00:00+00:00", "2013-03-01", 0, True),
    ],
)
def test_cooldown_counts_logical_days(last, ds, days, ok):
    assert drift_policy.cooldown_ok(last, ds, days) is ok
