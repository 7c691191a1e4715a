"""Validate a landed day with Great Expectations before anything is published.

The expectation suite is *generated* from the dataset description (:class:`dslc.usecase.Dataset`),
so what is checked is reviewable code derived from the one description:

* table: the columns match the expected set exactly; 1 <= rows <= ``max_rows_per_day``;
* per column: it exists; its pandas dtype fits its kind; required columns have no nulls;
  ``allowed`` value sets; ``min``/``max`` ranges for numerics (which also reject +/-inf);
* the dataset key is unique (no duplicate rows for one key).

:func:`validate` runs the suite with an ephemeral GX context on the whole frame that
``extract`` read with plain ``pandas.read_csv``. :func:`validate_pandas` implements the same
checks in plain pandas: it is the benchmark floor and the tests' reference, not the pipeline.

GX behaviours worked around here:

* **dtypes.** ``expect_column_values_to_be_in_type_list`` does not recognise pandas 3's default
  text dtype (``str``: ``StringDtype(na_value=nan)``) under any type name, and
  ``expect_column_type_to_be`` takes one type only. A small custom expectation,
  ``expect_column_dtype_to_be_in_list``, compares the dtype's pandas name
  (``int64``, ``float64``, ``object``, ``str``, ``string``) with an allowed list.
  ``int`` columns accept ``int64`` only: a blank or fractional cell makes pandas read
  ``float64``, and the raw zone stores these columns as integers. ``float`` columns accept
  ``int64`` and ``float64``; ``str`` columns accept ``str``, ``string`` and ``object``.
* **Dependent expectations.** GX raises inside a metric for a range check on a text column, and
  for any column expectation on a missing column. Those results would be noise next to the real
  failure, so :func:`validate` looks at the frame's columns and dtypes first and does not run
  the expectations whose precondition failed (reported as ``skipped``, with the reason): a
  missing column keeps only ``expect_column_to_exist``; a column of the wrong dtype keeps its
  dtype and not-null checks; a header-only file keeps the table checks.
* **inf.** ``expect_column_values_to_be_between`` flags +/-inf against finite bounds, but not on
  an open side; an open bound is replaced by +/-``sys.float_info.max`` so inf always fails.
* **Row counts for a dtype failure.** GX reports only the observed dtype; on that (rare) failure
  path the offending cells are counted here (text that does not parse as a number, or the blank
  and fractional cells that made an int column ``float64``).
"""

from __future__ import annotations

import html
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from dslc.lake import jsonable

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

    from dslc.usecase import Column, Dataset

logger = logging.getLogger(__name__)

__all__ = [
    "CheckResult",
    "Failure",
    "ValidationReport",
    "build_suite",
    "validate",
    "validate_pandas",
]

DTYPES: dict[str, tuple[str, ...]] = {
    "int": ("int64",),
    "float": ("int64", "float64"),
    "str": ("str", "string", "object"),
}
"""The pandas dtype names (``str(series.dtype)``) accepted for each column kind."""

VERDICT_FORMAT = "BOOLEAN_ONLY"
"""First pass: pass/fail only. Any richer format makes GX copy the whole frame (filtered) for
each column expectation to collect unexpected values (B6)."""
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "BASIC",
    "partial_unexpected_count": 20,
    "return_unexpected_index_query": False,
}
"""Second pass, failed expectations only: counts and a few unexpected values, without the
pandas index query (SUMMARY's value counts and index lists cost more full-frame copies)."""
N_EXAMPLES = 3
"""How many offending values a failure quotes."""

# -- the checks, derived from the dataset description -----------------------------------------


@dataclass(frozen=True)
class Check:
    """One expectation, engine-neutral: the GX suite and the pandas reference both derive
    from the list :func:`checks` returns."""

    id: str
    """Stable name, e.g. ``distance:between``; GX carries it in ``meta["check"]``."""
    type: str
    """The GX expectation type, e.g. ``expect_column_values_to_be_between``."""
    kwargs: tuple[tuple[str, Any], ...]
    description: str
    column: str | None = None
    columns: tuple[str, ...] = ()
    level: str = "value"
    """``table``, ``exist``, ``dtype`` or ``value``: what a check depends on."""

    @property
    def target(self) -> str | list[str] | None:
        return self.column if self.column is not None else (list(self.columns) or None)

    @property
    def label(self) -> str:
        """``type(column)`` as failure messages name it."""
        if self.column is not None:
            return f"{self.type}({self.column})"
        if self.columns:
            return f"{self.type}({', '.join(self.columns)})"
        return self.type


