"""Training without Airflow or MLflow: params, the time split, the split manifest, the model."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from dslc.lake import Lake
from dslc.model import training
from dslc.model.spec import features_of
from dslc.usecases.flights.datasets import FEATURES
from dslc.usecases.tabular import GRADIENT_BOOSTING_TRUSTED_TYPES

FIRST = dt.date(2013, 1, 1)


def synthetic_features(ds: str, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A feature partition with the real columns and a learnable label."""
    rng = np.random.default_rng(seed)
    hour = rng.integers(5, 23, n)
    origin = rng.choice(["EWR", "JFK", "LGA"], n)
    carrier = rng.choice(["UA", "B6", "EV", "DL", "AA", "MQ"], n)
    temp = rng.normal(40, 10, n)
    temp[rng.random(n) < 0.1] = np.nan
    logit = -2 + 0.15 * (hour - 12) + 0.8 * (origin == "EWR") + 0.5 * (carrier == "EV")
    late = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int8")
    frame = pd.DataFrame(
        {
            "ds": ds,
            "carrier": carrier,
            "flight": np.arange(n, dtype="int64"),
            "origin": origin,
            "sched_dep_ts": pd.Timestamp(ds) + pd.to_timedelta(hour, unit="h"),
            "dest": rng.choice(["ATL", "ORD", "LAX", "BOS"], n),
            "distance": rng.uniform(200, 2500, n),
            "sched_dep_hour": hour,
            "sched_dep_minute": rng.integers(0, 60, n),
            "sched_arr_hour": (hour + 2) % 24,
            "sched_arr_minute": rng.integers(0, 60, n),
            "day_of_week": pd.Timestamp(ds).dayofweek,
            "temp": temp,
            "late": late,
        }
    )
    for col in FEATURES.numeric:
        if col not in frame:
            frame[col] = rng.normal(10, 3, n)
    return frame.loc[:, FEATURES.columns]


def publish_days(lake: Lake, days: int, skip: tuple[int, ...] = ()) -> list[str]:
    out = []
    for i in range(days):
        if i in skip:
            continue
        ds = (FIRST + dt.timedelta(days=i)).isoformat()
        lake.publish(Lake.partition("features", "flights", ds), synthetic_features(ds, seed=i))
        out.append(ds)
    return out


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"learning_rate": "fast"}, "param 'learning_rate'='fast' is not a float"),
        ({"max_iter": 0}, "param 'max_iter'=0 is out of range"),
        ({"holdout_days": 100}, "param 'holdout_days'=100 is out of range"),
    ],
)
def test_bad_params_name_the_param(params, message):
    with pytest.raises(training.TrainingError, match=message):
        training.TrainParams.from_params(params)


def test_fit_is_deterministic_and_learns():
    train = pd.concat([synthetic_features(f"2013-01-{d:02d}", seed=d) for d in range(1, 11)])
    test = synthetic_features("2013-01-20", n=2000, seed=123)
    params = training.TrainParams(max_iter=30)
    p1 = training.fit(train, params).predict_proba(features_of(test))[:, 1]
    p2 = training.fit(train, params).predict_proba(features_of(test))[:, 1]
    np.testing.assert_array_equal(p1, p2)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test["late"], p1) > 0.65


def test_unseen_category_at_scoring_time_does_not_fail():
    train = synthetic_features("2013-01-01", n=500)
    pipe = training.fit(train, training.TrainParams(max_iter=5))
    batch = features_of(train.head(3))
    batch["dest"] = "ZZZ"
    assert pipe.predict_proba(batch).shape == (3, 2)


def test_skops_trusted_types_are_exactly_what_the_pipeline_needs():
    import skops.io as sio

    pipe = training.fit(synthetic_features("2013-01-01"), training.TrainParams(max_iter=5))
    data = sio.dumps(pipe)
    assert sorted(sio.get_untrusted_types(data=data)) == sorted(
        list(GRADIENT_BOOSTING_TRUSTED_TYPES)
    )
    loaded = sio.loads(data, trusted=list(GRADIENT_BOOSTING_TRUSTED_TYPES))
    x = features_of(synthetic_features("2013-01-02"))
    np.testing.assert_array_equal(loaded.predict_proba(x), pipe.predict_proba(x))


def test_lineage_says_why_and_from_where(monkeypatch):
    monkeypatch.setenv("DSLC_GIT_SHA", "abc123")
    tags = training.lineage(dag_run_id="scheduled__x", run_type="scheduled", reason=" ")
    assert tags == {
        "dslc.git_sha": "abc123",
        "dslc.trigger_reason": "scheduled run",
        "dslc.run_type": "scheduled",
        "dslc.source_dag_run_id": "scheduled__x",
    }
    tags = training.lineage(
        dag_run_id="d", run_type="manual", reason="drift", report_uri="s3://r", drifted=["temp"]
    )
    assert tags["dslc.trigger_reason"] == "drift" and tags["dslc.drift_report"] == "s3://r"
    assert tags["dslc.drifted_features"] == "temp"


# -- a scheduled run with nothing to do skips; a manual one fails -------------------------------

WHERE = "file:///lake/features/flights"


@pytest.mark.parametrize(
    ("published", "window", "expected"),
    [
        ([], None, r"^no data yet: no published feature partitions at file:///lake/features/"),
        ([], "2013-01-01..2013-03-31", r"^no data yet: "),
        (
            ["2013-03-30", "2013-03-31"],
            "2013-02-01..2013-03-31",
            r"^nothing new since the champion's window: the latest published feature day "
            r"2013-03-31 is inside the window 2013-02-01\.\.2013-03-31 of the champion of "
            r"'flights_late'; trigger `train` by hand to retrain anyway$",
        ),
    ],
)
def test_nothing_to_do_says_why(published: list[str], window: str | None, expected: str) -> None:
    why = training.nothing_to_do(published, window, where=WHERE, model_name="flights_late")
    assert why is not None
    assert re.match(expected, why)


@pytest.mark.parametrize("window", [None, "2013-02-01..2013-03-30"])
def test_a_new_day_or_no_champion_is_work(window: str | None) -> None:
    published = ["2013-03-30", "2013-03-31"]
    assert training.nothing_to_do(published, window, where=WHERE, model_name="m") is None


def test_empty_lake_skips_a_scheduled_run_and_fails_a_manual_one(lake: Lake) -> None:
    from dslc.errors import NothingToDo

    with pytest.raises(NothingToDo, match=r"^no data yet: no published feature partitions at "):
        training.assemble_run(lake, {}, dag_run_id="scheduled__w", run_type="scheduled")
    with pytest.raises(training.TrainingError, match="no published feature partitions at "):
        training.assemble_run(lake, {}, dag_run_id="manual__w", run_type="manual")
