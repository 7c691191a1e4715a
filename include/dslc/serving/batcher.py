"""Adaptive micro-batching: many requests, one model call.

A model call costs about the same for 1 row as for 100, so requests do not call the model
themselves: each puts its validated columns on a queue and awaits a future. One worker
coroutine takes everything queued (up to a row cap), runs ONE call in a dedicated thread (the
event loop keeps accepting and validating requests meanwhile) and hands each request its
slice, together with the model that computed it. No timer: while one call runs, the next
batch forms by itself, so a lone request is never delayed and a burst is served in a few calls.

The served model is swapped by assigning :attr:`MicroBatcher.model` on the event loop. The
worker reads it once per batch, so every batch, and every request in it, is answered by exactly
one complete model, old or new; a swap never touches a call in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dslc.errors import DslcError, ServiceUnavailableError

if TYPE_CHECKING:
    from dslc.serving.schema import InputSchema
    from dslc.serving.unseen import UnseenCategories

log = logging.getLogger(__name__)


class SupportsPredictProba(Protocol):
    def predict_proba(self, columns: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class ServedModel:
    """One fully loaded, self-tested model version: what a batch is computed with."""

    name: str
    version: str
    predictor: SupportsPredictProba
    schema: InputSchema
    loaded_at: str
    info: dict[str, Any] = field(default_factory=dict)
    unseen: UnseenCategories | None = None
    """The categories the model was fitted on, to flag others in answers (None: no check)."""

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": self.version,
            "loaded_at": self.loaded_at,
            **self.info,
        }


class NoModelError(ServiceUnavailableError, RuntimeError):
    """No model is loaded yet."""


class PredictionError(DslcError, RuntimeError):
    """The model call failed for a request that passed validation (a server-side problem)."""


class _Item:
    __slots__ = ("columns", "future", "n")

    def __init__(self, columns: Mapping[str, Any], n: int, future: asyncio.Future[Any]):
        self.columns = columns
        self.n = n
        self.future = future


def _concat(items: list[_Item]) -> Mapping[str, Any]:
    """The batch's columns: lists chained, numeric arrays (NaN = null) concatenated."""
    if len(items) == 1:
        return items[0].columns
    out: dict[str, Any] = {}
    for name in items[0].columns:
        parts = [it.columns[name] for it in items]
        if all(type(p) is list for p in parts):
            out[name] = list(itertools.chain.from_iterable(parts))
        else:
            import numpy as np

            out[name] = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    return out


def _call(predictor: SupportsPredictProba, columns: Mapping[str, Any], n: int) -> list[float]:
    """Runs in the model thread: one predict_proba call, as plain floats."""
    out = predictor.predict_proba(columns)
    probs: list[float] = out.tolist() if hasattr(out, "tolist") else list(out)
    if len(probs) != n:
        raise PredictionError(f"the model returned {len(probs)} probabilities for {n} rows")
    return probs


class MicroBatcher:
    """Queue requests' columns, predict them in batches in one worker thread."""

    def __init__(
        self,
        max_rows: int = 4096,
        *,
        on_batch: Callable[[int, float], None] | None = None,
        thread_name: str = "dslc-model",
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.max_rows = max_rows
        self.model: ServedModel | None = None
        self._on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._inflight: list[_Item] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self.batches = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._worker(), name="batcher")

    async def stop(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then stop the worker and the model thread."""
        deadline = time.monotonic() + timeout
        while (self._pending or self._inflight) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail([*self._inflight, *self._pending], PredictionError("the server is stopping"))
        self._pending.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def swap(self, model: ServedModel) -> ServedModel | None:
        """Serve ``model`` from the next batch on; returns the one it replaces."""
        old, self.model = self.model, model
        return old

    @property
    def queued_rows(self) -> int:
        return sum(item.n for item in self._pending)

    # -- requests -------------------------------------------------------------------------------
    async def predict(self, columns: Mapping[str, Any], n: int) -> tuple[list[float], ServedModel]:
        """P(late) for the ``n`` rows of ``columns`` and the model that computed them."""
        if self.model is None:
            raise NoModelError("no model loaded")
        if self._wake is None:
            raise RuntimeError("the batcher is not started")
        future: asyncio.Future[tuple[list[float], ServedModel]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append(_Item(columns, n, future))
        self._wake.set()
        return await future

    # -- the worker -----------------------------------------------------------------------------
    def _take(self) -> tuple[list[_Item], int]:
        """Everything queued, up to ``max_rows`` (at least one request)."""
        items: list[_Item] = []
        rows = 0
        pending = self._pending
        while pending:
            head = pending[0]
            if items and rows + head.n > self.max_rows:
                break
            pending.popleft()
            if head.future.done():  # the client went away
                continue
            items.append(head)
            rows += head.n
        return items, rows

    async def _worker(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            items, rows = self._take()
            if not self._pending:
                self._wake.clear()
            if not items:
                continue
            model = self.model  # one model for the whole batch
            if model is None:
                self._fail(items, NoModelError("no model loaded"))
                continue
            started = time.perf_counter()
            self._inflight = items
            try:
                probs = await loop.run_in_executor(
                    self._executor, _call, model.predictor, _concat(items), rows
                )
            except Exception as e:
                await self._one_by_one(loop, model, items, e)
                continue
            finally:
                self._inflight = []
            self.batches += 1
            if self._on_batch is not None:
                self._on_batch(rows, time.perf_counter() - started)
            offset = 0
            for item in items:
                if not item.future.done():
                    item.future.set_result((probs[offset : offset + item.n], model))
                offset += item.n

    async def _one_by_one(
        self,
        loop: asyncio.AbstractEventLoop,
        model: ServedModel,
        items: list[_Item],
        error: Exception,
    ) -> None:
        """A batch failed: retry each request alone so one bad request fails only itself."""
        if len(items) == 1:
            log.error("model call failed (version %s): %r", model.version, error)
            self._fail(items, PredictionError(f"{type(error).__name__}: {error}"))
            return
        log.warning(
            "a batch of %d requests failed (%r); retrying them one by one", len(items), error
        )
        for item in items:
            if item.future.done():
                continue
            try:
                probs = await loop.run_in_executor(
                    self._executor, _call, model.predictor, item.columns, item.n
                )
            except Exception as e:
                log.error("model call failed (version %s): %r", model.version, e)
                self._fail([item], PredictionError(f"{type(e).__name__}: {e}"))
            else:
                if not item.future.done():
                    item.future.set_result((probs, model))

    @staticmethod
    def _fail(items: list[_Item], error: Exception) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)
