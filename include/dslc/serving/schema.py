"""What ``POST /predict`` accepts: the model signature's columns, checked record by record.

The columns and their types come from the version's ``MLmodel`` signature (``signature.inputs``);
what a value may be (null or not, its range, whole numbers) comes from the use case's feature
descriptions, derived from the same dataset descriptions ingest validates against. Validation is
hand-rolled for speed: one pass over the records that appends each checked value straight to its
column list, which is what the predictor and the prediction log consume. Every problem is
reported with the record index and the field, FastAPI-style (``{"loc": ["body", i, field]}``).

Categorical values are not refused for being outside the categories seen in training: the model
maps an unseen carrier or destination to "missing", and the drift monitor should see such values
in the prediction log rather than have them bounced here. The answer flags them instead
(:mod:`dslc.serving.unseen`).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dslc.errors import UserError

Kind = Literal["str", "float", "int", "bool"]
MAX_ERRORS = 50
"""Problems reported per request; enough to fix a client, bounded for a huge bad body."""
_STR_MAX_LEN = 64
_SIGNATURE_KINDS: dict[str, Kind] = {
    "string": "str",
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "boolean": "bool",
}


class SchemaError(UserError, ValueError):
    """A model's signature cannot be served (unknown column type, tensor signature, ...)."""


class RequestError(UserError):
    """A request the client must fix: an HTTP status and FastAPI-style error details."""

    def __init__(self, status: int, errors: list[dict[str, Any]], *, close: bool = False) -> None:
        super().__init__("; ".join(str(e["msg"]) for e in errors[:3]))
        self.status = status
        self.errors = errors
        self.close = close
        """Close the connection after answering: the rest of the body was left unread."""

    def body(self) -> dict[str, Any]:
        return {"detail": self.errors}


