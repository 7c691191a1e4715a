"""Input validation of POST /predict: the signature's columns, the datasets' ranges, errors
that name the record and the field, and the fast column-wise path agreeing with the slow one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml

from dslc.serving.schema import (
    FAST_PATH_MIN_RECORDS,
    InputSchema,
    RequestError,
    SchemaError,
    read_input_example,
)
from dslc.usecases.flights.model import MODEL_FEATURES

GOOD: dict[str, Any] = {
    "carrier": "UA",
    "origin": "EWR",
    "dest": "ORD",
    "distance": 719,
    "sched_dep_hour": 7,
    "sched_dep_minute": 30.0,
    "sched_arr_hour": 9,
    "sched_arr_minute": 5,
    "day_of_week": 2,
    "temp": 30.2,
    "dewp": None,
    "humid": 50,
    "wind_speed": 10.4,
    "wind_gust": None,
    "precip": 0,
    "pressure": 1010.5,
    "visib": 10,
}
DS = "2013-01-08"


@pytest.fixture(scope="module")
def schema() -> InputSchema:
    return InputSchema.default()


def validate(schema: InputSchema, records: Any, max_records: int = 1000):
    return schema.validate(records, default_ds=DS, max_records=max_records)


def records(n: int, **changes: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(n)
    out = []
    for i in range(n):
        rec = dict(GOOD)
        rec["temp"] = None if i % 7 == 0 else float(np.round(rng.normal(40, 10), 1))
        rec["sched_dep_hour"] = int(rng.integers(5, 23))
        out.append(rec)
    for key, value in changes.items():
        index, field = key.split("__")
        out[int(index[1:])][field] = value
    return out


def as_lists(columns: dict[str, Any]) -> dict[str, list[Any]]:
    """Columns with arrays turned back into lists, NaN -> None, for comparison."""
    out = {}
    for name, values in columns.items():
        vals = values.tolist() if isinstance(values, np.ndarray) else list(values)
        out[name] = [None if isinstance(v, float) and math.isnan(v) else v for v in vals]
    return out


def test_default_schema_is_the_model_features_with_dataset_ranges(schema: InputSchema):
    assert schema.names == MODEL_FEATURES
    spec = {f.name: f for f in schema.fields}
    assert spec["carrier"].kind == "str" and not spec["carrier"].nullable
    assert (spec["pressure"].min, spec["pressure"].max, spec["pressure"].nullable) == (
        800,
        1100,
        True,
    )
    assert (spec["sched_dep_hour"].min, spec["sched_dep_hour"].max) == (0, 23)
    assert spec["sched_dep_hour"].integral and not spec["distance"].nullable


@pytest.mark.parametrize("n", [1, FAST_PATH_MIN_RECORDS + 5, 300])
def test_good_records_become_columns(schema: InputSchema, n: int):
    recs = records(n)
    recs[0] = {**recs[0], "ds": "2013-02-01", "flight": 1545}
    batch = validate(schema, recs)
    assert batch.n == n
    cols = as_lists(batch.columns)
    assert list(cols) == MODEL_FEATURES
    assert cols["carrier"] == ["UA"] * n
    assert cols["temp"] == [r["temp"] for r in recs]
    assert cols["sched_dep_hour"] == [float(r["sched_dep_hour"]) for r in recs]
    assert batch.ds == ["2013-02-01"] + [DS] * (n - 1)
    assert batch.key == [1545] + [None] * (n - 1)


def test_fast_and_slow_paths_agree(schema: InputSchema):
    recs = records(64)
    recs[3] = {**recs[3], "ds": "2013-01-09"}
    fast = schema._validate_fast(recs, DS)
    slow = schema._validate_slow(recs, DS)
    assert fast is not None, "the fast path should take valid records"
    assert as_lists(fast.columns) == as_lists(slow.columns)
    assert (fast.ds, fast.key) == (slow.ds, slow.key)


BAD_FIELD_CASES = [
    ("missing", lambda r: r.pop("dest"), "dest", "missing"),
    ("string for a number", lambda r: r.update(temp="30"), "temp", "must be a number or null"),
    ("bool for a number", lambda r: r.update(distance=True), "distance", "must be a number"),
    ("number for a string", lambda r: r.update(carrier=9), "carrier", "must be a string"),
    ("empty string", lambda r: r.update(origin=""), "origin", "non-empty string"),
    ("null where required", lambda r: r.update(distance=None), "distance", "must be a number"),
    ("out of range", lambda r: r.update(day_of_week=7), "day_of_week", "between 0 and 6"),
    ("below range", lambda r: r.update(pressure=10.0), "pressure", "between 800 and 1100"),
    ("not whole", lambda r: r.update(sched_dep_minute=30.5), "sched_dep_minute", "whole"),
    ("unknown field", lambda r: r.update(dep_delay=12), "dep_delay", "unknown field"),
    ("a list value", lambda r: r.update(humid=[1]), "humid", "got array"),
    ("bad ds", lambda r: r.update(ds="2013-13-01"), "ds", "YYYY-MM-DD"),
    ("ds not a string", lambda r: r.update(ds=20130101), "ds", "YYYY-MM-DD"),
    ("bad flight", lambda r: r.update(flight="UA1"), "flight", "whole number"),
]


@pytest.mark.parametrize(
    ("case", "change", "field", "message"), BAD_FIELD_CASES, ids=[c[0] for c in BAD_FIELD_CASES]
)
@pytest.mark.parametrize("n", [1, 40], ids=["one record", "fast path"])
def test_bad_field_is_named_with_its_record(
    schema: InputSchema, case: str, change: Any, field: str, message: str, n: int
):
    recs = records(n)
    bad = n - 1  # the last record, so the fast path has to look past the good ones
    change(recs[bad])
    with pytest.raises(RequestError) as err:
        validate(schema, recs)
    assert err.value.status == 422
    errors = err.value.errors
    assert len(errors) == 1, errors
    assert errors[0]["loc"] == ["body", bad, field]
    assert f"record {bad}" in errors[0]["msg"] and repr(field) in errors[0]["msg"]
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"carrier": "UA"}, 422, "JSON array"),
        ("x", 422, "JSON array"),
        ([], 422, "empty"),
        ([1], 422, "record 0 must be a JSON object"),
        ([GOOD] * 11, 413, "at most 10"),
    ],
)
def test_bad_body(schema: InputSchema, body: Any, status: int, message: str):
    with pytest.raises(RequestError) as err:
        validate(schema, body, max_records=10)
    assert err.value.status == status
    assert message in err.value.errors[0]["msg"]


def test_every_problem_is_reported_up_to_a_bound(schema: InputSchema):
    recs = records(200)
    for rec in recs:
        rec["temp"] = "warm"
    recs[1]["carrier"] = None
    with pytest.raises(RequestError) as err:
        validate(schema, recs)
    locs = [e["loc"] for e in err.value.errors]
    assert locs[:3] == [["body", 0, "temp"], ["body", 1, "carrier"], ["body", 1, "temp"]]
    assert len(locs) == 50


def test_nan_from_python_is_a_null_on_both_paths(schema: InputSchema):
    for n in (1, 40):
        recs = records(n)
        recs[-1]["wind_speed"] = math.nan
        assert as_lists(validate(schema, recs).columns)["wind_speed"][-1] is None
        recs[-1]["distance"] = math.nan
        with pytest.raises(RequestError, match="'distance' must be a number"):
            validate(schema, recs)


def write_mlmodel(path: Path, inputs: list[dict[str, Any]] | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"flavors": {}}
    if inputs is not None:
        meta["signature"] = {"inputs": json.dumps(inputs), "outputs": None}
    (path / "MLmodel").write_text(yaml.safe_dump(meta))
    return path


def signature_of_features(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    cols = []
    for name in MODEL_FEATURES:
        kind = "string" if name in ("carrier", "origin", "dest") else "double"
        cols.append({"type": kind, "name": name, "required": True, **overrides.get(name, {})})
    return cols


def test_schema_comes_from_the_mlmodel_signature(tmp_path: Path):
    inputs = signature_of_features(distance={"required": False})
    inputs.append({"type": "long", "name": "seats", "required": True})
    schema = InputSchema.from_model_dir(write_mlmodel(tmp_path / "m", inputs))
    assert schema.names == [*MODEL_FEATURES, "seats"]
    spec = {f.name: f for f in schema.fields}
    assert spec["distance"].nullable  # the signature says optional
    assert spec["temp"].nullable and spec["temp"].min == -60  # the dataset says so
    assert spec["seats"].kind == "int"
    ok = validate(schema, [{**GOOD, "distance": None, "seats": 180}])
    assert ok.columns["seats"] == [180.0]
    with pytest.raises(RequestError, match="'seats' is missing"):
        validate(schema, [GOOD])
    with pytest.raises(RequestError, match="'seats' must be a whole number"):
        validate(schema, [{**GOOD, "seats": 1.5}])


def test_a_model_without_signature_gets_the_default_schema(tmp_path: Path):
    schema = InputSchema.from_model_dir(write_mlmodel(tmp_path / "m", None))
    assert schema.names == MODEL_FEATURES


@pytest.mark.parametrize(
    "inputs",
    [
        [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 17]}}],
        [{"type": "binary", "name": "blob"}],
        [{"type": "string", "name": "ds"}],
    ],
    ids=["tensor", "binary", "clashes with ds"],
)
def test_unservable_signatures_are_refused(tmp_path: Path, inputs: list[dict[str, Any]]):
    with pytest.raises(SchemaError):
        InputSchema.from_model_dir(write_mlmodel(tmp_path / "m", inputs))


def test_input_example_is_read_with_nan_as_null(tmp_path: Path):
    path = write_mlmodel(tmp_path / "m", None)
    meta = yaml.safe_load((path / "MLmodel").read_text())
    meta["saved_input_example_info"] = {"artifact_path": "input_example.json"}
    (path / "MLmodel").write_text(yaml.safe_dump(meta))
    (path / "input_example.json").write_text(
        '{"columns": ["carrier", "temp"], "data": [["UA", NaN], ["AA", 3.5]]}'
    )
    assert read_input_example(path) == {"carrier": ["UA", "AA"], "temp": [None, 3.5]}
    assert read_input_example(tmp_path / "nothing") is None


def test_openapi_record_schema_agrees_with_the_validator(schema: InputSchema):
    record_schema = schema.json_schema()
    assert record_schema["required"] == MODEL_FEATURES
    assert record_schema["additionalProperties"] is False
    good = [GOOD, {**GOOD, "ds": "2013-01-01", "flight": 12}]
    bad = [
        {k: v for k, v in GOOD.items() if k != "dest"},
        {**GOOD, "temp": "30"},
        {**GOOD, "day_of_week": 7},
        {**GOOD, "extra": 1},
        {**GOOD, "sched_dep_hour": 7.5},
    ]
    for rec in good:
        jsonschema.validate(rec, record_schema)
        validate(schema, [rec])
    for rec in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(rec, record_schema)
        with pytest.raises(RequestError):
            validate(schema, [rec])


def test_self_test_sample_is_valid(schema: InputSchema):
    sample = schema.sample()
    rows = [{k: v[i] for k, v in sample.items()} for i in range(2)]
    assert validate(schema, rows).n == 2
    assert rows[1]["temp"] is None and rows[1]["carrier"] == rows[0]["carrier"]
