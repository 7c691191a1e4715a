"""The split: a time-ordered window of published feature partitions, cut into train, valid
and holdout days (never at random across time), recorded with every partition's content hash.

``assemble`` reads only published feature partitions and writes a split manifest to the lake
(``training/<dataset>/run=<id>/split.json``); every later step reads exactly those partitions
back through :func:`load_frame`, which refuses any whose hash changed since.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from dslc.errors import UserError
from dslc.lake import Lake, day

if TYPE_CHECKING:
    import pandas as pd

    from dslc.model.results import Split, Window

log = logging.getLogger(__name__)

ZONE = "features"
SPLITS = ("train", "valid", "holdout")


class TrainingError(UserError):
    """A training run the user can fix (bad params, no data); the message says how."""


def resolve_window(lake: Lake, end: str | None, days: int, dataset: str) -> tuple[str, str]:
    """The window's (first, last) day; ``end`` defaults to the latest published day."""
    if days < 1:
        raise TrainingError(f"param 'window_days'={days} must be at least 1")
    if end in (None, ""):
        published = lake.published_days(ZONE, dataset)
        if not published:
            raise TrainingError(
                f"no published feature partitions at {lake.uri(ZONE, dataset)}: run `ingest` "
                "(or `dslc backfill ingest`) first"
            )
        end = published[-1]
    try:
        last = dt.date.fromisoformat(day(end))
    except ValueError:
        raise TrainingError(
            f"param 'window_end'={end!r} is not a date in YYYY-MM-DD form"
        ) from None
    first = last - dt.timedelta(days=days - 1)
    return first.isoformat(), last.isoformat()


def _split_of(index: int, n: int, valid_days: int, holdout_days: int) -> str:
    if index >= n - holdout_days:
        return "holdout"
    if index >= n - holdout_days - valid_days:
        return "valid"
    return "train"


def split_key(dataset: str, dag_run_id: str) -> str:
    """Where a run's split manifest lives in the lake."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dag_run_id)[:80]
    digest = hashlib.sha256(dag_run_id.encode()).hexdigest()[:8]
    return f"training/{dataset}/run={safe}-{digest}"


def assemble(
    lake: Lake,
    *,
    dag_run_id: str,
    window_end: str | None,
    window_days: int,
    valid_days: int,
    holdout_days: int,
    min_days: int,
    min_rows: int,
    dataset: str | None = None,
) -> Split:
    """Pick the published partitions in the window, split them by date, write the manifest."""
    if dataset is None:
        from dslc.settings import get_settings

        dataset = get_settings().dataset
    first, last = resolve_window(lake, window_end, window_days, dataset)
    published = [d for d in lake.published_days(ZONE, dataset) if first <= d <= last]
    wanted = [
        (dt.date.fromisoformat(first) + dt.timedelta(days=i)).isoformat()
        for i in range(window_days)
    ]
    missing = [d for d in wanted if d not in set(published)]
    if not published:
        raise TrainingError(
            f"no published feature partitions in the window {first}..{last} at "
            f"{lake.uri(ZONE, dataset)}: ingest those days first, or pick a window with data "
            "(params 'window_end' and 'window_days')"
        )
    if missing:
        log.warning(
            "%d of %d days in %s..%s have no features: %s",
            len(missing),
            window_days,
            first,
            last,
            ", ".join(missing),
        )
    need = min_days + valid_days + holdout_days
    if len(published) < need:
        raise TrainingError(
            f"the window {first}..{last} has {len(published)} days of features; at least "
            f"{need} are needed ({min_days} to train + {valid_days} valid + "
            f"{holdout_days} holdout). Widen 'window_days' or ingest the missing days."
        )
    partitions: list[dict[str, Any]] = []
    for i, ds in enumerate(published):
        key = Lake.partition(ZONE, dataset, ds)
        manifest = lake.manifest(key)
        assert manifest is not None  # published_days only lists partitions with a manifest
        partitions.append(
            {
                "ds": ds,
                "partition": key,
                "content_hash": manifest.content_hash,
                "rows": manifest.rows,
                "split": _split_of(i, len(published), valid_days, holdout_days),
            }
        )
    rows = {s: sum(int(p["rows"]) for p in partitions if p["split"] == s) for s in SPLITS}
    if rows["train"] < min_rows:
        raise TrainingError(
            f"the window {first}..{last} has {rows['train']} training rows, fewer than the "
            f"minimum {min_rows}: widen 'window_days'"
        )
    window: Window = {"first": first, "last": last, "days": window_days}
    split = {
        "dataset": dataset,
        "window": window,
        "dag_run_id": dag_run_id,
        "missing_days": missing,
        "rows": rows,
        "partitions": partitions,
    }
    key = split_key(dataset, dag_run_id)
    lake.write_text(json.dumps(split, indent=2, sort_keys=True), key, "split.json")
    log.info(
        "split %s..%s: %s rows, %d missing days -> %s",
        first,
        last,
        rows,
        len(missing),
        lake.uri(key, "split.json"),
    )
    return {
        "split": f"{key}/split.json",
        "window": window,
        "rows": rows,
        "missing_days": len(missing),
    }


def read_split(lake: Lake, split_path: str) -> dict[str, Any]:
    """The split manifest written by :func:`assemble`."""
    loaded: dict[str, Any] = json.loads(lake.read_text(split_path))
    return loaded


def load_frame(lake: Lake, split: dict[str, Any], which: str) -> pd.DataFrame:
    """The rows of one split, refusing partitions republished since ``assemble``."""
    import pandas as pd

    frames = []
    for p in split["partitions"]:
        if p["split"] != which:
            continue
        manifest = lake.manifest(p["partition"])
        if manifest is None or manifest.content_hash != p["content_hash"]:
            raise TrainingError(
                f"{p['partition']} changed since the split was assembled "
                f"({p['content_hash']} -> {manifest.content_hash if manifest else 'gone'}): "
                "clear the run from `assemble`"
            )
        frames.append(lake.read_partition(p["partition"]))
    return pd.concat(frames, ignore_index=True)
