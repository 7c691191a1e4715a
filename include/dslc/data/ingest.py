"""The daily ingest pipeline as plain functions: land -> extract -> validate -> features.

Each function works on one (dataset, day), is idempotent and returns a small JSON-able dict
for the orchestrator. Nothing is published to ``raw/`` or ``features/`` unless validation
passed: ``extract`` stages the parsed file, ``validate`` either publishes it to ``raw/`` or
moves the landed input to ``quarantine/`` with the validation result beside it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from typing import TYPE_CHECKING, Any, TypedDict

from dslc.errors import UserError
from dslc.lake import Lake, day
from dslc.settings import get_usecase

if TYPE_CHECKING:
    import pandas as pd

    from dslc.usecase import Dataset

log = logging.getLogger(__name__)


class Staged(TypedDict):
    """What ``extract`` staged for one dataset (XCom of the `extract` task, per dataset)."""

    dataset: str
    ds: str
    rows: int


class Published(TypedDict):
    """What ``validate`` published to raw/ for one dataset."""

    dataset: str
    ds: str
    rows: int
    content_hash: str
    validation: str
    """URI of the saved validation result."""


class FeaturesBuilt(TypedDict):
    """The day's feature partition (also the Asset event's extra, less the last two keys)."""

    partition: str
    uri: str
    ds: str
    rows: int
    content_hash: str
    label_rate: float
    secondary: dict[str, bool]
    """Per secondary dataset: was it published that day."""


class IngestError(UserError):
    """Input the pipeline refused; the message says what was wrong and where it went."""


def landing_files(lake: Lake, dataset: str, ds: str) -> list[str]:
    """The CSV files landed for the day (sorted)."""
    key = Lake.partition("landing", dataset, ds)
    return [n for n in lake.ls(key) if n.endswith(".csv")]


def get_dataset(name: str) -> Dataset:
    """A dataset of the use case by name, with a message listing the known ones."""
    return get_usecase().dataset(name)


def past_source(ds: str, name: str, source_last_day: dt.date) -> str | None:
    """Why nothing will ever land for ``ds``: the use case ``name``'s source ends before it.

    None when ``ds`` is on or before ``source_last_day``. The demo replays a finite source (NYC
    flights 2013), so the scheduled run Airflow makes for "today" waits for a day that never
    comes; its sensors skip with this reason instead (``DSLC_SKIP_DAYS_PAST_SOURCE``).
    """
    if dt.date.fromisoformat(day(ds)) <= source_last_day:
        return None
    return (
        f"no data for {day(ds)}: the {name!r} use case's source ends on {source_last_day}, so "
        f"nothing will land for this day (the scheduled run of 'today' in a "
        f"{source_last_day.year} story). Backfill the source's days instead, e.g. `dslc "
        f"backfill ingest --start {source_last_day} --end {source_last_day}`; set "
        "DSLC_SKIP_DAYS_PAST_SOURCE=false if a live upstream lands days past the source"
    )


def is_landed(lake: Lake, ds: str, dataset: str | None = None) -> bool:
    """Whether the upstream system has dropped the day's file (what the sensor waits for)."""
    return bool(landing_files(lake, dataset or get_usecase().primary.name, ds))


def _quarantine(lake: Lake, dataset: str, ds: str, result: dict[str, Any], html: str) -> str:
    """Move the day's landed input to quarantine/ with its validation result beside it."""
    src = Lake.partition("landing", dataset, ds)
    dst = Lake.partition("quarantine", dataset, ds)
    lake.delete(dst)
    lake.move(src, dst)
    lake.write_text(json.dumps(result, indent=2, sort_keys=True), dst, "result.json")
    lake.write_text(html, dst, "result.html")
    return lake.uri(dst)


def _read_landed(lake: Lake, dataset: Dataset, ds: str) -> pd.DataFrame:
    import pandas as pd

    key = Lake.partition("landing", dataset.name, ds)
    frames = []
    for name in landing_files(lake, dataset.name, ds):
        data = lake.read_bytes(key, name)
        if data and not data.endswith(b"\n"):
            # The source ends every row with a newline; a file that stops mid-row was cut
            # short (an interrupted upload), and its last row would parse as a shorter row.
            raise ValueError(f"{name} ends mid-row: the file looks truncated")
        # Plain inference, no dtype=: a text value in a numeric column must reach validation
        # as a text column, where the type expectation names it.
        frames.append(pd.read_csv(io.BytesIO(data), encoding="utf-8", on_bad_lines="error"))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def extract(lake: Lake, dataset_name: str, ds: str) -> Staged:
    """Parse the day's landed CSV and stage it as Parquet for validation."""
    import pandas as pd

    ds = day(ds)
    dataset = get_dataset(dataset_name)
    if not landing_files(lake, dataset.name, ds):
        raise IngestError(
            f"{dataset.name} {ds}: nothing landed at "
            f"{lake.uri(Lake.partition('landing', dataset.name, ds))}"
        )
    try:
        df = _read_landed(lake, dataset, ds)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
        result = {
            "dataset": dataset.name,
            "ds": ds,
            "stage": "extract",
            "success": False,
            "error": reason,
        }
        where = _quarantine(lake, dataset.name, ds, result, f"<pre>{reason}</pre>")
        raise IngestError(
            f"{dataset.name} {ds}: the landed file is not a readable CSV ({reason}); "
            f"moved it to {where}. Fix the export and land the day again."
        ) from e
    manifest = lake.publish(Lake.partition("staging", dataset.name, ds), df)
    log.info("staged %s %s: %d rows, %d columns", dataset.name, ds, len(df), len(df.columns))
    return {"dataset": dataset.name, "ds": ds, "rows": manifest.rows}


