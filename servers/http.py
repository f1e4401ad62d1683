"""The HTTP listener's application: `/healthz` for load balancers, `/metrics` for Prometheus.

It runs under uvicorn on the same event loop as the gRPC server; the GraphQL
facade mounts here too.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version as _version
from pathlib import Path

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.request_ids import REQUEST_ID_KEY, accepted, mark_current_span, request_id
from interceptors.metrics import RPC_STATS, RpcStatsCollector

#: Reports whether the process serves, and what: (ok, document).
HealthProbe = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


def multiprocess_dir() -> Path | None:
    """The metrics directory the worker supervisor shares with its workers, if any."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) if directory else None


_single_process_registered = False


def metrics_registry() -> CollectorRegistry:
    """The registry `/metrics` exposes, with the RPC metrics in it.

    With several worker processes (`PROMETHEUS_MULTIPROC_DIR` set by the
    supervisor), it aggregates every worker's samples, so a scrape through the
    shared port sees the whole server rather than one random worker.
    """
    global _single_process_registered  # noqa: PLW0603 - one registration per process
    directory = multiprocess_dir()
    if directory is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(RpcStatsCollector(RPC_STATS, directory))
        return registry
    if not _single_process_registered:
        REGISTRY.register(RpcStatsCollector(RPC_STATS))
        _single_process_registered = True
    return REGISTRY


_access = structlog.get_logger("conductor.access")

# No `_created` series: they double the series count and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

BUILD_INFO = Gauge(
    "conductor_build_info",
    "Always 1; the labels say which build serves.",
    ("version", "python", "grpc"),
    multiprocess_mode="max",
)
BUILD_INFO.labels(
    version=_version("intelgraph-conductor"),
    python=platform.python_version(),
    grpc=_version("grpcio"),
).set(1)
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests served, by method, area (the first path segment) and status code.",
    ("method", "area", "code"),
)
HTTP_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to serve HTTP requests, by method and area.",
    ("method", "area"),
)
#: The areas the HTTP port serves; anything else counts as "other" (bounded labels).
AREAS = frozenset({"graphql", "console", "files", "healthz", "readyz", "metrics"})


def _area(path: str) -> str:
    first = path.strip("/").split("/", 1)[0]
    return first if first in AREAS else "other"


class RequestLog:
    """ASGI middleware: the request id in and out, and one log line per HTTP request.

    Takes `x-request-id` (or mints one), binds it for the request's log lines
    and the gRPC calls it makes (the facade and the console forward it), sends
    it back as a response header, and logs method, path, status and duration
    as logger "conductor.access" (5xx at ERROR, 4xx at WARNING). Query strings
    are never logged: they may carry tokens or personal data.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (other scopes pass through)."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        call_id = accepted(headers.get(REQUEST_ID_KEY.encode(), b"").decode("latin-1"))
        request_id.set(call_id)
        structlog.contextvars.bind_contextvars(request_id=call_id)
        mark_current_span(call_id)
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_KEY.encode(), call_id.encode()),
                ]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            area = _area(scope["path"])
            HTTP_REQUESTS.labels(scope["method"], area, str(status)).inc()
            HTTP_SECONDS.labels(scope["method"], area).observe(elapsed)
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "peer": _peer(scope),
            }
            if status >= 500:
                _access.error("http", **fields)
            elif status >= 400:
                _access.warning("http", **fields)
            else:
                _access.info("http", **fields)
            structlog.contextvars.unbind_contextvars("request_id")


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""


def _metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def create_metrics_app() -> Starlette:
    """The private metrics listener's application: `/metrics` only."""
    route = Route("/metrics", _metrics_endpoint(metrics_registry()), methods=["GET"])
    return Starlette(routes=[route])


def create_http_app(
    health: HealthProbe,
    graphql: Callable[[Request], Awaitable[Response]] | None = None,
    routes: Sequence[BaseRoute] = (),
    *,
    liveness: HealthProbe | None = None,
    metrics: bool = True,
) -> Starlette:
    """The ASGI application: `/healthz`, `/readyz`, `/metrics`, `/graphql` (when given), `routes`.

    `/healthz` says the process is alive (`liveness`; `health` when not given),
    `/readyz` whether it should receive traffic (`health`): 503 otherwise.
    """
    registry = metrics_registry()

    def probe(check: HealthProbe) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def answer(_request: Request) -> JSONResponse:
            ok, document = await check()
            return JSONResponse(document, status_code=200 if ok else 503)

        return answer

    served: list[BaseRoute] = [
        Route("/healthz", probe(liveness or health), methods=["GET"]),
        Route("/readyz", probe(health), methods=["GET"]),
    ]
    if metrics:
        served.append(Route("/metrics", _metrics_endpoint(registry), methods=["GET"]))
    if graphql is not None:
        served.append(Route("/graphql", graphql, methods=["GET", "POST"]))
    return Starlette(routes=[*served, *routes], middleware=[Middleware(RequestLog)])