def _bounds(col: Column) -> tuple[float, float]:
    lo = -sys.float_info.max if col.min is None else col.min
    hi = sys.float_info.max if col.max is None else col.max
    return lo, hi


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


def _column_checks(col: Column) -> list[Check]:
    c = col.name
    out = [
        Check(f"{c}:exists", "expect_column_to_exist", (("column", c),),
              f"column {c} is present", column=c, level="exist"),
        Check(f"{c}:dtype", "expect_column_dtype_to_be_in_list",
              (("column", c), ("dtypes", list(DTYPES[col.kind]))),
              f"{c} is a {col.kind} column (dtype one of {', '.join(DTYPES[col.kind])})",
              column=c, level="dtype"),
    ]  # fmt: skip
    if col.required:
        out.append(
            Check(f"{c}:not_null", "expect_column_values_to_not_be_null", (("column", c),),
                  f"{c} is required: no empty cells", column=c, level="dtype")
        )  # fmt: skip
    if col.allowed is not None:
        values = sorted(col.allowed)
        out.append(
            Check(f"{c}:in_set", "expect_column_values_to_be_in_set",
                  (("column", c), ("value_set", values)),
                  f"{c} takes one of {len(values)} known values", column=c)
        )  # fmt: skip
    if col.kind in ("int", "float") and (col.min is not None or col.max is not None):
        lo, hi = _bounds(col)
        out.append(
            Check(f"{c}:between", "expect_column_values_to_be_between",
                  (("column", c), ("min_value", _num(lo)), ("max_value", _num(hi))),
                  f"{c} is finite and within [{col.min}, {col.max}]", column=c)
        )  # fmt: skip
    return out


@lru_cache(maxsize=64)
def checks(dataset: Dataset) -> tuple[Check, ...]:
    """The checks for a dataset, in a stable order (table, then column by column, then key)."""
    out = [
        Check("table:columns", "expect_table_columns_to_match_set",
              (("column_set", list(dataset.column_names)), ("exact_match", True)),
              f"the file has exactly the {len(dataset.columns)} {dataset.name} columns",
              level="table"),
        Check("table:rows", "expect_table_row_count_to_be_between",
              (("min_value", 1), ("max_value", dataset.max_rows_per_day)),
              f"a day has 1 to {dataset.max_rows_per_day} rows", level="table"),
    ]  # fmt: skip
    for col in dataset.columns:
        out.extend(_column_checks(col))
    out.append(
        Check("key:unique", "expect_compound_columns_to_be_unique",
              (("column_list", list(dataset.key)), ("ignore_row_if", "never")),
              f"no two rows share the key ({', '.join(dataset.key)})",
              columns=tuple(dataset.key), level="value")
    )  # fmt: skip
    return tuple(out)


def _dtype_ok(dtype_name: str, kind: str) -> bool:
    return dtype_name in DTYPES[kind]


def _skipped(df: pd.DataFrame, dataset: Dataset) -> dict[str, str]:
    """Checks whose precondition fails on this frame -> the reason they are not run."""
    present = {str(c) for c in df.columns}
    dtypes = {str(c): str(t) for c, t in df.dtypes.items()}
    empty = len(df) == 0
    skip: dict[str, str] = {}
    for chk in checks(dataset):
        cols = [chk.column] if chk.column is not None else list(chk.columns)
        if chk.level in ("table",) or not cols:
            continue
        missing = [c for c in cols if c not in present]
        if chk.level != "exist" and missing:
            skip[chk.id] = f"column missing: {', '.join(missing)}"
        elif chk.level == "dtype" and empty and chk.type == "expect_column_dtype_to_be_in_list":
            skip[chk.id] = "no rows: dtype cannot be inferred from a header-only file"
        elif chk.level == "value" and empty:
            skip[chk.id] = "no rows"
        elif chk.level == "value" and chk.column is not None:
            kind = dataset.column(chk.column).kind
            if not _dtype_ok(dtypes[chk.column], kind):
                skip[chk.id] = f"{chk.column} has dtype {dtypes[chk.column]}, not {kind}"
    return skip


