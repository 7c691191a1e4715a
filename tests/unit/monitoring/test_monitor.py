"""The drift monitor's own logic on small frames in a temp file:// lake: the day's report, the
history behind persistence, the performance join, the guards, the HTML page, and the deferrable
sensor's trigger."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time

import numpy as np
import pandas as pd
import pytest

from dslc.lake import Lake
from dslc.model import profile as drift_profile
from dslc.monitoring import monitor as dm
from dslc.monitoring import report as drift_report
from dslc.monitoring.policy import Policy
from dslc.usecases.flights.datasets import FEATURES

CARRIERS = ["AA", "B6", "DL", "UA"]
# Six of the 17 features moved (35% >= the 30% share rule): a drifted day.
SHIFT = {c: 25.0 for c in ("temp", "dewp", "humid", "pressure", "visib", "wind_speed")}


def frame(ds: str, n: int = 1500, seed: int = 0, **shift: float) -> pd.DataFrame:
    """A feature partition with the real columns; ``temp=+25`` etc. shifts a numeric."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "ds": ds,
            "carrier": rng.choice(CARRIERS, n, p=[0.3, 0.3, 0.2, 0.2]),
            "flight": np.arange(1, n + 1, dtype="int64"),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "sched_dep_ts": pd.Timestamp(ds),
            "dest": rng.choice(["ATL", "BOS", "ORD", "MIA"], n),
            "late": rng.integers(0, 2, n).astype("int8"),
        }
    )
    for i, col in enumerate(FEATURES.numeric):
        df[col] = rng.normal(10 * i, 5, n) + shift.get(col, 0.0)
    return df.loc[:, FEATURES.columns]


@pytest.fixture
def champ() -> dm.Champion:
    profile = drift_profile.fit_profile(
        frame("2013-01-01", n=5000, seed=99), FEATURES.numeric, FEATURES.categorical
    )
    return dm.Champion(
        name="flights_late",
        version="3",
        run_id="run3",
        profile=profile,
        holdout={"roc_auc": 0.75, "log_loss": 0.5},
    )


def publish(lake: Lake, df: pd.DataFrame) -> None:
    lake.publish(Lake.partition("features", "flights", df["ds"].iloc[0]), df)


def compute(lake: Lake, champ: dm.Champion, ds: str, window: int = 1, **policy):
    return dm.compute(lake, champ, ds=ds, window=window, policy=Policy(**policy))


# -- the day's report ------------------------------------------------------------------------


def test_stable_day_is_not_drift_and_a_rerun_writes_the_same_bytes(lake: Lake, champ):
    publish(lake, frame("2013-02-01", seed=1))
    report = compute(lake, champ, "2013-02-01")
    assert report["dataset"]["drifted"] is False
    assert report["decision"] == {"retrain": False, "reason": "no drift", "consecutive": 0}
    assert report["reference"]["version"] == "3"
    assert report["rows"] == {"current": 1500, "reference": 5000, "labelled": 0}
    assert report["policy"]["psi_threshold"] == 0.2
    assert set(report["features"]) == {*FEATURES.numeric, *FEATURES.categorical}
    assert report["features"]["temp"]["psi"] < 0.05
    assert report["performance"]["note"] == "no prediction log for the window"
    key = dm.report_key("2013-02-01")
    first = lake.read_bytes(key, dm.REPORT_JSON)
    compute(lake, champ, "2013-02-01")
    assert lake.read_bytes(key, dm.REPORT_JSON) == first


