"""Traces: OpenTelemetry spans of calls, queries and analytics runs, when an operator asks.

Off by default: without `CONDUCTOR_OTLP_ENDPOINT` nothing is instrumented and the
platform's own spans go to OpenTelemetry's no-op tracer, so tracing costs nothing
unless it is on. On, one `TracerProvider` per process (resource
`service.name=intelgraph-conductor`, its version and instance) samples new traces
at `CONDUCTOR_TRACE_SAMPLE_RATIO` (following a caller's decision) and exports in
batches over OTLP/HTTP. The spans:

* a server span per RPC (OpenTelemetry's gRPC instrumentation, outside the
  platform's interceptor chain; the caller's `traceparent` metadata is its parent);
* a server span per HTTP request (the ASGI instrumentation; probes and `/metrics`
  excluded);
* a span per GraphQL operation and per root field it resolves, and a client span per
  gRPC call the facade, the console and the Catalog make (`traceparent` injected);
* a span per SQL statement (the SQLAlchemy instrumentation, on the platform's engine);
* a span per analytics pack run in a worker process.

Spans carry the call's request id (`conductor.request_id`), and log lines written
inside a recorded span carry its `trace_id`, so a log line finds its trace and back.
"""

from __future__ import annotations

import logging
import platform as runtime_platform
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from servers.logs import url_origin

logger = logging.getLogger(__name__)

#: The `service.name` of every span the platform exports.
SERVICE_NAME = "intelgraph-conductor"
#: Seconds one export (with its retries) may take: a collector that is down then costs a
#: stopping platform at most this long.
EXPORT_TIMEOUT_S = 3.0
#: HTTP paths that make no spans: probes and scrapes would drown the traces that matter.
UNTRACED_PATHS = "/healthz,/readyz,/metrics"


class _CallsStartTraces(Sampler):
    """New traces start at calls served, never at a background job's SQL statement.

    A root span of kind CLIENT (a query of the readiness watcher, a lease renewal)
    would be a trace of its own every second; those are dropped, the rest sampled at
    `ratio`.
    """

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(  # noqa: PLR0917 - the Sampler interface
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        """Drop root CLIENT spans; sample the others by trace id."""
        if kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """How it samples, for diagnostics."""
        return f"CallsStartTraces{{{self._ratio.get_description()}}}"


def sampler(ratio: float) -> Sampler:
    """The platform's sampler: a caller's decision is followed; new traces start at calls.

    Args:
        ratio: Share (0 to 1) of new traces recorded.
    """
    return ParentBased(root=_CallsStartTraces(ratio))


class Tracing:
    """Where the platform's spans go: a tracer provider, or nowhere.

    Args:
        provider: The provider spans are recorded by; None turns tracing off.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider

    @classmethod
    def exporting(
        cls, endpoint: str, *, sample_ratio: float, version: str, instance: str
    ) -> Tracing:
        """Tracing on, exporting to the OTLP/HTTP collector at `endpoint` (or off without one)."""
        if not endpoint:
            return cls(None)
        resource = Resource.create(
            {
                "service.name": SERVICE_NAME,
                "service.version": version,
                "service.instance.id": instance,
                "host.name": runtime_platform.node(),
            }
        )
        provider = TracerProvider(resource=resource, sampler=sampler(sample_ratio))
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=EXPORT_TIMEOUT_S)
            )
        )
        logger.info("tracing on: spans exported to %s", url_origin(endpoint))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded."""
        return self.provider is not None

    def tracer(self, name: str) -> trace.Tracer:
        """A tracer for the platform's own spans (no-op while tracing is off)."""
        if self.provider is None:
            return trace.NoOpTracer()
        return self.provider.get_tracer(name)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The gRPC server's span interceptor, to run outside the platform's chain."""
        if self.provider is None:
            return []
        return [aio_server_interceptor(tracer_provider=self.provider)]  # type: ignore[no-untyped-call]

    def client_interceptors(self) -> Sequence[grpc.aio.ClientInterceptor]:
        """Client spans for the platform's own gRPC calls, with `traceparent` injected."""
        if self.provider is None:
            return ()
        interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider
        )
        return interceptors

    def http_app(self, app: ASGIApp) -> ASGIApp:
        """`app` with a server span per HTTP request (except probes and scrapes)."""
        if self.provider is None:
            return app
        traced: ASGIApp = OpenTelemetryMiddleware(
            app,
            excluded_urls=UNTRACED_PATHS,
            tracer_provider=self.provider,
            exclude_spans=["receive", "send"],
        )
        return traced

    def trace_database(self, engine: AsyncEngine) -> None:
        """A span per SQL statement `engine` runs (its pool's own use goes unmeasured)."""
        if self.provider is None:
            return
        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        unmetered = NoOpMeter("conductor").create_up_down_counter("db.client.connections.usage")
        EngineTracer(tracer, engine.sync_engine, unmetered)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        """Export what is still buffered and stop (the process is ending)."""
        if self.provider is not None:
            self.provider.shutdown()