# -- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A failed expectation, named so a person can act on it."""

    expectation: str
    column: str | list[str] | None
    unexpected_count: int | None
    """Offending rows; None for table-level expectations."""
    detail: str

    @property
    def label(self) -> str:
        if isinstance(self.column, list):
            return f"{self.expectation}({', '.join(self.column)})"
        return f"{self.expectation}({self.column})" if self.column else self.expectation

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "unexpected_count": self.unexpected_count,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class CheckResult:
    """One expectation's outcome: ``passed``, ``failed`` or ``skipped`` (precondition failed)."""

    check: str
    expectation: str
    column: str | list[str] | None
    status: str
    unexpected_count: int | None
    detail: str
    description: str

    @property
    def success(self) -> bool | None:
        return None if self.status == "skipped" else self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "expectation": self.expectation,
            "column": self.column,
            "status": self.status,
            "unexpected_count": self.unexpected_count,
            "detail": self.detail,
            "description": self.description,
        }


@dataclass
class ValidationReport:
    """The verdict on one landed frame."""

    success: bool
    dataset: str
    rows: int
    failures: list[Failure]
    results: list[CheckResult]
    ds: str | None = None
    engine: str = "great_expectations"
    gx_result: Any = field(default=None, repr=False, compare=False)
    """The GX ``ExpectationSuiteValidationResult`` (GX engine only), for Data Docs HTML."""

    @property
    def evaluated(self) -> int:
        return sum(1 for r in self.results if r.status != "skipped")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "ds": self.ds,
            "engine": self.engine,
            "success": self.success,
            "rows": self.rows,
            "expectations": len(self.results),
            "evaluated": self.evaluated,
            "failed": len(self.failures),
            "failures": [f.to_dict() for f in self.failures],
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    def message(self) -> str:
        head = f"{self.dataset} {self.ds}" if self.ds else self.dataset
        if self.success:
            skipped = len(self.results) - self.evaluated
            tail = f" ({skipped} skipped)" if skipped else ""
            return f"{head}: all {self.evaluated} expectations passed on {self.rows} rows{tail}"
        parts = [f"{f.label}: {f.detail}" for f in self.failures]
        return (
            f"{head}: {len(self.failures)} of {len(self.results)} expectations failed "
            f"({self.rows} rows): " + "; ".join(parts)
        )

    def to_html(self) -> str:
        """GX Data Docs HTML for the validation result when GX ran it, else a plain table."""
        if self.gx_result is not None:
            try:
                return _gx_html(self.gx_result)
            except Exception:  # rendering must never fail a validation
                logger.warning("GX Data Docs rendering failed; plain HTML instead", exc_info=True)
        return _plain_html(self)


# -- helpers shared by both engines -------------------------------------------------------------


def _examples(values: list[Any]) -> str:
    """A few distinct offending values, quoted."""
    shown = [_key_text(v) if isinstance(v, dict) else repr(jsonable(v)) for v in values]
    return ", ".join(list(dict.fromkeys(shown))[:N_EXAMPLES])


def _key_text(v: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={jsonable(x)}" for k, x in v.items()) + ")"


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def _dtype_problem(df: pd.DataFrame, col: str, kind: str) -> tuple[int | None, list[Any]]:
    """For a dtype failure: the number of cells that do not fit ``kind``, and a few of them."""
    import pandas as pd

    s = df[col]
    if kind == "str":
        return None, []
    nonnull = s[s.notna()]
    as_num = pd.to_numeric(nonnull, errors="coerce")
    bad = nonnull[as_num.isna()]
    if kind == "int":
        ok = as_num.notna()
        frac = nonnull[ok][(as_num[ok] % 1) != 0]
        blanks = int(s.isna().sum())
        examples = [*bad.head(N_EXAMPLES).tolist(), *frac.head(N_EXAMPLES).tolist()]
        return len(bad) + len(frac) + blanks, examples
    return len(bad), bad.head(N_EXAMPLES).tolist()


