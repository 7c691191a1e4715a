"""The serving HTTP API (FastAPI): predict, health, readiness, metrics and the admin loader.

``POST /predict`` is the hot path and is written for it: the body is read with a size cap and
parsed by orjson from bytes, validated by :mod:`dslc.serving.schema` straight into columns,
predicted by the :class:`~dslc.serving.batcher.MicroBatcher` (one model call per batch, in its
own thread) and answered with orjson bytes. The OpenAPI document still describes the request
and response (``openapi_extra`` / ``response_model``), so ``/docs`` is accurate.

``POST /admin/load`` loads a version in a background thread, self-tests it (the compiled
predictor must agree with the sklearn pipeline on the model's input example, with finite
probabilities in [0, 1]) and only then swaps it in; a failed load leaves the old model serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import itertools
import logging
import secrets
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from dslc.model.registry import parse_model_uri
from dslc.serving.batcher import MicroBatcher, NoModelError, PredictionError, ServedModel
from dslc.serving.schema import InputSchema, RequestError, error, read_input_example

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from dslc.lake import Lake
    from dslc.serving.predlog import PredictionLog
    from dslc.settings import Settings

log = logging.getLogger(__name__)

ENDPOINTS = frozenset(
    {
        "/predict",
        "/health",
        "/ready",
        "/metrics",
        "/admin/load",
        "/admin/status",
        "/docs",
        "/openapi.json",
    }
)
"""Paths counted under their own name in the metrics; anything else is "other"."""
BATCH_MAX_ROWS = 1024
"""Rows one model call may take (a single larger request still goes alone): a few ms of
model time, so a batch never holds the requests behind it for long."""
SELF_TEST_TOLERANCE = 1e-9
INITIAL_RETRY_SECONDS = 2.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LoadError(RuntimeError):
    """A version could not be loaded or failed its self-test; the message says which and why."""


# -- loading a version -----------------------------------------------------------------------


def self_test(pipeline: Any, predictor: Any, columns: dict[str, list[Any]]) -> None:
    """The compiled predictor answers ``columns`` as the pipeline does, with probabilities."""
    import numpy as np
    import pandas as pd

    from dslc.model.training import features_of

    n = len(next(iter(columns.values())))
    got = np.asarray(predictor.predict_proba(columns), dtype=np.float64)
    if got.shape != (n,) or not np.all(np.isfinite(got)) or got.min() < 0 or got.max() > 1:
        raise LoadError(f"self-test: the model answered {got!r} for {n} rows, not probabilities")
    want = pipeline.predict_proba(features_of(pd.DataFrame(columns)))[:, 1]
    diff = float(np.max(np.abs(got - want)))
    if diff > SELF_TEST_TOLERANCE:
        raise LoadError(
            f"self-test: the compiled predictor differs from the pipeline by {diff:.3g} "
            "on the input example; the version cannot be served"
        )


def served_model_from_dir(
    path: Path, name: str, version: str, info: dict[str, Any] | None = None
) -> ServedModel:
    """Load a downloaded MLflow model directory (skops, trusted types), compile and self-test it."""
    from dslc.model.registry import load_local_model
    from dslc.serving.predictor import compile_model

    schema = InputSchema.from_model_dir(path)
    pipeline = load_local_model(path)
    predictor = compile_model(pipeline)
    example = read_input_example(path)
    if example is None or not set(schema.names) <= example.keys():
        example = schema.sample()
    self_test(pipeline, predictor, {k: example[k] for k in schema.names})
    return ServedModel(
        name=name,
        version=str(version),
        predictor=predictor,
        schema=schema,
        loaded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        info=info or {},
    )


def load_served_model(name: str, version: str, tracking_uri: str | None = None) -> ServedModel:
    """Download version ``name``/``version`` from the registry once and make it servable."""
    import mlflow.artifacts

    from dslc.model import registry

    uri = registry.resolve_tracking_uri(tracking_uri)
    c = registry.client(uri)
    mv = registry.get_version(c, name, version)
    with tempfile.TemporaryDirectory(prefix="dslc-serve-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=str(mv.source), dst_path=tmp, tracking_uri=uri
        )
        info = {"uri": f"models:/{name}/{version}", "source": str(mv.source), "run_id": mv.run_id}
        return served_model_from_dir(Path(local), name, str(version), info)


def resolve_version(model_uri: str, tracking_uri: str | None = None) -> str:
    """The registered version a model URI names, checked to exist (RegistryError if not)."""
    from dslc.model import registry

    name, version = registry.resolve_model_uri(model_uri, tracking_uri)
    registry.get_version(registry.client(tracking_uri), name, version)
    return version


# -- metrics ---------------------------------------------------------------------------------


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dslc_requests",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "dslc_request_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.prediction_errors = Counter(
            "dslc_prediction_errors", "Model calls that failed on validated input.", registry=r
        )
        self.predictions = Counter(
            "dslc_predictions", "Predicted records by decision.", ["decision"], registry=r
        )
        self.model_info = Gauge(
            "dslc_model_info", "The model version being served.", ["name", "version"], registry=r
        )
        self.log_rows = Counter(
            "dslc_prediction_log_rows", "Rows written to the prediction log.", registry=r
        )
        self.log_errors = Counter(
            "dslc_prediction_log_errors", "Failed prediction-log flushes.", registry=r
        )
        self.log_dropped = Counter(
            "dslc_prediction_log_dropped_rows", "Rows the prediction log had to drop.", registry=r
        )
        self.batch_rows = Histogram(
            "dslc_batch_rows",
            "Rows per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "dslc_batch_seconds",
            "Duration of one model call.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.late = self.predictions.labels("late")
        self.on_time = self.predictions.labels("on_time")
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        child = self._children.get((endpoint, status))
        if child is None:
            child = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._children[(endpoint, status)] = child
        child[0].inc()
        child[1].observe(seconds)

    def on_batch(self, rows: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_seconds.observe(seconds)

    def serving(self, model: ServedModel) -> None:
        self.model_info.clear()
        self.model_info.labels(model.name, model.version).set(1)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _ServiceMiddleware:
    """Count and time every HTTP request, and answer ``POST /predict`` directly (pure ASGI)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self.metrics = service.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if path == "/predict" and scope["method"] == "POST":
                # The hot path skips the framework's routing, dependency solving and
                # Request/Response objects; the FastAPI route below documents it.
                try:
                    status, body = await self.service.predict(scope, receive)
                except _ClientGoneError:
                    status = 499
                    return
                await _send_json(send, status, body)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(endpoint, status, time.perf_counter() - started)


