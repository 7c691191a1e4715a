"""The lake: one root URL (file:// or s3://), day partitions, atomic publish through a manifest.

Layout (DESIGN.md section 5)::

    landing/<dataset>/ds=YYYY-MM-DD/*.csv        what the upstream system drops
    raw/<dataset>/ds=.../part-<hash>.parquet      validated, typed
    quarantine/<dataset>/ds=.../                  rejected input + its validation result
    validation/<dataset>/ds=.../result.json       (+ data docs HTML)
    features/<dataset>/ds=.../part-<hash>.parquet

A published partition is a directory holding ``_SUCCESS``: a JSON manifest naming its files,
their row count and content hash. Publishing writes the data file first (named after its
content hash, so a re-run writes the same bytes to the same key), then the manifest in one
put, then deletes files the manifest no longer names. Readers read only what a manifest names,
so a crash at any point leaves either the old partition or the new one, never a mix.

:func:`jsonable` turns what pandas, numpy or GX return into plain JSON values (NaN never makes
invalid JSON); :func:`dumps` writes them deterministically, so a re-run writes the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import math
import re
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dslc.errors import ConfigError, ServiceUnavailableError, UserError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    from fsspec import AbstractFileSystem

MANIFEST = "_SUCCESS"


class PartitionNotFoundError(UserError, FileNotFoundError):
    """A partition has no published manifest."""


class LakeUnavailableError(ServiceUnavailableError):
    """The lake's object store did not answer (down, frozen, unreachable): retrying may work."""


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the object store could not be reached or did not answer in time
    (botocore's connect/read timeouts and connection errors, as s3fs raises them)."""
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # no S3 support installed: no S3 lake either
        return False
    return isinstance(error, BotoConnectionError | HTTPClientError)


@dataclass(frozen=True)
class Manifest:
    """What ``_SUCCESS`` says about a published partition."""

    partition: str
    files: list[str]
    rows: int
    content_hash: str
    columns: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def day(ds: str | dt.date) -> str:
    """Validate and normalise a partition day to ``YYYY-MM-DD``."""
    if isinstance(ds, dt.datetime):
        return ds.date().isoformat()
    if isinstance(ds, dt.date):
        return ds.isoformat()
    # fromisoformat alone would also take "20130102" and week dates like "2013-W01-1".
    if isinstance(ds, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", ds):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(ds).isoformat()
    raise ConfigError(f"partition day {ds!r} is not a date in YYYY-MM-DD form")


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Serialise a frame to Parquet deterministically (same frame -> same bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: NaN, ``pd.NA`` and ``NaT`` become None, +/-inf "inf"/"-inf".

    Infinity becomes a string rather than None (NaN's "no value") so that a validation failure
    quoting an infinite value still says it was infinite. Drift reports never hold one (PSI is
    floored, the other distances are bounded, log loss is clipped), so their bytes are the same
    either way. Numpy scalars become Python numbers, tuples and sets lists, keys strings, and
    anything else its ``str``.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):  # a numpy scalar
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return str(value)


def dumps(obj: Any) -> str:
    """Deterministic JSON (:func:`jsonable`, sorted keys, indented, newline at the end), so the
    same content is always the same bytes."""
    return json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


class Lake:
    """Read and write the lake under one root URL through an fsspec filesystem."""

    def __init__(
        self,
        url: str,
        fs: AbstractFileSystem | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        import fsspec

        self.url = url.rstrip("/")
        if fs is None:
            fs, _ = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.fs: AbstractFileSystem = fs
        self.protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
        self._root = self.url.split("://", 1)[1] if "://" in self.url else self.url

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    @contextlib.contextmanager
    def _reaching(self, action: str, path: str) -> Iterator[None]:
        """Turn "the store did not answer" into a :class:`LakeUnavailableError` naming it."""
        try:
            yield
        except Exception as e:
            if not _unreachable(e):
                raise
            endpoint = getattr(self.fs, "endpoint_url", None) or "its default endpoint"
            raise LakeUnavailableError(
                f"the lake's object store ({self.protocol}, {endpoint}) did not answer while "
                f"trying to {action} {self.protocol}://{path}: {e}. Check that the store is up and "
                "reachable; a task is retried, or clear it once the store is back."
            ) from e

    # -- paths ---------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """A filesystem path (no scheme) under the lake root."""
        return "/".join([self._root, *(p.strip("/") for p in parts if p)])

    def uri(self, *parts: str) -> str:
        """A full URL under the lake root, for messages and lineage."""
        return f"{self.protocol}://{self.path(*parts)}"

    @staticmethod
    def partition(zone: str, dataset: str, ds: str | dt.date) -> str:
        """The relative key of a day partition, e.g. ``raw/flights/ds=2013-01-01``."""
        return f"{zone}/{dataset}/ds={day(ds)}"

    # -- small object I/O -------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        p = self.path(*parts)
        with self._reaching("look for", p):
            return bool(self.fs.exists(p))

    def ls(self, *parts: str) -> list[str]:
        """Names (not paths) directly under a prefix; empty if it does not exist."""
        p = self.path(*parts)
        try:
            with self._reaching("list", p):
                entries = self.fs.ls(p, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def read_bytes(self, *parts: str) -> bytes:
        p = self.path(*parts)
        with self._reaching("read", p), self.fs.open(p, "rb") as fh:
            data: bytes = fh.read()
        return data

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write one object atomically (temp key + rename locally; a single put on S3).

        On failure (full disk, interrupt) the temp file is removed and the target left as it was.
        """
        target = self.path(*parts)
        if self.protocol != "file":
            with self._reaching("write", target):
                self.fs.pipe_file(target, data)  # one PUT: atomic on object stores
            return
        parent = target.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, target)
        except BaseException:
            # The original error is what the caller needs; a failed cleanup must not hide it.
            with contextlib.suppress(OSError):
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            raise

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode("utf-8"), *parts)

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode("utf-8")

    def delete(self, *parts: str) -> None:
        """Remove a key or prefix if present."""
        p = self.path(*parts)
        with self._reaching("delete", p):
            if self.fs.exists(p):
                self.fs.rm(p, recursive=True)

    def move(self, src: str, dst: str) -> None:
        """Move every object under prefix ``src`` to prefix ``dst`` (copy, then delete)."""
        for name in self.ls(src):
            self.write_bytes(self.read_bytes(src, name), dst, name)
        self.delete(src)

    # -- partitions -----------------------------------------------------------------------------
    def manifest(self, key: str) -> Manifest | None:
        """The published manifest of a partition, or None if it is not published."""
        if not self.exists(key, MANIFEST):
            return None
        return Manifest(**json.loads(self.read_text(key, MANIFEST)))

    def publish(self, key: str, df: pd.DataFrame) -> Manifest:
        """Atomically replace the partition ``key`` with ``df``; idempotent for the same frame."""
        data = parquet_bytes(df)
        digest = hashlib.sha256(data).hexdigest()
        name = f"part-{digest[:16]}.parquet"
        if not self.exists(key, name):
            self.write_bytes(data, key, name)
        manifest = Manifest(
            partition=key,
            files=[name],
            rows=len(df),
            content_hash=f"sha256:{digest}",
            columns=[str(c) for c in df.columns],
        )
        self.write_text(manifest.to_json(), key, MANIFEST)
        for stale in self.ls(key):
            if stale not in (MANIFEST, name) and not stale.startswith(".tmp-"):
                self.delete(key, stale)
        return manifest

    def read_partition(self, key: str) -> pd.DataFrame:
        """Read a published partition (only the files its manifest names)."""
        import pandas as pd
        import pyarrow.parquet as pq

        manifest = self.manifest(key)
        if manifest is None:
            raise PartitionNotFoundError(f"no published partition at {self.uri(key)}")
        frames = [
            pq.read_table(io.BytesIO(self.read_bytes(key, name))).to_pandas()
            for name in manifest.files
        ]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def published_days(self, zone: str, dataset: str) -> list[str]:
        """The days with a published partition in ``zone/dataset``, sorted."""
        days = []
        for name in self.ls(zone, dataset):
            if name.startswith("ds=") and self.exists(zone, dataset, name, MANIFEST):
                days.append(name[3:])
        return days


def get_lake(url: str | None = None) -> Lake:
    """The lake from settings (or ``url``), with S3 options from the environment if any.

    Inside Airflow tasks use ``dslc_airflow.lake.lake()`` instead, which takes the credentials
    of an s3:// lake from an Airflow connection.
    """
    from dslc.settings import get_settings

    return Lake(url or get_settings().lake)
