"""One serving process's state: the model being served, its hot swap, the admin token and the
request-body limits.

:meth:`Service.start_load` loads a version in a background task (:mod:`dslc.serving.loading`
downloads, compiles and self-tests it) and only then swaps it into the batcher; a failed load
leaves the old model serving. :meth:`Service.predict` is ``POST /predict`` as plain ASGI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import itertools
import logging
import secrets
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials

from dslc.model import registry
from dslc.serving.batcher import MicroBatcher, NoModelError, PredictionError
from dslc.serving.loading import load_served_model
from dslc.serving.metrics import ClientGoneError, Metrics, Receive, Scope
from dslc.serving.schema import RequestError, error
from dslc.serving.unseen import count_unseen

if TYPE_CHECKING:
    from dslc.lake import Lake
    from dslc.serving.predlog import PredictionLog
    from dslc.settings import Settings

log = logging.getLogger(__name__)

BATCH_MAX_ROWS = 1024
"""Rows one model call may take (a single larger request still goes alone): a few ms of
model time, so a batch never holds the requests behind it for long."""
INITIAL_RETRY_SECONDS = 2.0
DRAIN_BYTES = 64 << 20
"""How much of a body past the size limit is read and discarded before its 413, at most.

Closing a connection while the client is still sending makes the kernel reset it, and the
reset can destroy the 413 before a client that sends its whole body first reads it. So a body
that streams past the limit is drained (nothing is kept) and answered once it ended, on a
connection that stays usable. A body whose Content-Length is over the limit is answered before
reading (with ``Expect: 100-continue`` the client never sends it) and uvicorn skips the
declared bytes. Only past this bound is the connection closed after the 413: an endless or
absurd body must not hold the server."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Service:
    """State of one serving process: the batcher, the loader, metrics and the prediction log."""

    def __init__(self, settings: Settings, model_uri: str | None, lake: Lake | None) -> None:
        self.settings = settings
        self.model_uri = model_uri
        self.name = registry.parse_model_uri(model_uri)[0] if model_uri else settings.model_name
        self.threshold = settings.serving_threshold
        self.max_records = settings.serving_max_records
        self.max_body = settings.serving_max_body_bytes
        token = settings.serving_admin_token
        self._token = token.get_secret_value().encode() if token is not None else b""
        self.metrics = Metrics()
        self.batcher = MicroBatcher(
            max_rows=max(BATCH_MAX_ROWS, self.max_records), on_batch=self.metrics.on_batch
        )
        self.predlog = self._predlog(lake)
        self.last_load: dict[str, Any] | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._initial: asyncio.Task[None] | None = None
        # Request ids: random per process + a counter (uuid4 per request costs a syscall).
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)

    def _predlog(self, lake: Lake | None) -> PredictionLog | None:
        from dslc.serving.predlog import PredictionLog

        try:
            if lake is None:
                from dslc.lake import get_lake

                lake = get_lake()
            return PredictionLog(
                lake,
                self.name,
                flush_seconds=self.settings.serving_log_flush_seconds,
                max_rows=self.settings.serving_log_max_rows,
                on_rows=self.metrics.log_rows.inc,
                on_error=self.metrics.log_errors.inc,
                on_dropped=self.metrics.log_dropped.inc,
            )
        except Exception as e:  # logging is never worth refusing to serve
            log.warning(
                "prediction log disabled: cannot open the lake (%s: %s)", type(e).__name__, e
            )
            return None

    async def startup(self) -> None:
        # Hundreds of thousands of long-lived objects (libraries, the model) make every full
        # garbage collection a 100-250 ms pause of the event loop; frozen, they are skipped.
        gc.collect()
        gc.freeze()
        self.batcher.start()
        if self.predlog is not None:
            self.predlog.start()
        if self.model_uri:
            self._initial = asyncio.get_running_loop().create_task(
                self._initial_load(self.model_uri)
            )

    async def shutdown(self) -> None:
        if self._initial is not None:
            self._initial.cancel()
        await self.batcher.stop()
        if self.predlog is not None:
            await asyncio.to_thread(self.predlog.close)

    @property
    def loading(self) -> bool:
        return self._load_task is not None and not self._load_task.done()

    def start_load(self, model_uri: str, version: str | None = None) -> dict[str, Any]:
        """Start loading ``model_uri`` in the background; the state is in :attr:`last_load`."""
        state: dict[str, Any] = {
            "uri": model_uri,
            "version": version,
            "state": "loading",
            "error": None,
            "started_at": _now(),
            "finished_at": None,
        }
        self.last_load = state
        self._load_task = asyncio.get_running_loop().create_task(self._load(state))
        return state

    async def _initial_load(self, model_uri: str) -> None:
        """Load the startup model; while MLflow is unreachable, retry with backoff (the
        server keeps answering /health, and /ready says why it is not ready)."""
        delay = INITIAL_RETRY_SECONDS
        while True:
            state = self.start_load(model_uri)
            assert self._load_task is not None
            await self._load_task
            if not state.get("retry"):
                return
            log.warning("retrying the load of %s in %.0f s", model_uri, delay)
            await asyncio.sleep(delay)
            if self.last_load is not state or self.batcher.model is not None:
                return  # an admin load took over meanwhile
            delay = min(delay * 2, 60.0)

    async def _load(self, state: dict[str, Any]) -> None:
        uri = self.settings.mlflow_url
        try:
            name, version = await asyncio.to_thread(registry.resolve_model_uri, state["uri"], uri)
            state["version"] = version
            log.info("loading %s version %s from %s", name, version, uri)
            model = await asyncio.to_thread(load_served_model, name, version, uri)
        except Exception as e:
            state.update(
                state="failed",
                error=f"{type(e).__name__}: {e}"[:2000],
                finished_at=_now(),
                # MLflow unreachable (or a connection lost mid-download): worth another try.
                retry=isinstance(e, registry.RegistryUnavailableError | OSError),
            )
            serving = self.batcher.model
            log.error(
                "loading %s failed, %s: %s",
                state["uri"],
                f"still serving version {serving.version}" if serving else "no model is served",
                state["error"],
            )
            return
        old = self.batcher.swap(model)
        gc.freeze()  # the new model's objects (and mlflow's, imported to load it); see startup
        self.metrics.serving(model)
        state.update(state="loaded", finished_at=_now())
        log.info(
            "serving %s version %s (was %s)",
            model.name,
            model.version,
            old.version if old else "none",
        )

    def check_token(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if not self._token:
            raise HTTPException(
                401,
                "the admin API is disabled: no DSLC_SERVING_ADMIN_TOKEN is configured",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = credentials.credentials.encode() if credentials is not None else b""
        if (
            credentials is None
            or credentials.scheme.lower() != "bearer"
            or not (secrets.compare_digest(given, self._token))
        ):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    async def read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused (415/413) before reading when the headers say so."""
        self._check_headers(scope)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGoneError
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > self.max_body:
                ended = not more or await _drain(receive, DRAIN_BYTES)
                raise RequestError(413, [self._too_big()], close=not ended)
            chunks.append(chunk)
            if not more:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _check_headers(self, scope: Scope) -> None:
        ctype: str | None = None
        length: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value.decode("latin-1")
            elif key == b"content-length":
                length = value
        if ctype is not None and not (
            ctype.startswith("application/json") or "+json" in ctype.split(";", 1)[0]
        ):
            msg = f"Content-Type {ctype!r} is not JSON: send application/json"
            raise RequestError(415, [error((), msg, "media_type")])
        if length is not None:
            if not length.isdigit():
                raise RequestError(400, [error((), "bad Content-Length header", "content_length")])
            if int(length) > self.max_body:
                # Answered unread; the server skips the declared rest, unless it is huge.
                close = int(length) > self.max_body + DRAIN_BYTES
                raise RequestError(413, [self._too_big()], close=close)

    def _too_big(self) -> dict[str, Any]:
        return error(
            (),
            f"the body is larger than {self.max_body} bytes (DSLC_SERVING_MAX_BODY_BYTES): "
            "split the batch",
            "too_large",
        )

    async def predict(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bool]:
        """``POST /predict`` as plain ASGI: (status, JSON body, close the connection after)."""
        now = dt.datetime.now(dt.UTC)
        try:
            body = await self.read_body(scope, receive)
            try:
                records = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                msg = f"the body is not valid JSON: {e}"
                raise RequestError(422, [error((), msg, "json_invalid")]) from None
            model = self.batcher.model
            if model is None:
                raise NoModelError("no model loaded")
            batch = model.schema.validate(
                records, default_ds=now.date().isoformat(), max_records=self.max_records
            )
            probs, used = await self.batcher.predict(batch.columns, batch.n)
        except RequestError as e:
            return e.status, orjson.dumps(e.body()), e.close
        except NoModelError:
            return 503, b'{"detail":"no model loaded"}', False
        except PredictionError as e:
            self.metrics.prediction_errors.inc()
            return 500, orjson.dumps({"detail": f"the model failed on this request: {e}"}), False
        threshold = self.threshold
        late = [p >= threshold for p in probs]
        request_id = f"{self._id_prefix}{next(self._ids):08x}"
        unseen = None if used.unseen is None else used.unseen.check(batch.columns)
        if unseen is None:
            predictions = [{"probability": p, "late": d} for p, d in zip(probs, late, strict=True)]
        else:
            predictions = _flagged(probs, late, unseen)
            self.metrics.on_unseen(count_unseen(unseen))
        content = orjson.dumps(
            {
                "model": used.name,
                "version": used.version,
                "threshold": threshold,
                "request_id": request_id,
                "predictions": predictions,
            }
        )
        n_late = sum(late)
        if n_late:
            self.metrics.late.inc(n_late)
        if batch.n - n_late:
            self.metrics.on_time.inc(batch.n - n_late)
        if self.predlog is not None:
            self.predlog.append(batch, probs, late, used.version, request_id, now)
        return 200, content, False


def _flagged(probs: Any, late: list[bool], unseen: list[list[str]]) -> list[dict[str, Any]]:
    """Predictions where a record with unseen categories names them (``unseen``)."""
    out: list[dict[str, Any]] = []
    for p, d, names in zip(probs, late, unseen, strict=True):
        out.append(
            {"probability": p, "late": d, "unseen": names}
            if names
            else {"probability": p, "late": d}
        )
    return out


async def _drain(receive: Receive, limit: int) -> bool:
    """Read and drop the rest of a body, up to ``limit`` bytes; True if it ended."""
    drained = 0
    while drained <= limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False