def test_shifted_day_is_drift_naming_the_features_and_statistics(lake: Lake, champ):
    shifted = frame("2013-02-02", seed=2, **SHIFT)
    shifted.loc[: len(shifted) // 2, "carrier"] = "ZZ"  # a carrier training never saw
    shifted.loc[: len(shifted) // 3, "precip"] = np.nan
    publish(lake, shifted)
    report = compute(lake, champ, "2013-02-02", persistence=1)
    drifted = {d["feature"]: d for d in report["dataset"]["drifted_features"]}
    assert {*SHIFT, "carrier", "precip"} <= set(drifted)
    assert drifted["temp"]["psi"] > 1
    assert report["features"]["carrier"]["unseen_share"] == pytest.approx(751 / 1500)
    assert {c["statistic"] for c in drifted["precip"]["crossed"]} == {"missing_delta"}
    assert report["dataset"]["drifted"] is True
    assert report["decision"]["retrain"] is True
    assert dm.drifted_summary(report)[0].startswith(
        report["dataset"]["drifted_features"][0]["feature"]
    )


def test_persistence_needs_consecutive_drifted_windows_whatever_the_run_order(lake, champ):
    for d, seed in (("2013-02-01", 1), ("2013-02-02", 2), ("2013-02-04", 4)):
        publish(lake, frame(d, seed=seed, **SHIFT))
    # 2013-02-02 first, as a backfill running out of order might: its previous window
    # (2013-02-01) is scored from its features, not from a report that does not exist yet.
    second = compute(lake, champ, "2013-02-02", persistence=2)
    assert second["decision"] == {
        "retrain": True,
        "reason": "data drift in 2 consecutive window(s) (>= 2)",
        "consecutive": 2,
    }
    assert [h["ds"] for h in second["history"]] == ["2013-02-01", "2013-02-02"]
    first = compute(lake, champ, "2013-02-01", persistence=2)
    assert first["dataset"]["drifted"] and not first["decision"]["retrain"]
    assert first["decision"]["reason"] == "data drift in 1 window(s), waiting for 2"
    assert first["history"][0] == {
        "ds": "2013-01-31",
        "drifted": False,
        "note": "no published features",
    }
    # 2013-02-03 has no features: the streak starts again.
    assert not compute(lake, champ, "2013-02-04", persistence=2)["decision"]["retrain"]
    # A stable day in between breaks it too.
    publish(lake, frame("2013-02-03", seed=3))
    assert compute(lake, champ, "2013-02-04", persistence=2)["history"][0] == {
        "ds": "2013-02-03",
        "drifted": False,
        "share": 0.0,
    }
    # A trailing window of 2 days ending at 2013-02-04 holds the stable day too.
    two = compute(lake, champ, "2013-02-04", window=2, persistence=1)
    assert two["window"]["present"] == ["2013-02-03", "2013-02-04"]


def test_trailing_window_reads_each_published_day_and_lists_missing_ones(lake: Lake, champ):
    publish(lake, frame("2013-02-01", seed=1))
    publish(lake, frame("2013-02-03", seed=3))
    report = compute(lake, champ, "2013-02-03", window=3)
    assert report["window"] == {
        "first": "2013-02-01",
        "last": "2013-02-03",
        "days": 3,
        "present": ["2013-02-01", "2013-02-03"],
        "missing": ["2013-02-02"],
    }
    assert report["rows"]["current"] == 3000


def test_no_feature_partition_in_the_window_is_a_clear_error(lake: Lake, champ):
    with pytest.raises(
        dm.DriftMonitorError,
        match=r"no published feature partition in "
        r"2013-02-08\.\.2013-02-10 .* run `ingest`",
    ):
        compute(lake, champ, "2013-02-10", window=3)


# -- performance: the serving log joined with the labels ------------------------------------


def predictions(features: pd.DataFrame, p: np.ndarray, version: str = "3") -> pd.DataFrame:
    out = features.loc[:, ["ds", "carrier", "flight", "origin"]].copy()
    out["probability"] = p
    out["model_version"] = version
    out["request_time"] = pd.Timestamp("2013-02-01T12:00", tz="UTC")
    return out


def test_join_keeps_the_champions_latest_prediction_per_flight():
    feats = frame("2013-02-01", n=6, seed=1)
    preds = predictions(feats, np.linspace(0.1, 0.6, 6))
    older = preds.iloc[[0]].assign(
        probability=0.99, request_time=pd.Timestamp("2013-02-01T08:00", tz="UTC")
    )
    other = preds.iloc[[1]].assign(model_version="2", probability=0.5)
    no_key = preds.iloc[[2]].assign(flight=None)
    y, p, counts = dm.join_labels(pd.concat([older, preds, other, no_key]), feats, "3")
    assert counts == {
        "logged": 9,
        "by_version": {"2": 1, "3": 8},
        "champion": 8,
        "without_key": 1,
        "labelled": 6,
    }
    order = np.argsort(p)  # p rises with the flight number, the features' order
    assert p[order].tolist() == pytest.approx(np.linspace(0.1, 0.6, 6).tolist())
    assert y[order].tolist() == feats["late"].tolist()


def write_log(lake: Lake, df: pd.DataFrame, ds: str, name: str = "part-1.parquet") -> None:
    from dslc.lake import parquet_bytes

    lake.write_bytes(parquet_bytes(df), f"predictions/flights_late/ds={ds}", name)


def test_performance_drift_when_the_champion_ranks_badly_against_the_labels(lake, champ):
    feats = frame("2013-02-01", seed=1)
    publish(lake, feats)
    y = feats["late"].to_numpy()
    rng = np.random.default_rng(0)
    # Mostly wrong: probabilities high for on-time flights.
    write_log(
        lake, predictions(feats, np.clip(1 - y + rng.normal(0, 0.3, len(y)), 0, 1)), "2013-02-01"
    )
    report = compute(lake, champ, "2013-02-01")
    perf = report["performance"]
    assert perf["rows"] == 1500 and perf["counts"]["labelled"] == 1500
    assert perf["roc_auc"] < 0.3 and perf["drifted"] is True
    assert perf["auc_drop"] == pytest.approx(0.75 - perf["roc_auc"])
    assert report["dataset"]["drifted"] is False
    assert (
        report["decision"]["retrain"] is True and "ROC AUC fell by" in report["decision"]["reason"]
    )


def test_a_good_champion_on_its_log_is_no_performance_drift(lake, champ):
    feats = frame("2013-02-01", seed=1)
    publish(lake, feats)
    y = feats["late"].to_numpy()
    rng = np.random.default_rng(0)
    write_log(
        lake,
        predictions(feats, np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, len(y)), 0, 1)),
        "2013-02-01",
    )
    perf = compute(lake, champ, "2013-02-01")["performance"]
    assert perf["roc_auc"] > 0.8 and perf["drifted"] is False


