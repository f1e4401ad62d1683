"""The HTTP listener's application: `/healthz` for load balancers, `/metrics` for Prometheus.

It runs under uvicorn on the same event loop as the gRPC server; the GraphQL
facade mounts here too.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

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


def create_http_app(
    health: HealthProbe,
    graphql: Callable[[Request], Awaitable[Response]] | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI application: `/healthz`, `/metrics`, `/graphql` (when given) and `routes`."""
    registry = metrics_registry()

    async def healthz(_request: Request) -> JSONResponse:
        ok, document = await health()
        return JSONResponse(document, status_code=200 if ok else 503)

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    served: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if graphql is not None:
        served.append(Route("/graphql", graphql, methods=["GET", "POST"]))
    return Starlette(routes=[*served, *routes])
