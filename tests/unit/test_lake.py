"""The lake's publish contract on a file:// lake: idempotent, atomic, manifest-only reads."""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dslc.errors import ConfigError
from dslc.lake import MANIFEST, Lake, PartitionNotFoundError, day, dumps, jsonable, parquet_bytes

KEY = "raw/flights/ds=2013-01-02"


def frame(n: int = 3, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flight": [offset + i for i in range(n)],
            "carrier": ["UA", "AA", "B6"][:n] + ["DL"] * max(0, n - 3),
            "delay": [1.5 * i for i in range(n)],
        }
    )


def lake_dir(lake: Lake, key: str) -> Path:
    return Path(lake.path(key))


def files_on_disk(lake: Lake, key: str) -> list[str]:
    return sorted(p.name for p in lake_dir(lake, key).iterdir())


def test_publish_writes_data_then_a_manifest_naming_it(lake: Lake) -> None:
    df = frame()
    manifest = lake.publish(KEY, df)

    data = parquet_bytes(df)
    assert manifest.partition == KEY
    assert manifest.rows == 3
    assert manifest.columns == ["flight", "carrier", "delay"]
    assert manifest.content_hash.startswith("sha256:")
    (name,) = manifest.files
    assert name == f"part-{manifest.content_hash.removeprefix('sha256:')[:16]}.parquet"
    assert files_on_disk(lake, KEY) == sorted([MANIFEST, name])  # no temp files left behind
    assert lake.read_bytes(KEY, name) == data
    assert json.loads(lake.read_text(KEY, MANIFEST))["files"] == [name]
    pd.testing.assert_frame_equal(lake.read_partition(KEY), df)


def test_publish_is_idempotent(lake: Lake) -> None:
    first = lake.publish(KEY, frame())
    (name,) = first.files
    data_file = lake_dir(lake, KEY) / name
    before = (data_file.read_bytes(), data_file.stat().st_ino, data_file.stat().st_mtime_ns)

    again = lake.publish(KEY, frame())

    assert again == first
    assert files_on_disk(lake, KEY) == sorted([MANIFEST, name])
    # The same bytes under the same name, not even rewritten.
    after = (data_file.read_bytes(), data_file.stat().st_ino, data_file.stat().st_mtime_ns)
    assert after == before


def test_same_frame_gives_the_same_hash_in_another_lake(lake: Lake, tmp_path: Path) -> None:
    other = Lake(f"file://{tmp_path / 'other'}")
    assert other.publish(KEY, frame()).content_hash == lake.publish(KEY, frame()).content_hash


def test_republishing_other_data_replaces_it_and_deletes_the_stale_file(lake: Lake) -> None:
    old = lake.publish(KEY, frame())
    new = lake.publish(KEY, frame(5, offset=100))

    assert new.content_hash != old.content_hash
    assert new.rows == 5
    assert files_on_disk(lake, KEY) == sorted([MANIFEST, *new.files])
    assert not lake.exists(KEY, old.files[0])
    pd.testing.assert_frame_equal(lake.read_partition(KEY), frame(5, offset=100))


def test_readers_read_only_what_the_manifest_names(lake: Lake) -> None:
    lake.publish(KEY, frame())
    # A stray part file, e.g. left by a crashed writer or copied in by hand.
    lake.write_bytes(parquet_bytes(frame(4, offset=50)), KEY, "part-0000000000000000.parquet")

    pd.testing.assert_frame_equal(lake.read_partition(KEY), frame())
    assert lake.manifest(KEY).rows == 3  # type: ignore[union-attr]


def test_partition_without_success_is_not_published(lake: Lake) -> None:
    lake.publish("raw/flights/ds=2013-01-01", frame())
    unpublished = "raw/flights/ds=2013-01-02"
    lake.write_bytes(parquet_bytes(frame()), unpublished, "part-abc.parquet")

    assert lake.published_days("raw", "flights") == ["2013-01-01"]
    assert lake.manifest(unpublished) is None
    with pytest.raises(PartitionNotFoundError) as err:
        lake.read_partition(unpublished)
    assert str(err.value) == f"no published partition at {lake.uri(unpublished)}"
    assert lake.uri(unpublished).startswith("file:///")


