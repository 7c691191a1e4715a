"""The ingest DAG run for real days with ``dag.test()`` on a file:// lake, good and bad input.

Each bad-input case lands a damaged file the way the upstream system would, runs the day, and
checks what a user would: the run fails at the right task with a message naming what was
wrong, the input sits in quarantine/ with its validation result, and raw/ and features/ of
that day are untouched (a previous good partition stays byte-identical).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pandas as pd
import pytest

from dslc.data import sources
from dslc.lake import Lake
from dslc.usecases.flights import source

pytestmark = pytest.mark.integration

DAY = dt.date(2013, 1, 10)
DS = DAY.isoformat()


@pytest.fixture
def ingest_dag(airflow_db: None, lake: Lake, monkeypatch: pytest.MonkeyPatch):
    """The ingest DAG parsed with a short landing timeout (for the no-file case)."""
    monkeypatch.setenv("DSLC_LANDING_POKE_SECONDS", "1")
    monkeypatch.setenv("DSLC_LANDING_TIMEOUT_SECONDS", "3")
    from airflow.dag_processing.dagbag import DagBag

    from dslc.settings import get_settings

    get_settings.cache_clear()
    from tests.integration.conftest import ROOT

    bag = DagBag(str(ROOT / "dags" / "ingest.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["ingest"]


NOT_RUN = {"upstream_failed", "None"}


def run_day(dag, day: dt.date, capfd: pytest.CaptureFixture[str]) -> tuple[str, dict[str, str]]:
    """Run one day with dag.test(); returns the run state and each task's state."""
    capfd.readouterr()  # task logs go to the captured stdout: start from a clean slate
    when = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    dr = dag.test(logical_date=when, run_after=when)
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    return str(dr.state), states


def land(
    lake: Lake,
    day: dt.date,
    edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    raw: bytes | None = None,
) -> None:
    """Land the day's weather, and flights either edited as a frame or as raw bytes."""
    sources.replay(lake, day, day, datasets=("weather",))
    key = Lake.partition("landing", "flights", day)
    if raw is None:
        frame = source.day_rows("flights", day).copy()
        if edit is not None:
            frame = edit(frame)
        raw = frame.to_csv(index=False).encode()
    lake.write_bytes(raw, key, "flights.csv")


def snapshot(lake: Lake, ds: str) -> dict[str, str | None]:
    out = {}
    for zone in ("raw", "features"):
        m = lake.manifest(Lake.partition(zone, "flights", ds))
        out[zone] = m.content_hash if m else None
    return out