# -- guards ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "variable", "setting", "expected"),
    [
        (None, None, True, (True, "setting DSLC_DRIFT_RETRAIN_ENABLED")),
        (None, "false", True, (False, "Variable dslc_drift_retrain_enabled")),
        (True, "false", False, (True, "param 'retrain'")),
        (False, None, True, (False, "param 'retrain'")),
        (None, "ON", False, (True, "Variable dslc_drift_retrain_enabled")),
    ],
)
def test_kill_switch_most_specific_wins(param, variable, setting, expected):
    assert dm.retrain_switch(param, variable, setting) == expected


def test_a_garbled_kill_switch_fails_naming_it():
    with pytest.raises(dm.DriftMonitorError, match="Variable dslc_drift_retrain_enabled='nope'"):
        dm.retrain_switch(None, "nope", True)


GO = {"retrain": True, "reason": "data drift in 2 consecutive window(s) (>= 2)"}


def guards(records=(), in_flight=0, exists=False, enabled=True, cooldown=7, policy=GO):
    return dm.evaluate_guards(
        policy_decision=policy,
        ds="2013-02-10",
        version="3",
        retrain_enabled=enabled,
        switch_source="param 'retrain'",
        facts=dm.Facts(train_in_flight=in_flight, run_exists=exists),
        records=list(records),
        cooldown_days=cooldown,
    )


def test_no_guard_in_the_way_triggers():
    assert guards()["trigger"] is True and guards()["blocked_by"] == []


@pytest.mark.parametrize(
    ("kwargs", "blocked"),
    [
        ({"enabled": False}, "retraining is switched off (param 'retrain')"),
        ({"in_flight": 1}, "1 `train` run(s) queued or running"),
        (
            {"exists": True},
            "already triggered for version 3 and day 2013-02-10 (train run drift__2013-02-10__v3)",
        ),
        ({"records": [{"ds": "2013-02-10", "version": "3"}]}, "already triggered for version 3"),
        (
            {"records": [{"ds": "2013-02-05", "version": "2"}]},
            "cooldown: a retrain was "
            "triggered for 2013-02-05 (version 2), within 7 day(s) of 2013-02-10",
        ),
        (
            {"records": [{"ds": "2013-02-12", "version": "3"}]},
            "cooldown: a retrain was triggered for 2013-02-12",
        ),
    ],
)
def test_each_guard_blocks_on_its_own(kwargs, blocked):
    decision = guards(**kwargs)
    assert decision["trigger"] is False
    assert len(decision["blocked_by"]) == 1 and decision["blocked_by"][0].startswith(blocked)


def test_every_blocking_guard_is_reported():
    decision = guards(enabled=False, in_flight=2, records=[{"ds": "2013-02-09", "version": "3"}])
    assert [b.split(" ")[0] for b in decision["blocked_by"]] == ["retraining", "2", "cooldown:"]


def test_no_policy_go_means_no_trigger_whatever_the_guards():
    decision = guards(policy={"retrain": False, "reason": "no drift"}, in_flight=1)
    assert decision["trigger"] is False and decision["blocked_by"] == []
    assert decision["also_true"] == ["1 `train` run(s) queued or running"]