def test_published_days_are_sorted_and_ignore_other_entries(lake: Lake) -> None:
    for ds in ("2013-01-03", "2013-01-01", "2013-01-02"):
        lake.publish(Lake.partition("raw", "flights", ds), frame())
    lake.write_text("{}", "raw", "flights", "notes.json")
    assert lake.published_days("raw", "flights") == ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert lake.published_days("raw", "nothing-here") == []


def test_crash_before_the_manifest_leaves_the_old_partition(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = lake.publish(KEY, frame())
    manifest_before = lake.read_text(KEY, MANIFEST)
    real_write_text = Lake.write_text

    def crash_on_manifest(self: Lake, text: str, *parts: str) -> None:
        if parts[-1] == MANIFEST:
            raise OSError("disk full (simulated) while writing the manifest")
        real_write_text(self, text, *parts)

    monkeypatch.setattr(Lake, "write_text", crash_on_manifest)
    with pytest.raises(OSError, match="simulated"):
        lake.publish(KEY, frame(5, offset=100))

    # The new data file is there, but nothing names it: readers still see the old partition.
    assert len(files_on_disk(lake, KEY)) == 3
    assert lake.read_text(KEY, MANIFEST) == manifest_before
    assert lake.manifest(KEY) == old
    pd.testing.assert_frame_equal(lake.read_partition(KEY), frame())

    # A re-run after the crash completes the publish and removes what the crash left.
    monkeypatch.setattr(Lake, "write_text", real_write_text)
    new = lake.publish(KEY, frame(5, offset=100))
    assert files_on_disk(lake, KEY) == sorted([MANIFEST, *new.files])
    pd.testing.assert_frame_equal(lake.read_partition(KEY), frame(5, offset=100))


def _full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("step", "failure", "error"),
    [
        ("write", _full_disk, OSError),  # the temp file exists, its bytes do not fit
        ("mv", _full_disk, OSError),  # written, but the rename fails
        ("mv", _interrupt, KeyboardInterrupt),  # not an Exception: cleaned up all the same
    ],
)
def test_a_failed_write_leaves_no_temp_file_and_no_target(
    lake: Lake,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    failure: Callable[..., None],
    error: type[BaseException],
) -> None:
    real_open = lake.fs.open
    opened: list[str] = []

    def tracking_open(path: str, mode: str = "rb", **kwargs: Any) -> Any:
        opened.append(path)
        fh = real_open(path, mode, **kwargs)
        if step == "write":
            fh.write = failure
        return fh

    monkeypatch.setattr(lake.fs, "open", tracking_open)
    if step == "mv":
        monkeypatch.setattr(lake.fs, "mv", failure)
    with pytest.raises(error):
        lake.write_bytes(b"data", KEY, "part-x.parquet")

    (temp,) = opened
    assert Path(temp).name.startswith(".tmp-")  # a temp file was made...
    assert files_on_disk(lake, KEY) == []  # ...and removed again; the target was never made