def _detail(
    chk: Check, raw: dict[str, Any], df: pd.DataFrame, dataset: Dataset
) -> tuple[int | None, str]:
    """(offending rows, readable detail) for a failed check from the engine's raw result."""
    n = raw.get("unexpected_count")
    ex = raw.get("examples") or []
    if chk.type == "expect_table_columns_to_match_set":
        mism = raw.get("mismatched") or {}
        bits = [f"{k} {sorted(mism[k])}" for k in ("missing", "unexpected") if mism.get(k)]
        return None, "columns " + ("; ".join(bits) or str(raw.get("observed")))
    if chk.type == "expect_table_row_count_to_be_between":
        kw = dict(chk.kwargs)
        return None, f"{raw.get('observed')} rows, expected {kw['min_value']} to {kw['max_value']}"
    if chk.type == "expect_column_to_exist":
        return None, "column missing"
    if chk.type == "expect_column_dtype_to_be_in_list":
        assert chk.column is not None
        kind = dataset.column(chk.column).kind
        cnt, bad = _dtype_problem(df, chk.column, kind)
        text = f"dtype {raw.get('observed')}, expected {' or '.join(DTYPES[kind])}"
        if cnt is not None:
            what = "empty or not an integer" if kind == "int" else "not numeric"
            text += f": {_rows(cnt)} {what}" + (f" (e.g. {_examples(bad)})" if bad else "")
        return cnt, text
    n = int(n or 0)
    eg = f" (e.g. {_examples(ex)})" if ex else ""
    if chk.type == "expect_column_values_to_not_be_null":
        return n, f"{_rows(n)} null"
    if chk.type == "expect_column_values_to_be_in_set":
        return n, f"{_rows(n)} not in set{eg}"
    if chk.type == "expect_column_values_to_be_between":
        col = dataset.column(chk.column or "")
        return n, f"{_rows(n)} outside [{col.min}, {col.max}] or not finite{eg}"
    if chk.type == "expect_compound_columns_to_be_unique":
        return n, f"{_rows(n)} share a key with another row{eg}"
    return n, f"{_rows(n)} unexpected{eg}"


def _assemble(
    df: pd.DataFrame,
    dataset: Dataset,
    raws: dict[str, dict[str, Any]],
    skipped: dict[str, str],
    ds: str | None,
    engine: str,
) -> ValidationReport:
    results: list[CheckResult] = []
    failures: list[Failure] = []
    for chk in checks(dataset):
        if chk.id in skipped:
            results.append(
                CheckResult(
                    chk.id,
                    chk.type,
                    chk.target,
                    "skipped",
                    None,
                    f"not run: {skipped[chk.id]}",
                    chk.description,
                )
            )
            continue
        raw = raws[chk.id]
        if raw.get("error"):
            count: int | None = None
            detail = f"error: {raw['error']}"
        elif raw["success"]:
            count = raw.get("unexpected_count")
            detail = "ok"
        else:
            count, detail = _detail(chk, raw, df, dataset)
        status = "passed" if raw["success"] and not raw.get("error") else "failed"
        results.append(
            CheckResult(chk.id, chk.type, chk.target, status, count, detail, chk.description)
        )
        if status == "failed":
            failures.append(Failure(chk.type, chk.target, count, detail))
    return ValidationReport(
        success=not failures,
        dataset=dataset.name,
        rows=len(df),
        failures=failures,
        results=results,
        ds=ds,
        engine=engine,
    )


