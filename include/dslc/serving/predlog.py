"""The prediction log: every answered record, written to the lake in batches, off the request path.

Layout (one Parquet file per flush and day, never rewritten)::

    predictions/<model>/ds=YYYY-MM-DD/part-<utc timestamp>-<uuid8>.parquet

Columns: ``request_id``, ``request_time`` (UTC), ``ds``, the use case's log key (flights:
``flight``), the model's input columns, ``probability``, ``late``, ``model_version``. ``ds`` is
the record's day when the client sent it, else the UTC day of the request.

Requests only append to a bounded in-memory buffer (a lock and a list append). A background
thread flushes it every ``flush_seconds`` or when ``max_rows`` are buffered. Each file is
written under a temporary name and renamed into place (one put on S3), so a reader never sees
a partial file; readers take only ``part-*.parquet``. When the lake fails (full disk,
unreachable), the rows stay buffered for the next flush up to ``max_buffer_rows``, then the
oldest are dropped; both are counted and warned about, and the answers never wait for any of it.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from dslc.lake import Lake
    from dslc.serving.schema import Batch

log = logging.getLogger(__name__)

ZONE = "predictions"
_WARN_EVERY_SECONDS = 60.0


def partition_parts(model: str, ds: str) -> tuple[str, str, str]:
    """The lake key parts of a model's log for one day."""
    return ZONE, model, f"ds={ds}"


@dataclass
class _Entry:
    """One request's rows. Tuples of floats/strings are untracked by the cyclic GC, so a big
    buffer does not lengthen every full collection (lists would be traversed each time)."""

    n: int
    columns: dict[str, Any]  # tuples, or float64 arrays (NaN = null) for numeric columns
    ds: tuple[str, ...]
    key: tuple[int | None, ...]
    probabilities: tuple[float, ...]
    late: tuple[bool, ...]
    version: str
    request_id: str
    request_time: dt.datetime


def _noop(_: int = 0) -> None:
    return None