def typed(df: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """Cast a validated frame to the dataset's schema, sorted by key (stable bytes)."""
    out = df.loc[:, dataset.column_names].copy()
    for col in dataset.columns:
        if col.kind == "int":
            out[col.name] = out[col.name].astype("int64" if col.required else "Int64")
        elif col.kind == "float":
            out[col.name] = out[col.name].astype("float64")
        else:
            out[col.name] = out[col.name].astype("str")
    return out.sort_values(list(dataset.key), kind="stable").reset_index(drop=True)


def _wrong_day_rows(df: pd.DataFrame, dataset: Dataset, ds: str) -> int:
    y, m, d = dataset.day_columns
    year, month, dom = (int(p) for p in ds.split("-"))
    wrong = (df[y] != year) | (df[m] != month) | (df[d] != dom)
    return int(wrong.sum())


def check(lake: Lake, dataset_name: str, ds: str) -> tuple[dict[str, Any], str, pd.DataFrame]:
    """Validate the staged day and save the result; returns (result, message, frame)."""
    from dslc.data import validation

    ds = day(ds)
    dataset = get_dataset(dataset_name)
    df = lake.read_partition(Lake.partition("staging", dataset.name, ds))
    report = validation.validate(df, dataset)
    result = report.to_dict()
    result.update({"ds": ds, "stage": "validate"})
    message = report.message()
    if report.success and (wrong := _wrong_day_rows(df, dataset, ds)):
        result["success"] = False
        message = f"{dataset.name} {ds}: {wrong} rows belong to another day than the partition"
    result["message"] = message
    vkey = Lake.partition("validation", dataset.name, ds)
    lake.write_text(json.dumps(result, indent=2, sort_keys=True), vkey, "result.json")
    lake.write_text(report.to_html(), vkey, "index.html")
    return result, message, df


def publish_raw(lake: Lake, dataset_name: str, ds: str, df: pd.DataFrame) -> Published:
    """Publish a validated day to raw/ and drop its staging copy."""
    dataset = get_dataset(dataset_name)
    manifest = lake.publish(Lake.partition("raw", dataset.name, ds), typed(df, dataset))
    lake.delete(Lake.partition("staging", dataset.name, ds))
    log.info("published %s (%d rows, %s)", manifest.partition, manifest.rows, manifest.content_hash)
    vkey = Lake.partition("validation", dataset.name, ds)
    return {
        "dataset": dataset.name,
        "ds": ds,
        "rows": manifest.rows,
        "content_hash": manifest.content_hash,
        "validation": lake.uri(vkey, "result.json"),
    }


def build_features(lake: Lake, ds: str, dataset_name: str | None = None) -> FeaturesBuilt:
    """Build the day's features from its raw datasets; publish ``features/<primary>/ds=...``."""
    from dslc.data import features

    usecase = get_usecase()
    ds = day(ds)
    primary = dataset_name or usecase.primary.name
    frames: dict[str, pd.DataFrame | None] = {
        primary: lake.read_partition(Lake.partition("raw", primary, ds))
    }
    for secondary in usecase.secondary:
        key = Lake.partition("raw", secondary.name, ds)
        frames[secondary.name] = lake.read_partition(key) if lake.manifest(key) else None
        if frames[secondary.name] is None:
            log.warning(
                "no published %s for %s: its features are missing that day", secondary.name, ds
            )
    table = features.build(frames, ds, usecase)
    key = Lake.partition("features", primary, ds)
    manifest = lake.publish(key, table)
    label = usecase.features.label
    label_rate = float(table[label].mean()) if len(table) else 0.0
    return {
        "partition": key,
        "uri": lake.uri(key),
        "ds": ds,
        "rows": manifest.rows,
        "content_hash": manifest.content_hash,
        "label_rate": round(label_rate, 4),
        "secondary": {name: frame is not None for name, frame in frames.items() if name != primary},
    }


def extract_day(lake: Lake, ds: str) -> dict[str, Staged]:
    """Extract the primary dataset (required) and the secondary ones landed for the day."""
    usecase = get_usecase()
    primary = usecase.primary.name
    out = {primary: extract(lake, primary, ds)}
    for name in (d.name for d in usecase.secondary):
        if landing_files(lake, name, ds):
            out[name] = extract(lake, name, ds)
        else:
            log.warning("no %s landed for %s; features will go without it", name, ds)
    return out


def validate_day(lake: Lake, ds: str) -> dict[str, Published]:
    """Validate every dataset staged for the day; publish to raw/ only if all of them pass.

    On any failure the failing inputs go to quarantine/ with their results, nothing of the
    day is published, and the error names each failed expectation.
    """
    ds = day(ds)
    usecase = get_usecase()
    staged = [
        d.name for d in usecase.secondary if lake.manifest(Lake.partition("staging", d.name, ds))
    ]
    names = [usecase.primary.name, *staged]
    checked = {name: check(lake, name, ds) for name in names}
    failed = {name: c for name, c in checked.items() if not c[0]["success"]}
    if failed:
        lines = []
        for name, (result, message, _df) in failed.items():
            vkey = Lake.partition("validation", name, ds)
            where = _quarantine(lake, name, ds, result, lake.read_text(vkey, "index.html"))
            lines.append(f"{message}\nThe landed input was moved to {where}.")
        for name in names:
            lake.delete(Lake.partition("staging", name, ds))
        raise IngestError("\n\n".join(lines))
    return {name: publish_raw(lake, name, ds, df) for name, (_r, _m, df) in checked.items()}
