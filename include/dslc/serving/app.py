"""The serving HTTP API (FastAPI): predict, health, readiness, metrics and the admin loader.

``POST /predict`` is the hot path and is written for it: the body is read with a size cap and
parsed by orjson from bytes, validated by :mod:`dslc.serving.schema` straight into columns,
predicted by the :class:`~dslc.serving.batcher.MicroBatcher` (one model call per batch, in its
own thread) and answered with orjson bytes. The OpenAPI document still describes the request
and response (``openapi_extra`` / ``response_model``), so ``/docs`` is accurate.

``POST /admin/load`` loads a version in a background thread, self-tests it (the compiled
predictor must agree with the sklearn pipeline on the model's input example, with finite
probabilities in [0, 1]) and only then swaps it in; a failed load leaves the old model serving.

This module holds the app, its routes and :func:`serve`; the process's state and the
``/predict`` handler are :mod:`dslc.serving.service`, loading a version is
:mod:`dslc.serving.loading`, and the metrics and the middleware that answers ``/predict``
ahead of routing are :mod:`dslc.serving.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from dslc.model.registry import parse_model_uri
from dslc.serving.loading import resolve_version
from dslc.serving.metrics import ServiceMiddleware
from dslc.serving.schema import InputSchema
from dslc.serving.service import Service

if TYPE_CHECKING:
    from dslc.lake import Lake
    from dslc.serving.predlog import PredictionLog
    from dslc.settings import Settings


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content), status_code=status, media_type="application/json", headers=headers
    )


class Prediction(BaseModel):
    probability: float = Field(description="P(arrival delay >= 15 min or cancelled/diverted).")
    late: bool = Field(
        description="probability >= threshold (named after the flights label; kept for clients)."
    )
    unseen: list[str] | None = Field(
        default=None,
        description="Present only when non-empty: the record's categorical features whose "
        "value the model never saw in training (e.g. a new carrier). The model treats such a "
        "value as missing, so the probability is less reliable; counted per feature in "
        "/metrics as dslc_unseen_categories_total.",
        examples=[["carrier", "dest"]],
    )


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

    from dslc.settings import get_usecase

    app = FastAPI(
        title="dslc model serving",
        description=f"{get_usecase().description} Predictions from the registered "
        f"model {service.name!r}.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(ServiceMiddleware, service=service)
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
        summary="The positive class's probability for each record",
    )
    async def predict(request: Request) -> Response:
        # Documentation: requests are answered by ServiceMiddleware before routing.
        status, body, close = await service.predict(request.scope, request.receive)
        headers = {"connection": "close"} if close else None
        return Response(body, status_code=status, media_type="application/json", headers=headers)


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