class PredictionLog:
    """Buffer answered records and flush them to the lake from a background thread."""

    def __init__(
        self,
        lake: Lake,
        model: str,
        *,
        flush_seconds: float = 2.0,
        max_rows: int = 50_000,
        max_buffer_rows: int | None = None,
        categorical: tuple[str, ...] | None = None,
        key: str | None = None,
        on_rows: Callable[[int], None] = _noop,
        on_error: Callable[[int], None] = _noop,
        on_dropped: Callable[[int], None] = _noop,
    ) -> None:
        if not model or model in (".", "..") or "/" in model:
            raise ValueError(f"{model!r} is not a model name to log predictions under")
        if flush_seconds <= 0 or max_rows < 1:
            raise ValueError("flush_seconds must be > 0 and max_rows >= 1")
        if categorical is None:
            from dslc.model.spec import model_spec

            categorical = model_spec().categorical
        self.key = key or log_key_name()
        self.lake = lake
        self.model = model
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.max_buffer_rows = max_buffer_rows or max(4 * max_rows, 100_000)
        self._categorical = frozenset(categorical)
        self._on_rows, self._on_error, self._on_dropped = on_rows, on_error, on_dropped
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._entries: list[_Entry] = []
        self._rows = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._last_warning = 0.0
        self.written_rows = 0
        self.dropped_rows = 0
        self.failed_flushes = 0

    # -- the request side ----------------------------------------------------------------------
    def append(
        self,
        batch: Batch,
        probabilities: list[float],
        late: list[bool],
        version: str,
        request_id: str,
        request_time: dt.datetime,
    ) -> None:
        """Buffer one answered request (never blocks on I/O)."""
        n = batch.n
        with self._lock:
            room = self._rows + n <= self.max_buffer_rows
            if room:
                self._entries.append(
                    _Entry(
                        n,
                        {
                            name: tuple(values) if type(values) is list else values
                            for name, values in batch.columns.items()
                        },
                        tuple(batch.ds),
                        tuple(batch.key),
                        tuple(probabilities),
                        tuple(late),
                        version,
                        request_id,
                        request_time,
                    )
                )
                self._rows += n
            full = self._rows >= self.max_rows
        if not room:
            self._drop(n, "the buffer is full")
        if full:
            self._wake.set()

    @property
    def buffered_rows(self) -> int:
        return self._rows

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background flush thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"dslc-predlog-{self.model}", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and flush what is buffered (best effort within ``timeout``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        if self._rows:
            log.warning(
                "prediction log: %d rows could not be written to %s before shutdown",
                self._rows,
                self.lake.uri(ZONE, self.model),
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # never let the thread die: the next flush retries
                log.exception("prediction log: unexpected error while flushing")

    # -- flushing ------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write everything buffered now; returns the rows written (0 on a lake failure)."""
        with self._flush_lock:
            with self._lock:
                entries, rows = self._entries, self._rows
                self._entries, self._rows = [], 0
            if not entries:
                return 0
            try:
                written = self._write(entries)
            except Exception as e:
                self._failed(entries, rows, e)
                return 0
            if self._failing_since is not None:
                log.info(
                    "prediction log: writing to %s again after %.0f s of failures",
                    self.lake.uri(ZONE, self.model),
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None
            self.written_rows += written
            self._on_rows(written)
            return written

    def _failed(self, entries: list[_Entry], rows: int, e: Exception) -> None:
        """Keep the rows for the next flush if they fit, else drop the oldest."""
        self.failed_flushes += 1
        self._on_error(1)
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._last_warning >= _WARN_EVERY_SECONDS or self.failed_flushes == 1:
            self._last_warning = now
            log.warning(
                "prediction log: cannot write %d rows to %s (%s: %s); answers are unaffected, "
                "rows stay buffered up to %d and are dropped beyond (see "
                "dslc_prediction_log_errors_total / dslc_prediction_log_dropped_rows_total)",
                rows,
                self.lake.uri(ZONE, self.model),
                type(e).__name__,
                str(e)[:300],
                self.max_buffer_rows,
            )
        with self._lock:
            keep: list[_Entry] = []
            room = self.max_buffer_rows - self._rows
            for entry in reversed(entries):  # the newest first: drop the oldest
                if entry.n <= room:
                    keep.append(entry)
                    room -= entry.n
            keep.reverse()
            kept = sum(entry.n for entry in keep)
            self._entries[:0] = keep
            self._rows += kept
        if rows - kept:
            self._drop(rows - kept, "the lake keeps failing")

    def _drop(self, n: int, why: str) -> None:
        self.dropped_rows += n
        self._on_dropped(n)
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning("prediction log: dropped %d rows (%s)", n, why)

    def _write(self, entries: list[_Entry]) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self._table(entries)
        groups: dict[str, list[int]] = {}
        for i, ds in enumerate(table.column("ds").to_pylist()):
            groups.setdefault(ds, []).append(i)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        for ds, rows in sorted(groups.items()):
            part = table if len(groups) == 1 else table.take(pa.array(rows, pa.int64()))
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="zstd")
            self.lake.write_bytes(buf.getvalue(), *partition_parts(self.model, ds), name)
        return int(table.num_rows)

    def _table(self, entries: list[_Entry]) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        def flat(get: Callable[[_Entry], tuple[Any, ...]]) -> list[Any]:
            out: list[Any] = []
            for entry in entries:
                out.extend(get(entry))
            return out

        def repeat(get: Callable[[_Entry], Any]) -> list[Any]:
            out: list[Any] = []
            for entry in entries:
                out.extend([get(entry)] * entry.n)
            return out

        names = list(entries[0].columns)
        data: dict[str, pa.Array] = {
            "request_id": pa.array(repeat(lambda e: e.request_id), pa.string()),
            "request_time": pa.array(
                repeat(lambda e: e.request_time), pa.timestamp("us", tz="UTC")
            ),
            "ds": pa.array(flat(lambda e: e.ds), pa.string()),
            self.key: pa.array(flat(lambda e: e.key), pa.int64()),
        }
        for col in names:
            if col in self._categorical:
                data[col] = pa.array(flat(lambda e, c=col: e.columns[c]), pa.string())  # type: ignore[misc]
            else:
                parts = [np.asarray(e.columns[col], dtype=np.float64) for e in entries]
                data[col] = pa.array(np.concatenate(parts), pa.float64(), from_pandas=True)
        data["probability"] = pa.array(flat(lambda e: e.probabilities), pa.float64())
        data["late"] = pa.array(flat(lambda e: e.late), pa.bool_())
        data["model_version"] = pa.array(repeat(lambda e: e.version), pa.string())
        return pa.table(data)


def log_key_name() -> str:
    """The log's id column: the use case's log key (``key`` when it has none)."""
    from dslc.settings import get_usecase

    key = get_usecase().log_key
    return key.name if key is not None else "key"


def log_columns(features: list[str] | None = None, key: str | None = None) -> list[str]:
    """The prediction log's columns, in order."""
    if features is None:
        from dslc.model.spec import model_features

        features = model_features()
    return [
        "request_id",
        "request_time",
        "ds",
        key or log_key_name(),
        *features,
        "probability",
        "late",
        "model_version",
    ]


def log_files(lake: Lake, model: str, ds: str) -> list[str]:
    """The published files of a model's log for one day, oldest first."""
    from dslc.lake import day

    return [
        name
        for name in lake.ls(*partition_parts(model, day(ds)))
        if name.startswith("part-") and name.endswith(".parquet")
    ]


def read_predictions(lake: Lake, model: str, ds: str) -> pd.DataFrame:
    """Every logged prediction of ``model`` for day ``ds`` (empty frame if none)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dslc.lake import day

    parts = partition_parts(model, day(ds))
    tables = [
        pq.read_table(io.BytesIO(lake.read_bytes(*parts, n))) for n in log_files(lake, model, ds)
    ]
    if not tables:
        return pd.DataFrame(columns=log_columns())
    frame: pd.DataFrame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return frame