def error(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    """One error entry, shaped like FastAPI's validation errors."""
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


@dataclass(frozen=True)
class FieldSpec:
    """One input column: its JSON type and the values it may take."""

    name: str
    kind: Kind
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    integral: bool = False
    """A number that must be whole (an hour, a minute); sent as 7 or 7.0."""


def feature_specs() -> dict[str, FieldSpec]:
    """What each model input may hold, from the use case's serving fields."""
    from dslc.settings import get_usecase

    return {
        f.name: FieldSpec(f.name, f.kind, f.nullable, f.min, f.max, f.integral)
        for f in get_usecase().serving_fields
    }


@dataclass
class Batch:
    """Validated records as columns, plus the log-only keys.

    A column is a list (None = null), or for numeric columns of a larger request a float64
    numpy array (NaN = null); the predictor and the prediction log take either.
    """

    columns: dict[str, Any]
    ds: list[str]
    key: list[int | None]
    """The use case's log key (flights: the flight number) of each record, None if not sent."""
    n: int


class _Bad(Exception):
    """A value that does not fit its field (internal: becomes an error entry)."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _number(spec: FieldSpec) -> Callable[[Any], float | None]:
    lo = -math.inf if spec.min is None else spec.min
    hi = math.inf if spec.max is None else spec.max
    nullable, integral = spec.nullable, spec.integral or spec.kind == "int"
    what = "a whole number" if integral else "a number"
    range_msg = f"must be between {spec.min} and {spec.max}"
    type_msg = f"must be {what}{' or null' if nullable else ''}"

    def conv(v: Any) -> float | None:
        t = type(v)
        if t is float or t is int:
            if lo <= v <= hi:
                if integral and t is float and not v.is_integer():
                    raise _Bad(f"must be a whole number, got {v!r}")
                return float(v)
            if v == v:
                raise _Bad(f"{range_msg}, got {v!r}")
            v = None  # NaN (never from JSON; from Python callers) is a null
        if v is None and nullable:
            return None
        raise _Bad(f"{type_msg}, got {_json_type(v)}")

    return conv


def _string(spec: FieldSpec) -> Callable[[Any], str | None]:
    nullable = spec.nullable
    type_msg = f"must be a string{' or null' if nullable else ''}"

    def conv(v: Any) -> str | None:
        if type(v) is str:
            if 0 < len(v) <= _STR_MAX_LEN:
                return v
            raise _Bad(f"must be a non-empty string of at most {_STR_MAX_LEN} characters")
        if v is None and nullable:
            return None
        raise _Bad(f"{type_msg}, got {_json_type(v)}")

    return conv


def _boolean(spec: FieldSpec) -> Callable[[Any], bool | None]:
    def conv(v: Any) -> bool | None:
        if type(v) is bool or (v is None and spec.nullable):
            return v
        raise _Bad(f"must be true or false, got {_json_type(v)}")

    return conv


def _converter(spec: FieldSpec) -> Callable[[Any], Any]:
    if spec.kind == "str":
        return _string(spec)
    if spec.kind == "bool":
        return _boolean(spec)
    return _number(spec)


# -- the column-wise fast path ---------------------------------------------------------------
# For a request of many records, checking column by column costs a fraction of a Python call
# per value: builtins that loop in C (map, set) check the types, and numpy checks the numeric
# columns' nulls, ranges and whole numbers in one 2-D array, which then feeds the predictor and
# the prediction log without copies. It only answers "all fine": on any doubt the
# record-by-record path runs and names each problem, so both paths accept the same input.
FAST_PATH_MIN_RECORDS = 16
_NONE = type(None)
_NUMBER_TYPES = frozenset({int, float, _NONE})


def _fast_string(spec: FieldSpec) -> Callable[[list[Any]], bool]:
    allowed = frozenset({str, _NONE} if spec.nullable else {str})

    def ok(col: list[Any]) -> bool:
        types = set(map(type, col))
        if not types <= allowed:
            return False
        values = [v for v in col if v is not None] if _NONE in types else col
        if not values:
            return True
        lengths = list(map(len, values))
        return min(lengths) >= 1 and max(lengths) <= _STR_MAX_LEN

    return ok


def _fast_boolean(spec: FieldSpec) -> Callable[[list[Any]], bool]:
    allowed = frozenset({bool, _NONE} if spec.nullable else {bool})
    return lambda col: set(map(type, col)) <= allowed


@dataclass(frozen=True)
class _NumericPlan:
    """The numeric fields as arrays of bounds, for one vectorised check of all of them."""

    names: list[str]
    lo: Any  # (k, 1) float64
    hi: Any
    not_null: Any  # (k,) bool: rows that must not hold a null
    integral: Any  # (m,) int: rows that must hold whole numbers
    getter: Callable[[dict[str, Any]], Any]

    @classmethod
    def of(cls, fields: list[FieldSpec]) -> _NumericPlan:
        import numpy as np

        return cls(
            names=[f.name for f in fields],
            lo=np.array([[-math.inf if f.min is None else f.min] for f in fields]),
            hi=np.array([[math.inf if f.max is None else f.max] for f in fields]),
            not_null=np.array([not f.nullable for f in fields], dtype=bool),
            integral=np.array(
                [i for i, f in enumerate(fields) if f.integral or f.kind == "int"], dtype=np.intp
            ),
            getter=operator.itemgetter(*[f.name for f in fields]),
        )

    def check(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """{name: float64 array} (null = NaN), or None if any value is off."""
        import itertools

        import numpy as np

        rows = list(map(self.getter, records))  # KeyError on a missing field
        cols = list(zip(*rows, strict=True)) if len(self.names) > 1 else [rows]
        if not set(map(type, itertools.chain.from_iterable(cols))) <= _NUMBER_TYPES:
            return None
        arr = np.array(cols, dtype=np.float64)  # None -> NaN
        if self.not_null.any() and np.isnan(arr[self.not_null]).any():
            return None
        with np.errstate(invalid="ignore"):
            if ((arr < self.lo) | (arr > self.hi)).any():
                return None
            whole = arr[self.integral]
            if ((whole != np.floor(whole)) & ~np.isnan(whole)).any():
                return None
        return {name: arr[i] for i, name in enumerate(self.names)}


def log_key_spec() -> FieldSpec | None:
    """The use case's log key (an optional whole-number id beside the inputs), if it has one."""
    from dslc.settings import get_usecase

    key = get_usecase().log_key
    if key is None:
        return None
    return FieldSpec(key.name, "int", True, key.min, key.max, True)


class InputSchema:
    """The records ``POST /predict`` accepts, and their validation into a :class:`Batch`."""

    def __init__(
        self, fields: list[FieldSpec], source: str = "", key: FieldSpec | bool | None = True
    ) -> None:
        """``key``: the log key's spec, None for none, True for the use case's."""
        names = [f.name for f in fields]
        if not fields or len(set(names)) != len(names):
            raise SchemaError(f"a serving schema needs distinct, non-empty columns: {names}")
        self.key = log_key_spec() if key is True else key or None
        self.optional = ("ds", self.key.name) if self.key is not None else ("ds",)
        """Keys a record may carry besides the model's inputs (they go to the prediction log)."""
        self._key_conv = _number(self.key) if self.key is not None else None
        clash = set(names) & set(self.optional)
        if clash:
            raise SchemaError(f"model inputs {sorted(clash)} clash with the log-only keys")
        self.fields = tuple(fields)
        self.names = names
        self.source = source
        self._convs = [(f.name, _converter(f)) for f in fields]
        numeric = [f for f in fields if f.kind in ("float", "int")]
        self._numeric = _NumericPlan.of(numeric) if numeric else None
        self._fast_other = [
            (f.name, _fast_string(f) if f.kind == "str" else _fast_boolean(f))
            for f in fields
            if f.kind in ("str", "bool")
        ]
        self._allowed = frozenset(names) | frozenset(self.optional)
        self._days: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"InputSchema({len(self.fields)} columns from {self.source or 'code'})"

    # -- construction --------------------------------------------------------------------
    @classmethod
    def default(cls) -> InputSchema:
        """The schema of the use case's model: its inputs with their serving specs."""
        from dslc.settings import get_usecase

        specs = feature_specs()
        usecase = get_usecase()
        return cls(
            [specs[name] for name in usecase.model.features], source=f"use case {usecase.name}"
        )

    @classmethod
    def from_signature(cls, inputs: list[dict[str, Any]], source: str = "") -> InputSchema:
        """From MLflow's column-based ``signature.inputs``, with ranges from the datasets."""
        specs = feature_specs()
        fields: list[FieldSpec] = []
        for col in inputs:
            name, mtype = col.get("name"), col.get("type")
            if not isinstance(name, str) or mtype not in _SIGNATURE_KINDS:
                raise SchemaError(
                    f"{source or 'the signature'}: input {col} is not a named column of a "
                    f"supported type ({', '.join(_SIGNATURE_KINDS)}); only column-based "
                    "signatures can be served"
                )
            kind = _SIGNATURE_KINDS[mtype]
            known = specs.get(name)
            optional = col.get("required") is False
            if known is not None and (known.kind == "str") == (kind == "str"):
                fields.append(
                    FieldSpec(
                        name,
                        kind,
                        known.nullable or optional,
                        known.min,
                        known.max,
                        known.integral or kind == "int",
                    )
                )
            else:
                fields.append(FieldSpec(name, kind, optional))
        return cls(fields, source=source)

    @classmethod
    def from_model_dir(cls, path: Path) -> InputSchema:
        """From a downloaded MLflow model directory; the default schema if it has no signature."""
        inputs = read_signature_inputs(path)
        if inputs is None:
            return cls.default()
        return cls.from_signature(inputs, source=f"{path}/MLmodel")

    # -- validation ----------------------------------------------------------------------
    def validate(self, records: Any, *, default_ds: str, max_records: int) -> Batch:
        """Check parsed JSON against the schema; raise :class:`RequestError` naming each problem."""
        if type(records) is not list:
            raise RequestError(
                422, [error((), "the body must be a JSON array of records", "list_type")]
            )
        n = len(records)
        if n == 0:
            raise RequestError(
                422, [error((), "the body is an empty array: send records", "empty")]
            )
        if n > max_records:
            raise RequestError(
                413,
                [
                    error(
                        (),
                        f"{n} records in one request; at most {max_records} are accepted: "
                        "split the batch",
                        "too_many_records",
                    )
                ],
            )
        if n >= FAST_PATH_MIN_RECORDS:
            batch = self._validate_fast(records, default_ds)
            if batch is not None:
                return batch
        return self._validate_slow(records, default_ds)

    def _validate_fast(self, records: list[Any], default_ds: str) -> Batch | None:
        """Column by column; None when anything is off (the slow path then says what)."""
        if set(map(type, records)) != {dict}:
            return None
        columns: dict[str, Any] = {}
        try:
            for name, ok in self._fast_other:
                col = [r[name] for r in records]
                if not ok(col):
                    return None
                columns[name] = col
            if self._numeric is not None:
                numeric = self._numeric.check(records)
                if numeric is None:
                    return None
                columns.update(numeric)
        except KeyError:
            return None
        n = len(records)
        if sum(map(len, records)) == n * len(self.fields):  # no optional or unknown keys
            return Batch(columns, [default_ds] * n, [None] * n, n)
        errors: list[dict[str, Any]] = []
        ds, key = self._log_keys(records, default_ds, errors)
        if errors or any(not rec.keys() <= self._allowed for rec in records):
            return None
        return Batch(columns, ds, key, n)

    def _log_keys(
        self, records: list[Any], default_ds: str, errors: list[dict[str, Any]]
    ) -> tuple[list[str], list[int | None]]:
        ds = [self._day(i, r.get("ds"), default_ds, errors) for i, r in enumerate(records)]
        return ds, [self._key(i, r, errors) for i, r in enumerate(records)]

    def _validate_slow(self, records: list[Any], default_ds: str) -> Batch:
        n = len(records)
        columns: dict[str, list[Any]] = {name: [] for name in self.names}
        plan = [(name, conv, columns[name]) for name, conv in self._convs]
        ds: list[str] = []
        key: list[int | None] = []
        errors: list[dict[str, Any]] = []
        for i, rec in enumerate(records):
            if type(rec) is dict:
                self._record(i, rec, plan, errors)
                if len(rec) > len(plan):  # carries log-only keys (or unknown ones)
                    ds.append(self._day(i, rec.get("ds"), default_ds, errors))
                    key.append(self._key(i, rec, errors))
                else:
                    ds.append(default_ds)
                    key.append(None)
            else:
                errors.append(
                    error(
                        (i,),
                        f"record {i} must be a JSON object, got {_json_type(rec)}",
                        "dict_type",
                    )
                )
            if len(errors) >= MAX_ERRORS:
                break
        if errors:
            raise RequestError(422, errors[:MAX_ERRORS])
        return Batch(columns, ds, key, n)

    def _record(
        self,
        i: int,
        rec: dict[str, Any],
        plan: list[tuple[str, Callable[[Any], Any], list[Any]]],
        errors: list[dict[str, Any]],
    ) -> None:
        missing = 0
        for name, conv, col in plan:
            try:
                col.append(conv(rec[name]))
            except KeyError:
                missing += 1
                errors.append(error((i, name), f"record {i}: field {name!r} is missing", "missing"))
            except _Bad as e:
                errors.append(error((i, name), f"record {i}: field {name!r} {e}", "value_error"))
        known = len(plan) - missing + sum(1 for k in self.optional if k in rec)
        if len(rec) > known:
            for key in [k for k in rec if k not in self._allowed][:5]:
                errors.append(
                    error(
                        (i, key),
                        f"record {i}: unknown field {key!r}; the model takes "
                        f"{', '.join(self.names)} (and optional {', '.join(self.optional)})",
                        "extra_forbidden",
                    )
                )

    def _day(self, i: int, value: Any, default: str, errors: list[dict[str, Any]]) -> str:
        if value is None:
            return default
        ok = self._days.get(value) if type(value) is str else False
        if ok is None:
            from dslc.lake import day

            try:
                ok = day(value) == value
            except ValueError:
                ok = False
            if len(self._days) < 10_000:
                self._days[value] = ok
        if not ok:
            errors.append(
                error(
                    (i, "ds"),
                    f"record {i}: field 'ds' must be a date YYYY-MM-DD, got {value!r}",
                    "date",
                )
            )
        return str(value)

    def _key(self, i: int, rec: dict[str, Any], errors: list[dict[str, Any]]) -> int | None:
        if self.key is None or self._key_conv is None:
            return None
        name = self.key.name
        try:
            v = self._key_conv(rec.get(name))
        except _Bad as e:
            errors.append(error((i, name), f"record {i}: field {name!r} {e}", "value_error"))
            return None
        return None if v is None else int(v)

    # -- documentation and self-test -------------------------------------------------------
    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of one record (for the OpenAPI document)."""
        props: dict[str, Any] = {}
        for f in self.fields:
            base = {"str": "string", "float": "number", "int": "integer", "bool": "boolean"}[f.kind]
            if f.integral and f.kind == "float":
                base = "integer"
            prop: dict[str, Any] = {"type": [base, "null"] if f.nullable else base}
            if f.min is not None:
                prop["minimum"] = f.min
            if f.max is not None:
                prop["maximum"] = f.max
            if f.kind == "str":
                prop.update(minLength=1, maxLength=_STR_MAX_LEN)
            props[f.name] = prop
        props["ds"] = {
            "type": ["string", "null"],
            "format": "date",
            "description": "The record's day (partitions the prediction log); "
            "default: today (UTC).",
        }
        if self.key is not None:
            props[self.key.name] = {
                "type": ["integer", "null"],
                "minimum": self.key.min,
                "maximum": self.key.max,
                "description": "The record's id, kept in the prediction log to join its label.",
            }
        return {
            "title": "Record",
            "type": "object",
            "properties": props,
            "required": list(self.names),
            "additionalProperties": False,
        }

    def sample(self) -> dict[str, list[Any]]:
        """Two plausible rows (the second with every nullable value null), for a self-test."""
        from dslc.settings import get_usecase

        cats = {f.name: f.example for f in get_usecase().serving_fields if f.example is not None}
        out: dict[str, list[Any]] = {}
        for f in self.fields:
            if f.kind == "str":
                value: Any = cats.get(f.name, "x")
            elif f.kind == "bool":
                value = False
            else:
                lo = 0.0 if f.min is None else f.min
                hi = lo if f.max is None else f.max
                value = float(math.floor((lo + hi) / 2))
            out[f.name] = [value, None if f.nullable else value]
        return out


def read_signature_inputs(path: Path) -> list[dict[str, Any]] | None:
    """``signature.inputs`` of the model directory's MLmodel, or None if it has none."""
    import yaml

    try:
        meta = yaml.safe_load((path / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SchemaError(f"cannot read {path / 'MLmodel'}: {e}") from e
    inputs = ((meta or {}).get("signature") or {}).get("inputs")
    if not inputs:
        return None
    parsed = json.loads(inputs) if isinstance(inputs, str) else inputs
    if not isinstance(parsed, list):
        raise SchemaError(f"{path / 'MLmodel'}: signature.inputs is not a list of columns")
    return parsed


def read_input_example(path: Path) -> dict[str, list[Any]] | None:
    """The saved input example as columns (NaN -> None), or None if the model has none."""
    import yaml

    try:
        meta = yaml.safe_load((path / "MLmodel").read_text()) or {}
        info = meta.get("saved_input_example_info") or {}
        if not info.get("artifact_path"):
            return None
        # MLflow writes NaN literals, which only the stdlib parser reads.
        raw = json.loads((path / info["artifact_path"]).read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not (isinstance(raw, dict) and "columns" in raw and "data" in raw):
        return None
    cols: dict[str, list[Any]] = {str(c): [] for c in raw["columns"]}
    for row in raw["data"]:
        for name, value in zip(cols, row, strict=False):
            cols[name].append(None if isinstance(value, float) and math.isnan(value) else value)
    return cols