# -- the service -----------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content), status_code=status, media_type="application/json", headers=headers
    )


class Service:
    """State of one serving process: the batcher, the loader, metrics and the prediction log."""

    def __init__(self, settings: Settings, model_uri: str | None, lake: Lake | None) -> None:
        self.settings = settings
        self.model_uri = model_uri
        self.name = parse_model_uri(model_uri)[0] if model_uri else settings.model_name
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

    # -- lifecycle -------------------------------------------------------------------------
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

    # -- loading ---------------------------------------------------------------------------
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
        from dslc.model import registry

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

    # -- auth ------------------------------------------------------------------------------
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

    # -- predict ---------------------------------------------------------------------------
    async def read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused (415/413) before reading when the headers say so."""
        self._check_headers(scope)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGoneError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise RequestError(413, [self._too_big()])
            chunks.append(chunk)
            if not message.get("more_body", False):
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
                raise RequestError(413, [self._too_big()])

    def _too_big(self) -> dict[str, Any]:
        return error(
            (),
            f"the body is larger than {self.max_body} bytes (DSLC_SERVING_MAX_BODY_BYTES): "
            "split the batch",
            "too_large",
        )

    async def predict(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        """``POST /predict`` as plain ASGI: (status, JSON body)."""
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
            return e.status, orjson.dumps(e.body())
        except NoModelError:
            return 503, b'{"detail":"no model loaded"}'
        except PredictionError as e:
            self.metrics.prediction_errors.inc()
            return 500, orjson.dumps({"detail": f"the model failed on this request: {e}"})
        threshold = self.threshold
        late = [p >= threshold for p in probs]
        request_id = f"{self._id_prefix}{next(self._ids):08x}"
        content = orjson.dumps(
            {
                "model": used.name,
                "version": used.version,
                "threshold": threshold,
                "request_id": request_id,
                "predictions": [
                    {"probability": p, "late": d} for p, d in zip(probs, late, strict=True)
                ],
            }
        )
        n_late = sum(late)
        if n_late:
            self.metrics.late.inc(n_late)
        if batch.n - n_late:
            self.metrics.on_time.inc(batch.n - n_late)
        if self.predlog is not None:
            self.predlog.append(batch, probs, late, used.version, request_id, now)
        return 200, content


class _ClientGoneError(Exception):
    """The client disconnected before its request body arrived."""


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the OpenAPI models ------------------------------------------------------------------------


class Prediction(BaseModel):
    probability: float = Field(description="P(arrival delay >= 15 min or cancelled/diverted).")
    late: bool = Field(description="probability >= threshold.")


class PredictResponse(BaseModel):
    model: str
    version: str = Field(description="The model version that computed these predictions.")
    threshold: float
    request_id: str = Field(description="Key of this request's rows in the prediction log.")
    predictions: list[Prediction] = Field(description="One per record, in the request's order.")


class ErrorResponse(BaseModel):
    detail: Any


class ReadyResponse(BaseModel):
    model: str
    version: str
    loaded_at: str


class LoadRequest(BaseModel):
    """Which version to load: ``{"version": "4"}`` or ``{"uri": "models:/<name>@champion"}``."""

    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(default=None, pattern=r"^\d+$")
    uri: str | None = None


def _predict_openapi(schema: InputSchema, max_records: int) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": max_records,
                        "items": schema.json_schema(),
                    }
                }
            },
        }
    }


# -- the app -----------------------------------------------------------------------------------


def create_app(
    model_uri: str | None = None,
    *,
    settings: Settings | None = None,
    lake: Lake | None = None,
) -> FastAPI:
    """The serving app; ``model_uri`` (``models:/name/version|@alias``) is loaded at startup."""
    from dslc.settings import get_settings

    settings = settings or get_settings()
    if model_uri is not None and model_uri.lower() in ("", "none"):
        model_uri = None
    if model_uri is not None:
        parse_model_uri(model_uri)  # fail now on a malformed URI, not in the background
    service = Service(settings, model_uri, lake)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()

    app = FastAPI(
        title="dslc model serving",
        description="Is a NYC flight going to arrive late? Predictions from the registered "
        f"model {service.name!r}.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(_ServiceMiddleware, service=service)
    _predict_route(app, service)
    _status_routes(app, service)
    _admin_routes(app, service)
    return app


def _predict_route(app: FastAPI, service: Service) -> None:
    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={
            413: {"model": ErrorResponse, "description": "Body or batch too large."},
            415: {"model": ErrorResponse, "description": "Body is not JSON."},
            422: {"model": ErrorResponse, "description": "A record does not fit the schema."},
            503: {"model": ErrorResponse, "description": "No model loaded."},
        },
        openapi_extra=_predict_openapi(InputSchema.default(), service.max_records),
        summary="P(late) for each flight record",
    )
    async def predict(request: Request) -> Response:
        # Documentation: requests are answered by _ServiceMiddleware before routing.
        status, body = await service.predict(request.scope, request.receive)
        return Response(body, status_code=status, media_type="application/json")


def _status_routes(app: FastAPI, service: Service) -> None:
    @app.get("/health", summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        response_model=ReadyResponse,
        responses={503: {"model": ErrorResponse}},
        summary="A model is loaded",
    )
    async def ready() -> Response:
        model = service.batcher.model
        if model is None:
            return _json(
                {
                    "detail": "no model loaded",
                    "model": service.name,
                    "last_load": service.last_load,
                },
                503,
            )
        return _json(model.describe())

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.text(), media_type=CONTENT_TYPE_LATEST)


def _admin_routes(app: FastAPI, service: Service) -> None:
    bearer = HTTPBearer(auto_error=False, description="DSLC_SERVING_ADMIN_TOKEN")

    def admin(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        service.check_token(credentials)

    @app.post(
        "/admin/load",
        status_code=202,
        dependencies=[Depends(admin)],
        summary="Load another version in the background; swap when it passed its self-test",
    )
    async def admin_load(body: LoadRequest) -> Response:
        return await _admin_load(service, body)

    @app.get(
        "/admin/status", dependencies=[Depends(admin)], summary="Served and last loaded version"
    )
    async def admin_status() -> dict[str, Any]:
        model = service.batcher.model
        return {
            "serving": model.describe() if model else None,
            "last_load": service.last_load,
            "queued_rows": service.batcher.queued_rows,
            "prediction_log": _predlog_status(service.predlog),
        }


async def _admin_load(service: Service, body: LoadRequest) -> Response:
    from dslc.model import registry

    if (body.version is None) == (body.uri is None):
        raise HTTPException(422, 'send exactly one of {"version": "4"} or {"uri": "models:/..."}')
    uri = body.uri or f"models:/{service.name}/{body.version}"
    try:
        name, _, _ = parse_model_uri(uri)
    except registry.RegistryError as e:
        raise HTTPException(422, str(e)) from None
    if name != service.name:
        raise HTTPException(
            422, f"this server serves {service.name!r}; start another one to serve {name!r}"
        )
    _refuse_if_loading(service)
    try:
        version = await asyncio.to_thread(resolve_version, uri, service.settings.mlflow_url)
    except registry.RegistryUnavailableError as e:
        raise HTTPException(503, str(e)) from None
    except registry.RegistryError as e:
        raise HTTPException(404, str(e)) from None
    _refuse_if_loading(service)  # another admin call may have started one meanwhile
    serving = service.batcher.model
    if serving is not None and serving.version == version:
        return _json({"status": "serving", "version": version}, 200)
    service.start_load(f"models:/{name}/{version}", version)
    return _json({"status": "loading", "version": version}, 202)


def _refuse_if_loading(service: Service) -> None:
    if service.loading:
        last = service.last_load or {}
        raise HTTPException(
            409, f"{last.get('uri')} is still loading; wait for it (GET /admin/status)"
        )


def _predlog_status(predlog: PredictionLog | None) -> dict[str, Any] | None:
    if predlog is None:
        return None
    return {
        "lake": predlog.lake.uri("predictions", predlog.model),
        "buffered_rows": predlog.buffered_rows,
        "written_rows": predlog.written_rows,
        "dropped_rows": predlog.dropped_rows,
        "failed_flushes": predlog.failed_flushes,
    }


def serve(
    model_uri: str | None,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
) -> None:
    """Run the service in the foreground (one uvicorn process) until SIGINT/SIGTERM."""
    import prometheus_client
    import uvicorn

    from dslc.settings import get_settings

    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created
    settings = get_settings()
    app = create_app(model_uri, settings=settings)
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = "httptools" if _importable("httptools") else "h11"
    config = uvicorn.Config(
        app,
        host=host or settings.serving_host,
        port=port or settings.serving_port,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        server_header=False,
        backlog=2048,
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