# -- Great Expectations ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _gx() -> Any:
    """Import GX once, quietly (no analytics), and register the dtype expectation."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations
    from great_expectations.compatibility import pydantic
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every pandas batch under 1 GB (hash_pandas_object over the whole frame,
    # ~40% of a 1M-row validation) only to label the batch; we validate one in-memory frame.
    pandas_execution_engine.HASH_THRESHOLD = 0
    from great_expectations.expectations.expectation import BatchExpectation

    def _validate(
        self: Any,
        metrics: dict[str, Any],
        runtime_configuration: dict[str, Any] | None = None,
        execution_engine: Any = None,
    ) -> dict[str, Any]:
        column = self._get_success_kwarg("column")
        allowed = list(self._get_success_kwarg("dtypes"))
        types = {str(t["name"]): t["type"] for t in metrics.get("table.column_types", [])}
        if column not in types:
            return {"success": False, "result": {"observed_value": "column missing"}}
        observed = str(types[column])
        return {"success": observed in allowed, "result": {"observed_value": observed}}

    # Built with the metaclass directly: pydantic (v1, as GX uses it) must see real annotation
    # objects, which ``from __future__ import annotations`` would turn into strings.
    doc = (
        "Expect a column's pandas dtype name (``str(dtype)``) to be one of ``dtypes``. Unlike "
        "expect_column_values_to_be_in_type_list it knows pandas 3's ``str`` dtype, and unlike "
        "expect_column_type_to_be it accepts several dtypes."
    )
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": doc,
        "__annotations__": {"column": pydantic.StrictStr, "dtypes": list[str]},
        "column": pydantic.Field(min_length=1),
        "metric_dependencies": ("table.column_types",),
        "domain_keys": ("batch_id",),
        "success_keys": ("column", "dtypes"),
        "args_keys": ("column", "dtypes"),
        "_validate": _validate,
    }
    meta: Any = type(BatchExpectation)
    meta("ExpectColumnDtypeToBeInList", (BatchExpectation,), attrs)
    return great_expectations


@lru_cache(maxsize=64)
def _gx_expectations(dataset: Dataset) -> tuple[Any, ...]:
    _gx()
    from great_expectations.expectations.registry import get_expectation_impl

    out = []
    for chk in checks(dataset):
        cls = get_expectation_impl(chk.type)
        out.append(
            cls(
                **dict(chk.kwargs),
                description=chk.description,
                meta={"check": chk.id, "dataset": dataset.name},
            )
        )
    return tuple(out)


def build_suite(dataset: Dataset) -> gx.ExpectationSuite:
    """The GX expectation suite for a dataset, derived from its description."""
    gxm = _gx()
    suite: gx.ExpectationSuite = gxm.ExpectationSuite(
        name=f"dslc.{dataset.name}",
        expectations=[e.copy(deep=True) for e in _gx_expectations(dataset)],
        meta={"dataset": dataset.name, "generated_by": "dslc.data.validation.build_suite"},
    )
    return suite


@lru_cache(maxsize=128)
def _suite_for(dataset: Dataset, skip: frozenset[str], only: frozenset[str] | None = None) -> Any:
    """The suite to run: the full one, minus expectations whose precondition failed (``skip``),
    or just the ``only`` ones."""
    if not skip and only is None:
        return build_suite(dataset)
    kept = [
        e.copy(deep=True)
        for e in _gx_expectations(dataset)
        if e.meta["check"] not in skip and (only is None or e.meta["check"] in only)
    ]
    return _gx().ExpectationSuite(name=f"dslc.{dataset.name}", expectations=kept)


class _Runner:
    """One ephemeral context, pandas data source and whole-frame batch definition per process."""

    def __init__(self) -> None:
        gxm = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gxm.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        source = self.context.data_sources.add_pandas("dslc")
        asset = source.add_dataframe_asset("landed")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        self.lock = threading.Lock()

    def run(self, df: pd.DataFrame, suite: Any, result_format: Any) -> Any:
        with self.lock:
            batch = self.batch_definition.get_batch(batch_parameters={"dataframe": df})
            return batch.validate(suite, result_format=result_format)


@lru_cache(maxsize=1)
def _runner() -> _Runner:
    return _Runner()


def _gx_raw(res: Any) -> dict[str, Any]:
    """The engine-neutral view of one GX ExpectationValidationResult."""
    info = res.exception_info or {}
    errors = [info] if "raised_exception" in info else list(info.values())
    err = next((e.get("exception_message") for e in errors if e.get("raised_exception")), None)
    r = res.result or {}
    details = r.get("details") or {}
    return {
        "success": bool(res.success),
        "error": err,
        "unexpected_count": r.get("unexpected_count"),
        "examples": list(r.get("partial_unexpected_list") or []),
        "observed": r.get("observed_value"),
        "mismatched": details.get("mismatched") if isinstance(details, dict) else None,
    }


MAP_CHECKS = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
    }
)
"""Row-by-row column checks. GX evaluates them on ``df[df[column].notnull()]``, a copy of the
*whole* frame per expectation, so :func:`validate` gives each column's map checks a one-column
frame of their own (B6: half of a 1M-row validation was those copies)."""

SPLIT_ROWS = 50_000
"""From this many rows on, map checks run on one-column frames. Below it the copies cost less
than the extra GX runs (one per column, ~10 ms each), so a day's file is validated in one run."""


