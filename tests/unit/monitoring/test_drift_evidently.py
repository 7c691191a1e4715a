"""Our per-column drift verdicts agree with Evidently's ``DataDriftPreset`` on the same data.

Evidently 0.7 needs pandas 2, so it runs in .venv-evidently (``make .venv-evidently``) through
bench/evidently/reference.py. Its PSI bins numerics its own way (equal-width Sturges bins over
reference + current, or one bin per value when there are <= 20), ours on the reference's
quantile bins, so PSI values differ on numerics and verdicts could differ on a borderline
column: the data has clearly shifted (1.5 sd; reversed category frequencies) and clearly
unshifted columns. On categoricals the bins are the same (every category), so the PSI values
must match too.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_drift import EVIDENTLY_PYTHON, make_frames, run_evidently
from dslc.model.profile import fit_profile
from dslc.monitoring import policy as drift_policy
from dslc.monitoring import statistics

pytestmark = pytest.mark.integration  # a real subprocess in another venv, a few seconds
THRESHOLD = 0.2


@pytest.fixture(scope="module")
def evidently_and_ours() -> tuple[dict, dict, dict]:
    if not EVIDENTLY_PYTHON.exists():
        pytest.fail(
            f"{EVIDENTLY_PYTHON} is missing: run `make .venv-evidently` "
            "(the Evidently reference needs pandas 2, so it has its own venv)"
        )
    data = make_frames(20_000, 20_000, n_numeric=7, n_categorical=3, shifted_share=0.3, seed=7)
    ref, cur = data["ref"], data["cur"]
    cur.loc[cur.index[:200], "num3"] = np.nan  # a little more missing than the reference
    ev = run_evidently(ref, cur, data["numeric"], data["categorical"], threshold=THRESHOLD)
    profile = fit_profile(ref, data["numeric"], data["categorical"])
    scores = statistics.score(profile, cur)
    return data, ev, scores


def test_the_same_columns_drift_in_evidently_and_in_ours(evidently_and_ours):
    data, ev, scores = evidently_and_ours
    theirs = {c: v["drifted"] for c, v in ev["columns"].items()}
    ours_psi = {c: s["psi"] >= THRESHOLD for c, s in scores.items()}
    policy = drift_policy.Policy(psi_threshold=THRESHOLD)
    ours = {c: v["drifted"] for c, v in drift_policy.feature_verdicts(scores, policy).items()}

    assert ev["evidently"] == "0.7.23" and ev["pandas"].startswith("2.")
    assert {c for c, d in theirs.items() if d} == set(data["shifted"])  # the data is as built
    assert ours_psi == theirs
    assert ours == theirs  # missing-rate and unseen checks add nothing on this data


def test_categorical_psi_equals_evidentlys_on_the_same_bins(evidently_and_ours):
    data, ev, scores = evidently_and_ours
    for col in data["categorical"]:
        assert scores[col]["psi"] == pytest.approx(ev["columns"][col]["score"], abs=1e-9), col
