"""The service's Prometheus metrics and the ASGI middleware that observes every request.

:class:`ServiceMiddleware` counts and times each request under its endpoint (paths outside
:data:`ENDPOINTS` count as "other", so a scan cannot grow the label set) and answers
``POST /predict`` itself, without the framework's routing: that is the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from dslc.errors import DslcError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from dslc.serving.batcher import ServedModel
    from dslc.serving.service import Service

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

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
        self.unseen = Counter(
            "dslc_unseen_categories",
            "Predicted records holding a category the served model never saw, by feature "
            "(the model treats it as missing).",
            ["feature"],
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
        for feature in model.unseen.features if model.unseen is not None else ():
            self.unseen.labels(feature)  # exported at 0 from the start, for rate()

    def on_unseen(self, counts: dict[str, int]) -> None:
        for feature, n in counts.items():
            self.unseen.labels(feature).inc(n)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class ClientGoneError(DslcError):
    """The client disconnected before its request body arrived (counted as status 499)."""


class ServiceMiddleware:
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
                # Request/Response objects; the FastAPI route in dslc.serving.app documents it.
                try:
                    status, body, close = await self.service.predict(scope, receive)
                except ClientGoneError:
                    status = 499
                    return
                await _send_json(send, status, body, close)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(endpoint, status, time.perf_counter() - started)


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send_json(send: Send, status: int, body: bytes, close: bool = False) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