def _groups(
    df: pd.DataFrame, dataset: Dataset, skipped: frozenset[str]
) -> list[tuple[Any, frozenset[str]]]:
    """The frames to validate and the checks each runs: the whole frame for the table, dtype
    and key checks; then, per column, that column alone for its map checks (frames of
    :data:`SPLIT_ROWS` rows or more; a smaller frame runs every check in one go)."""
    if len(df) < SPLIT_ROWS:
        return [(df, frozenset(chk.id for chk in checks(dataset)) - skipped)]
    per_column: dict[str, set[str]] = {}
    whole: set[str] = set()
    for chk in checks(dataset):
        if chk.id in skipped:
            continue
        if chk.type in MAP_CHECKS and chk.column is not None:
            per_column.setdefault(chk.column, set()).add(chk.id)
        else:
            whole.add(chk.id)
    groups: list[tuple[Any, frozenset[str]]] = [(df, frozenset(whole))]
    groups += [(df[[col]], frozenset(ids)) for col, ids in per_column.items()]
    return groups


def _run_group(runner: _Runner, frame: Any, dataset: Dataset, ids: frozenset[str]) -> Any:
    """Validate ``frame`` with the checks ``ids``: pass/fail first, then the failures again
    with counts and examples (put back in place of their pass/fail result)."""
    result = runner.run(frame, _suite_for(dataset, frozenset(), ids), VERDICT_FORMAT)
    failed = frozenset(r.expectation_config.meta["check"] for r in result.results if not r.success)
    if failed:
        detail = runner.run(frame, _suite_for(dataset, frozenset(), failed), RESULT_FORMAT)
        by_check = {r.expectation_config.meta["check"]: r for r in detail.results}
        result.results = [
            by_check.get(r.expectation_config.meta["check"], r) for r in result.results
        ]
    return result


def _merged(results: list[Any], order: dict[str, int]) -> Any:
    """One GX suite result (for Data Docs) from the groups' results, in the suite's order."""
    merged = results[0]
    every = sorted(
        (r for res in results for r in res.results),
        key=lambda r: order[r.expectation_config.meta["check"]],
    )
    ok = sum(1 for r in every if r.success)
    merged.results = every
    merged.success = ok == len(every)
    merged.statistics = {
        **merged.statistics,
        "evaluated_expectations": len(every),
        "successful_expectations": ok,
        "unsuccessful_expectations": len(every) - ok,
        "success_percent": 100.0 * ok / len(every) if every else None,
    }
    return merged


def validate(df: pd.DataFrame, dataset: Dataset, ds: str | None = None) -> ValidationReport:
    """Run the dataset's GX expectations on the frame; ``ds`` only labels the report.

    The table, dtype and key expectations run on the whole frame, each column's map
    expectations on that column alone (:data:`MAP_CHECKS`); the results are merged into one
    suite result, in the suite's order, for the report and the Data Docs.
    """
    skipped = _skipped(df, dataset)
    runner = _runner()
    order = {chk.id: i for i, chk in enumerate(checks(dataset))}
    results = [
        _run_group(runner, frame, dataset, ids)
        for frame, ids in _groups(df, dataset, frozenset(skipped))
        if ids
    ]
    result = _merged(results, order)
    raws = {res.expectation_config.meta["check"]: _gx_raw(res) for res in result.results}
    report = _assemble(df, dataset, raws, skipped, ds, "great_expectations")
    report.gx_result = result
    return report