@pytest.mark.parametrize(
    ("records", "cooldown", "blocker"),
    [
        ([], 7, None),
        ([{"ds": "2013-02-03", "version": "1"}], 7, "2013-02-03"),  # 7 days before: allowed
        ([{"ds": "2013-02-04", "version": "1"}], 7, "2013-02-04"),
        ([{"ds": "2013-01-01", "version": "1"}, {"ds": "2013-02-17", "version": "2"}], 7, None),
        ([{"ds": "2013-02-16", "version": "2"}], 7, "2013-02-16"),  # a backfill behind a trigger
        ([{"ds": "2013-02-10", "version": "2"}], 0, None),
    ],
)
def test_cooldown_counts_days_of_data_time_both_ways(records, cooldown, blocker):
    found = dm.cooldown_blocker(records, "2013-02-10", cooldown)
    if blocker in (None, "2013-02-03"):
        assert found is None
    else:
        assert found is not None and found["ds"] == blocker


def test_decide_writes_the_decision_and_the_train_conf(lake: Lake, champ):
    publish(lake, frame("2013-02-02", seed=2, **SHIFT))
    compute(lake, champ, "2013-02-02", persistence=1)
    decision = dm.decide(
        lake,
        ds="2013-02-02",
        retrain_enabled=True,
        switch_source="x",
        facts=dm.Facts(train_in_flight=0, run_exists=False),
        train_window_days=60,
    )
    assert decision["trigger"] is True and decision["run_id"] == "drift__2013-02-02__v3"
    conf = decision["conf"]
    assert conf["window_end"] == "2013-02-02" and conf["window_days"] == 60
    assert conf["champion_version"] == "3"
    assert conf["report_uri"] == lake.uri("monitoring/drift/ds=2013-02-02/report.html")
    assert conf["reason"].startswith("drift_monitor 2013-02-02: data drift in 1 consecutive")
    assert any(f.startswith("temp:psi=") for f in conf["drifted_features"])
    written = json.loads(lake.read_text("monitoring/drift/ds=2013-02-02", dm.DECISION_JSON))
    assert written["trigger"] is True and written["conf"] == conf


def test_a_trigger_without_its_record_is_recorded_when_the_day_is_rerun(lake: Lake, champ):
    publish(lake, frame("2013-02-02", seed=2, **SHIFT))
    compute(lake, champ, "2013-02-02", persistence=1)
    decision = dm.decide(
        lake,
        ds="2013-02-02",
        retrain_enabled=True,
        switch_source="x",
        facts=dm.Facts(train_in_flight=1, run_exists=True),
        train_window_days=60,
    )
    assert decision["trigger"] is False
    assert [r["run_id"] for r in dm.trigger_records(lake)] == ["drift__2013-02-02__v3"]


def test_trigger_records_are_written_once(lake: Lake):
    rec = {"ds": "2013-02-02", "version": "3", "run_id": "drift__2013-02-02__v3", "n": 1}
    uri = dm.write_trigger_record(lake, rec)
    assert uri.endswith("monitoring/drift/triggers/ds=2013-02-02__v3.json")
    dm.write_trigger_record(lake, {**rec, "n": 2})
    dm.write_trigger_record(lake, {**rec, "ds": "2013-01-02", "n": 3})
    assert [r["n"] for r in dm.trigger_records(lake)] == [3, 1]


# -- the page ----------------------------------------------------------------------------------


def test_the_page_shows_verdict_heatmap_charts_and_every_feature(lake: Lake, champ):
    for i, d in enumerate(("2013-02-01", "2013-02-02", "2013-02-03")):
        publish(lake, frame(d, seed=i, **{c: 10.0 * i for c in SHIFT}))
        compute(lake, champ, d, persistence=1)
    report = dm.read_report(lake, "2013-02-03")
    page = drift_report.render(report, dm.history(lake, "2013-02-03", dm.HEATMAP_DAYS))
    assert page.startswith("<!doctype html>") and "DATA DRIFT" in page
    assert "Drift 2013-02-03: flights_late v3" in page
    charts = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(charts) == 2  # the heatmap, the distributions
    svgs = [base64.b64decode(c).decode() for c in charts]
    assert all("<svg" in svg and "<script" not in svg for svg in svgs)
    assert "PSI by feature and day" in svgs[0] and "temp" in svgs[1]  # text stays text
    # The same report renders to the same bytes (no date, fixed ids).
    assert drift_report.render(report, dm.history(lake, "2013-02-03", dm.HEATMAP_DAYS)) == page
    days, grid = drift_report.heatmap_data(
        [*dm.history(lake, "2013-02-03", 14), report], ["temp", "carrier"]
    )
    assert days == ["2013-02-01", "2013-02-02", "2013-02-03"]
    assert grid[0][0] < 0.05 < 1 < grid[0][2]
    for feature in (*FEATURES.numeric, *FEATURES.categorical):
        assert f"<td>{feature}</td>" in page


