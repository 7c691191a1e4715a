"""The time split: a window of published feature partitions cut by date, every partition named
with its content hash, and no republished partition read back."""

from __future__ import annotations

import json

import pytest

from dslc.lake import Lake
from dslc.model.split import SPLITS, TrainingError, assemble, load_frame, read_split, resolve_window
from tests.unit.model.test_training import publish_days, synthetic_features


def _assemble(lake: Lake, **kw):
    args = {
        "dag_run_id": "manual__1",
        "window_end": "2013-01-20",
        "window_days": 20,
        "valid_days": 2,
        "holdout_days": 3,
        "min_days": 5,
        "min_rows": 500,
    }
    args.update(kw)
    return assemble(lake, **args)


def test_split_is_by_date_and_the_manifest_names_each_partition_with_its_hash(lake: Lake):
    publish_days(lake, 20, skip=(4, 9))
    out = _assemble(lake)
    split = json.loads(lake.read_text(out["split"]))
    parts = split["partitions"]
    assert split["missing_days"] == ["2013-01-05", "2013-01-10"]
    assert out["missing_days"] == 2
    assert [p["split"] for p in parts] == ["train"] * 13 + ["valid"] * 2 + ["holdout"] * 3
    assert [p["ds"] for p in parts if p["split"] == "holdout"] == [
        "2013-01-18",
        "2013-01-19",
        "2013-01-20",
    ]
    # every training day comes strictly before every valid day, before every holdout day
    by = {s: [p["ds"] for p in parts if p["split"] == s] for s in SPLITS}
    assert max(by["train"]) < min(by["valid"]) <= max(by["valid"]) < min(by["holdout"])
    for p in parts:
        manifest = lake.manifest(p["partition"])
        assert manifest is not None and p["content_hash"] == manifest.content_hash
    assert out["rows"] == {"train": 13 * 300, "valid": 600, "holdout": 900}


def test_window_end_defaults_to_the_latest_published_day(lake: Lake):
    publish_days(lake, 12)
    assert resolve_window(lake, None, 5, "flights") == ("2013-01-08", "2013-01-12")


def test_a_window_with_no_data_is_a_clear_error(lake: Lake):
    publish_days(lake, 10)
    with pytest.raises(
        TrainingError,
        match=r"no published feature partitions in the "
        r"window 2013-06-01\.\.2013-06-30",
    ):
        _assemble(lake, window_end="2013-06-30", window_days=30)
    assert not lake.exists("training")


def test_too_few_days_or_rows_say_which_minimum(lake: Lake):
    publish_days(lake, 9)
    with pytest.raises(TrainingError, match="has 9 days of features; at least 10"):
        _assemble(lake, window_end="2013-01-09", window_days=9)
    with pytest.raises(TrainingError, match="fewer than the minimum 100000"):
        _assemble(lake, window_end="2013-01-09", window_days=9, min_days=3, min_rows=100_000)


def test_a_republished_partition_is_refused_after_assemble(lake: Lake):
    publish_days(lake, 20)
    split = read_split(lake, _assemble(lake)["split"])
    changed = synthetic_features("2013-01-02", seed=99)
    lake.publish(Lake.partition("features", "flights", "2013-01-02"), changed)
    with pytest.raises(TrainingError, match="changed since the split was assembled"):
        load_frame(lake, split, "train")


def test_bad_window_end_names_the_param(lake: Lake):
    with pytest.raises(TrainingError, match="param 'window_end'='13/01/2013'"):
        resolve_window(lake, "13/01/2013", 10, "flights")