def test_a_failed_overwrite_keeps_the_old_object(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.write_bytes(b"old", KEY, "part-x.parquet")
    monkeypatch.setattr(lake.fs, "mv", _full_disk)
    with pytest.raises(OSError, match="No space left"):
        lake.write_bytes(b"new", KEY, "part-x.parquet")
    assert files_on_disk(lake, KEY) == ["part-x.parquet"]
    assert lake.read_bytes(KEY, "part-x.parquet") == b"old"


def test_read_partition_concatenates_every_named_file(lake: Lake) -> None:
    """A manifest may name several files (written by another tool): all are read, in order."""
    for name, df in (("a.parquet", frame(2)), ("b.parquet", frame(2, offset=10))):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
        lake.write_bytes(buf.getvalue(), KEY, name)
    manifest = {
        "partition": KEY,
        "files": ["a.parquet", "b.parquet"],
        "rows": 4,
        "content_hash": "sha256:x",
        "columns": ["flight", "carrier", "delay"],
    }
    lake.write_text(json.dumps(manifest), KEY, MANIFEST)
    expected = pd.concat([frame(2), frame(2, offset=10)], ignore_index=True)
    pd.testing.assert_frame_equal(lake.read_partition(KEY), expected)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("2013-01-02", "2013-01-02"), (dt.date(2013, 1, 2), "2013-01-02")],
)
def test_day_normalises(given: str | dt.date, expected: str) -> None:
    assert day(given) == expected
    assert Lake.partition("raw", "flights", given) == f"raw/flights/ds={expected}"


@pytest.mark.parametrize("bad", ["2013-02-30", "2013-13-01", "2013-1-2", "yesterday", "", None])
def test_day_rejects_bad_dates_with_a_clear_message(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        day(bad)  # type: ignore[arg-type]
    assert str(err.value) == f"partition day {bad!r} is not a date in YYYY-MM-DD form"
    assert isinstance(err.value, ValueError)  # training's `except ValueError` relies on it


def test_day_of_a_datetime_is_its_date() -> None:
    assert day(dt.datetime(2013, 1, 2, 5, 0)) == "2013-01-02"


@pytest.mark.parametrize("other_form", ["20130102", "2013-W01-1"])
def test_day_accepts_only_the_yyyy_mm_dd_form(other_form: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        day(other_form)


def test_move_moves_every_object_under_a_prefix(lake: Lake) -> None:
    src, dst = "landing/flights/ds=2013-01-02", "quarantine/flights/ds=2013-01-02"
    lake.write_bytes(b"a,b\n1,2\n", src, "flights.csv")
    lake.write_bytes(b"a,b\n3,4\n", src, "flights-2.csv")

    lake.move(src, dst)

    assert not lake.exists(src)
    assert lake.ls(dst) == ["flights-2.csv", "flights.csv"]
    assert lake.read_bytes(dst, "flights.csv") == b"a,b\n1,2\n"
    assert lake.read_bytes(dst, "flights-2.csv") == b"a,b\n3,4\n"


def test_move_of_a_missing_prefix_does_nothing(lake: Lake) -> None:
    lake.move("landing/flights/ds=2013-01-09", "quarantine/flights/ds=2013-01-09")
    assert not lake.exists("quarantine/flights/ds=2013-01-09")


def test_delete_removes_a_prefix_and_tolerates_a_missing_one(lake: Lake) -> None:
    lake.publish(KEY, frame())
    lake.delete(KEY)
    assert not lake.exists(KEY)
    assert lake.ls(KEY) == []
    lake.delete(KEY)  # already gone: no error


def test_jsonable_keeps_infinity_visible_and_drops_missing_values() -> None:
    value = {
        1: (float("nan"), float("inf"), -math.inf, np.float32(0.5), np.int64(3), np.bool_(True)),
        "missing": [pd.NA, pd.NaT, None],
        "day": dt.date(2013, 1, 2),
        "one": {"x"},
    }
    assert jsonable(value) == {
        "1": [None, "inf", "-inf", 0.5, 3, True],
        "missing": [None, None, None],
        "day": "2013-01-02",
        "one": ["x"],
    }


def test_dumps_is_sorted_indented_and_ends_with_a_newline() -> None:
    text = dumps({"b": float("nan"), "a": [1, np.float64(2.5)]})
    assert text == '{\n  "a": [\n    1,\n    2.5\n  ],\n  "b": null\n}\n'
    assert dumps({"a": 1, "b": 2}) == dumps({"b": 2, "a": 1})
