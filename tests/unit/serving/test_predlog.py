"""The prediction log: buffered rows reach the lake exactly once, one atomic file per flush and
day; a failing lake costs rows (counted), never an exception on the request side."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dslc.lake import Lake
from dslc.serving.predlog import PredictionLog, log_columns, read_predictions
from dslc.serving.schema import Batch
from dslc.usecases.flights.model import MODEL_FEATURES

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def batch(n: int, ds: str = "2013-01-08", *, arrays: bool = False, start: int = 0) -> Batch:
    columns: dict[str, Any] = {}
    for name in MODEL_FEATURES:
        if name in ("carrier", "origin", "dest"):
            columns[name] = [f"{name[:1].upper()}{i}" for i in range(start, start + n)]
        else:
            values = [float(i) for i in range(start, start + n)]
            values[0] = None  # a null in every numeric column
            columns[name] = np.array(values, dtype=np.float64) if arrays else values
    return Batch(columns, [ds] * n, list(range(start, start + n)), n)


class Counts:
    def __init__(self) -> None:
        self.rows = self.errors = self.dropped = 0

    def kwargs(self) -> dict[str, Any]:
        def add(attr: str):
            def inc(n: int = 1) -> None:
                setattr(self, attr, getattr(self, attr) + n)

            return inc

        return {"on_rows": add("rows"), "on_error": add("errors"), "on_dropped": add("dropped")}


def append(log: PredictionLog, b: Batch, request_id: str, version: str = "3") -> None:
    probs = [0.1 * (i % 10) for i in range(b.n)]
    log.append(b, probs, [p >= 0.5 for p in probs], version, request_id, T0)


def test_flush_writes_each_day_once_and_reads_back_exactly(lake: Lake):
    counts = Counts()
    log = PredictionLog(lake, "flights_late", **counts.kwargs())
    append(log, batch(3), "r1")
    append(log, batch(2, arrays=True, start=10), "r2")
    append(log, batch(4, ds="2013-01-09"), "r3", version="4")
    assert log.flush() == 9
    assert log.flush() == 0  # nothing twice
    assert counts.rows == 9

    day = read_predictions(lake, "flights_late", "2013-01-08")
    assert list(day.columns) == log_columns()
    assert day["request_id"].tolist() == ["r1"] * 3 + ["r2"] * 2
    assert day["flight"].tolist() == [0, 1, 2, 10, 11]
    assert day["carrier"].tolist() == ["C0", "C1", "C2", "C10", "C11"]
    assert day["temp"].isna().tolist() == [True, False, False, True, False]  # None and NaN
    assert day["temp"].tolist()[1:3] == [1.0, 2.0]
    assert day["model_version"].unique().tolist() == ["3"]
    assert day["late"].dtype == bool and day["probability"].dtype == np.float64
    assert (day["request_time"] == pd.Timestamp(T0)).all()
    other = read_predictions(lake, "flights_late", "2013-01-09")
    assert len(other) == 4 and set(other["model_version"]) == {"4"}
    files = sorted(Path(lake.path("predictions/flights_late")).rglob("*"))
    assert [f.name.startswith("part-") for f in files if f.is_file()] == [True, True]


def test_background_thread_flushes_and_close_flushes_the_rest(lake: Lake):
    log = PredictionLog(lake, "m", flush_seconds=0.05)
    log.start()
    append(log, batch(2), "early")
    deadline = time.monotonic() + 10
    while log.written_rows < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.written_rows == 2
    log.flush_seconds = 3600  # only close() can write the next one now
    time.sleep(0.1)
    append(log, batch(1), "late")
    log.close()
    assert read_predictions(lake, "m", "2013-01-08")["request_id"].tolist() == [
        "early",
        "early",
        "late",
    ]


def test_max_rows_wakes_the_flusher_early(lake: Lake):
    log = PredictionLog(lake, "m", flush_seconds=3600, max_rows=5)
    log.start()
    try:
        append(log, batch(3), "a")
        time.sleep(0.05)
        assert log.written_rows == 0
        append(log, batch(3), "b")
        deadline = time.monotonic() + 10
        while log.written_rows < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.written_rows == 6
    finally:
        log.close()


def blocked_lake(tmp_path: Path) -> tuple[Lake, Path]:
    """A real lake whose predictions/ is a file: every write fails like a broken disk."""
    root = tmp_path / "lake"
    root.mkdir()
    blocker = root / "predictions"
    blocker.write_text("not a directory")
    return Lake(f"file://{root}"), blocker


def test_a_failing_lake_keeps_rows_for_later_and_loses_none(tmp_path: Path, caplog):
    lake, blocker = blocked_lake(tmp_path)
    counts = Counts()
    log = PredictionLog(lake, "m", **counts.kwargs())
    append(log, batch(3), "a")
    assert log.flush() == 0
    append(log, batch(2), "b")
    assert log.flush() == 0
    assert counts.errors == 2 and counts.dropped == 0 and log.buffered_rows == 5
    assert "cannot write 3 rows" in caplog.text and "answers are unaffected" in caplog.text
    blocker.unlink()  # the disk is back
    assert log.flush() == 5
    day = read_predictions(lake, "m", "2013-01-08")
    assert day["request_id"].tolist() == ["a"] * 3 + ["b"] * 2
    assert counts.rows == 5


def test_the_buffer_is_bounded_and_drops_are_counted(tmp_path: Path):
    lake, _ = blocked_lake(tmp_path)
    counts = Counts()
    log = PredictionLog(lake, "m", max_rows=2, max_buffer_rows=5, **counts.kwargs())
    for i in range(4):
        append(log, batch(2), f"r{i}")  # the third and fourth do not fit
    assert (log.buffered_rows, counts.dropped) == (4, 4)
    log.flush()  # fails; the rows stay, nothing more is dropped
    assert (log.buffered_rows, counts.dropped, counts.errors) == (4, 4, 1)


def test_a_flush_on_a_full_disk_leaves_no_temp_file_and_keeps_the_rows(lake: Lake, monkeypatch):
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    log = PredictionLog(lake, "m")
    append(log, batch(2), "a")
    with monkeypatch.context() as m:
        m.setattr(lake.fs, "mv", full)
        assert log.flush() == 0
    assert lake.ls("predictions", "m", "ds=2013-01-08") == []
    assert log.buffered_rows == 2 and log.failed_flushes == 1
    assert log.flush() == 2  # the disk has room again
    assert read_predictions(lake, "m", "2013-01-08")["request_id"].tolist() == ["a", "a"]


def test_readers_take_only_published_part_files(lake: Lake):
    log = PredictionLog(lake, "m")
    append(log, batch(2), "a")
    log.flush()
    lake.write_bytes(b"half a file", "predictions", "m", "ds=2013-01-08", ".tmp-123")
    lake.write_bytes(b"junk", "predictions", "m", "ds=2013-01-08", "notes.txt")
    assert len(read_predictions(lake, "m", "2013-01-08")) == 2
    assert list(read_predictions(lake, "m", "2013-01-07").columns) == log_columns()


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_model_names_that_would_escape_the_zone_are_refused(lake: Lake, name: str):
    with pytest.raises(ValueError, match="not a model name"):
        PredictionLog(lake, name)