# -- the deferrable sensor's trigger ---------------------------------------------------------


def first_event(trigger):
    async def go():
        return await anext(trigger.run())

    return asyncio.run(go()).payload


def test_trigger_fires_when_the_partition_is_published(lake: Lake):
    from dslc_airflow.triggers import PartitionTrigger

    key = Lake.partition("features", "flights", "2013-02-01")
    trigger = PartitionTrigger(key=key, deadline=time.time() + 30, poke_interval=0.05)
    classpath, kwargs = trigger.serialize()
    assert classpath == "dslc_airflow.triggers.PartitionTrigger"
    later = threading.Timer(0.3, publish, args=(lake, frame("2013-02-01", n=10)))
    later.start()
    event = first_event(PartitionTrigger(**kwargs))
    later.join()
    assert event["status"] == "found" and event["rows"] == 10
    assert event["content_hash"] == lake.manifest(key).content_hash
    assert event["uri"] == lake.uri(key)


def test_trigger_reports_its_timeout_and_lasting_errors(lake: Lake, monkeypatch):
    from dslc_airflow.triggers import PartitionTrigger

    key = Lake.partition("features", "flights", "2013-02-01")
    event = first_event(PartitionTrigger(key=key, deadline=time.time() + 0.2, poke_interval=0.05))
    assert event["status"] == "timeout" and event["uri"] == lake.uri(key)

    def down(self):
        raise ConnectionError("lake unreachable")

    monkeypatch.setattr(PartitionTrigger, "_poll", down)
    event = first_event(PartitionTrigger(key=key, deadline=time.time() + 60, poke_interval=0.01))
    assert event["status"] == "error" and "lake unreachable" in event["message"]


def test_sensor_defers_until_published_and_fails_clearly_on_timeout(lake: Lake):
    from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

    from dslc_airflow.sensors import PartitionSensor
    from dslc_airflow.triggers import PartitionTrigger

    sensor = PartitionSensor(
        task_id="wait", dataset="flights", ds="2013-02-01", poke_interval=5, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, PartitionTrigger) and trigger.poke_interval == 5
    assert trigger.key == "features/flights/ds=2013-02-01"
    assert 55 < trigger.deadline - time.time() <= 60

    publish(lake, frame("2013-02-01", n=10))
    assert sensor.execute({})["rows"] == 10  # published: no deferral at all
    with pytest.raises(
        AirflowSensorTimeout,
        match=r"No published features partition of "
        r"flights for 2013-02-01 at .* within 60 s\. Run \(or clear\) the `ingest`",
    ):
        sensor.execute_complete({}, {"status": "timeout", "uri": "x", "waited_s": 60.2})
    with pytest.raises(AirflowSensorTimeout, match="Could not check x for 2013-02-01: boom"):
        sensor.execute_complete({}, {"status": "error", "uri": "x", "message": "boom"})


def test_run_note_says_why_names_the_top_drifted_and_fits_airflow():
    conf = {
        "reason": "drift_monitor 2013-06-08: data drift in 2 consecutive window(s) (>= 2)",
        "drifted_features": [f"f{i}:psi={i}.5" for i in range(8)],
        "report_uri": "file:///lake/monitoring/drift/ds=2013-06-08/report.html",
        "drift_window": "2013-06-02..2013-06-08",
    }
    note = dm.run_note(conf)
    assert note.startswith("**Retrain triggered by drift.** drift_monitor 2013-06-08: data")
    assert "`f0:psi=0.5`, `f1:psi=1.5`" in note and "`f4:psi=4.5` and 3 more." in note
    assert "`f5" not in note and conf["report_uri"] in note and "2013-06-02..2013-06-08" in note
    assert "Most drifted" not in dm.run_note({**conf, "drifted_features": []})
    long = dm.run_note({**conf, "reason": "x" * 5000})
    assert len(long) == dm.NOTE_CHARS and long.endswith("...")
