"""Metrics, slices and the promotion gate, on numbers a user can check by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from dslc.model import evaluation, gate
from dslc.usecase import Slice


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    p = np.clip(y * 0.3 + rng.random(1000) * 0.7, 0.01, 0.99)
    m = evaluation.metrics(y, p)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["calibration_gap"] == pytest.approx(p.mean() - y.mean())
    assert m["n"] == 1000


def test_a_single_class_slice_has_no_auc_but_still_a_log_loss():
    m = evaluation.metrics(np.zeros(10), np.full(10, 0.2))
    assert math.isnan(m["roc_auc"]) and m["log_loss"] == pytest.approx(-math.log(0.8))


def test_slices_are_origins_and_top_carriers():
    df = pd.DataFrame(
        {
            "origin": ["EWR", "JFK", "LGA"] * 4,
            "carrier": ["UA"] * 6 + ["B6"] * 4 + ["EV", "DL"],
            "late": [0, 1] * 6,
        }
    )
    names = list(evaluation.slices(df, [Slice("origin"), Slice("carrier", top=2)]))
    assert names == ["origin=EWR", "origin=JFK", "origin=LGA", "carrier=B6", "carrier=UA"]


def _scored(auc: float, slices: dict[str, float] | None = None) -> dict:
    return {
        "overall": {"roc_auc": auc},
        "slices": {k: {"roc_auc": v, "n": 1000.0} for k, v in (slices or {}).items()},
    }


def test_a_collapsed_slice_is_named():
    champ = _scored(0.7, {"origin=EWR": 0.72, "origin=JFK": 0.7})
    ch = _scored(0.7, {"origin=EWR": 0.60, "origin=JFK": 0.69})
    assert evaluation.collapsed_slices(ch, champ) == ["origin=EWR (0.600 vs champion 0.720)"]
    assert evaluation.collapsed_slices(_scored(0.7, {"origin=LGA": 0.49}), None) == [
        "origin=LGA (0.490, chance level)"
    ]


def _ev(ch: float, champ: float | None, collapsed: list[str] | None = None) -> dict:
    return {
        "challenger": {"roc_auc": ch},
        "champion": None if champ is None else {"roc_auc": champ},
        "champion_version": None if champ is None else "3",
        "collapsed_slices": collapsed or [],
    }


@pytest.mark.parametrize(
    ("ev", "force", "promote", "says"),
    [
        (_ev(0.70, None), False, True, "vs no champion"),
        (_ev(0.705, 0.71), False, True, "vs champion v3 0.7100"),
        (_ev(0.69, 0.71), False, False, "worse than the champion's 0.7100 by more than"),
        (_ev(0.55, None), False, False, "below the floor 0.6000"),
        (_ev(0.75, 0.71, ["origin=EWR (0.5)"]), False, False, "slices collapsed: origin=EWR"),
        (_ev(0.55, 0.71), True, True, "forced by force_promote despite: holdout ROC AUC"),
    ],
)
def test_the_gate(ev, force, promote, says):
    d = gate.decide(ev, tolerance=0.01, floor=0.6, force=force)
    assert d.promote is promote
    assert says in d.reason