# -- the pandas reference -------------------------------------------------------------------------


def _pandas_check(chk: Check, df: pd.DataFrame) -> dict[str, Any]:
    import numpy as np

    kw = dict(chk.kwargs)
    if chk.type == "expect_table_columns_to_match_set":
        have, want = {str(c) for c in df.columns}, set(kw["column_set"])
        mism = {"missing": sorted(want - have), "unexpected": sorted(have - want)}
        return {"success": have == want, "observed": sorted(have), "mismatched": mism}
    if chk.type == "expect_table_row_count_to_be_between":
        return {"success": kw["min_value"] <= len(df) <= kw["max_value"], "observed": len(df)}
    if chk.type == "expect_column_to_exist":
        return {"success": kw["column"] in df.columns}
    if chk.type == "expect_column_dtype_to_be_in_list":
        observed = str(df[kw["column"]].dtype)
        return {"success": observed in kw["dtypes"], "observed": observed}
    if chk.type == "expect_compound_columns_to_be_unique":
        bad = df.duplicated(kw["column_list"], keep=False).to_numpy()
        examples = df.loc[bad, kw["column_list"]].head(20).to_dict("records")
    else:
        s = df[kw["column"]]
        if chk.type == "expect_column_values_to_not_be_null":
            bad = s.isna().to_numpy()
        elif chk.type == "expect_column_values_to_be_in_set":
            bad = (s.notna() & ~s.isin(kw["value_set"])).to_numpy()
        elif chk.type == "expect_column_values_to_be_between":
            v = s.to_numpy(dtype="float64", na_value=np.nan)
            bad = ~np.isnan(v) & ~((v >= kw["min_value"]) & (v <= kw["max_value"]))
        else:  # pragma: no cover - checks() makes no other types
            raise ValueError(f"no pandas implementation for {chk.type}")
        examples = s[bad].head(20).tolist()
    n = int(bad.sum())
    return {"success": n == 0, "unexpected_count": n, "examples": examples}


def validate_pandas(df: pd.DataFrame, dataset: Dataset, ds: str | None = None) -> ValidationReport:
    """The same checks in plain pandas: the benchmark floor and the tests' reference."""
    skipped = _skipped(df, dataset)
    raws = {c.id: _pandas_check(c, df) for c in checks(dataset) if c.id not in skipped}
    return _assemble(df, dataset, raws, skipped, ds, "pandas")


# -- HTML -----------------------------------------------------------------------------------------


def _gx_html(result: Any) -> str:
    from great_expectations.render.renderer.page_renderer import ValidationResultsPageRenderer
    from great_expectations.render.view.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(result)
    page: Any = DefaultJinjaPageView()
    return str(page.render(document))


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    ".passed{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}.skipped{color:#888}"
)


def _plain_html(report: ValidationReport) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td class='{r.status}'>{r.status}</td><td>{e(r.expectation)}</td>"
        f"<td>{e(str(r.column or ''))}</td>"
        f"<td>{'' if r.unexpected_count is None else r.unexpected_count}</td>"
        f"<td>{e(r.detail)}</td><td>{e(r.description)}</td></tr>"
        for r in report.results
    )
    verdict = "passed" if report.success else "failed"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(report.dataset)} validation"
        f"</title><style>{_STYLE}</style></head><body><h1>{e(report.dataset)} "
        f"{e(report.ds or '')}: <span class='{verdict}'>{verdict}</span></h1>"
        f"<p>{e(report.message())}</p><table><tr><th>status</th><th>expectation</th>"
        f"<th>column</th><th>offending rows</th><th>detail</th><th>description</th></tr>"
        f"{rows}</table></body></html>"
    )