def test_good_day_publishes_raw_and_features_idempotently(ingest_dag, lake: Lake, capfd):
    sources.replay(lake, DAY, DAY)
    state, tasks = run_day(ingest_dag, DAY, capfd)
    assert state == "success", tasks
    features = lake.read_partition(Lake.partition("features", "flights", DS))
    rows = source.day_rows("flights", DAY)
    assert len(features) == len(rows) > 500
    assert features["late"].isin([0, 1]).all()
    assert not {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"} & set(features)
    assert features["temp"].notna().mean() > 0.9  # weather joined at origin and hour
    result = json.loads(lake.read_text(Lake.partition("validation", "flights", DS), "result.json"))
    assert result["success"] is True
    assert lake.exists(Lake.partition("validation", "flights", DS), "index.html")
    first = snapshot(lake, DS)
    files_before = lake.ls(Lake.partition("features", "flights", DS))

    # Re-running (clear + run, as a backfill would) gives the same bytes and no duplicates.
    state, tasks = run_day(ingest_dag, DAY, capfd)
    assert state == "success", tasks
    assert snapshot(lake, DS) == first
    assert lake.ls(Lake.partition("features", "flights", DS)) == files_before
    assert len(lake.read_partition(Lake.partition("features", "flights", DS))) == len(rows)


def _drop(col: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda f: f.drop(columns=[col])


def _set(col: str, value: str, rows: int = 3) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(f: pd.DataFrame) -> pd.DataFrame:
        f = f.copy()
        f.iloc[:rows, f.columns.get_loc(col)] = value
        return f

    return edit


BAD_INPUTS = {
    "missing column": (_drop("dest"), ["dest"]),
    "renamed column": (lambda f: f.rename(columns={"carrier": "airline"}), ["carrier"]),
    "text in a numeric column": (_set("distance", "abc"), ["distance"]),
    "header only": (lambda f: f.iloc[:0], ["row_count"]),
    "NaN in a required numeric": (_set("sched_dep_time", "NaN"), ["sched_dep_time"]),
    "inf in a numeric": (_set("distance", "inf", rows=2), ["distance"]),
    "unknown airport code": (_set("dest", "XXX", rows=4), ["dest"]),
    "duplicated rows": (
        lambda f: pd.concat([f, f.iloc[:5]]),
        ["expect_compound_columns_to_be_unique", "share a key"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_quarantined_and_nothing_downstream_changes(
    case: str, ingest_dag, lake: Lake, capfd
):
    edit, must_name = BAD_INPUTS[case]
    # A previous good load of the day exists: it must stay exactly as it was.
    sources.replay(lake, DAY, DAY)
    state, _ = run_day(ingest_dag, DAY, capfd)
    assert state == "success"
    before = snapshot(lake, DS)

    land(lake, DAY, edit)
    state, tasks = run_day(ingest_dag, DAY, capfd)

    assert state == "failed"
    assert tasks["validate"] == "failed", tasks
    assert tasks["build_features"] in NOT_RUN
    assert snapshot(lake, DS) == before
    qkey = Lake.partition("quarantine", "flights", DS)
    assert "flights.csv" in lake.ls(qkey)
    result = json.loads(lake.read_text(qkey, "result.json"))
    assert result["success"] is False
    assert not lake.exists(Lake.partition("landing", "flights", DS), "flights.csv")
    message = result["message"]
    for word in must_name:
        assert word in message, message
    assert message.splitlines()[0] in capfd.readouterr().out  # the task log says it too


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_file_is_quarantined(cut: float, ingest_dag, lake: Lake, capfd):
    full = source.day_csv("flights", DAY)
    assert full is not None
    land(lake, DAY, raw=full[: int(len(full) * cut)])  # an interrupted upload, cut mid-row
    state, tasks = run_day(ingest_dag, DAY, capfd)
    assert state == "failed"
    assert tasks["extract"] == "failed", tasks
    assert "looks truncated" in capfd.readouterr().out
    result = json.loads(lake.read_text(Lake.partition("quarantine", "flights", DS), "result.json"))
    assert result["success"] is False
    assert lake.manifest(Lake.partition("raw", "flights", DS)) is None


def test_corrupt_file_fails_extract_with_a_clear_message(ingest_dag, lake: Lake, capfd):
    land(lake, DAY, raw=b"\x1f\x8b\x08\x00\xff\xfe binary garbage \x00\x81\x82\n\x00")
    state, tasks = run_day(ingest_dag, DAY, capfd)
    assert state == "failed"
    assert tasks["extract"] == "failed", tasks
    qkey = Lake.partition("quarantine", "flights", DS)
    result = json.loads(lake.read_text(qkey, "result.json"))
    assert result["stage"] == "extract"
    assert "not a readable CSV" in capfd.readouterr().out
    assert lake.manifest(Lake.partition("raw", "flights", DS)) is None


def test_no_landing_file_times_out_with_a_clear_message(ingest_dag, lake: Lake, capfd):
    state, tasks = run_day(ingest_dag, DAY, capfd)
    assert state == "failed"
    assert tasks["wait_for_landing"] == "failed", tasks
    assert f"No flights file landed for {DS}" in capfd.readouterr().out
    assert tasks["extract"] in NOT_RUN
