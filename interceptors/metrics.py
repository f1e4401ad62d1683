"""RPC metrics in the names of go-grpc-prometheus, so standard gRPC dashboards work.

* `grpc_server_started_total{grpc_type, grpc_service, grpc_method}`
* `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`
* `grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}` (histogram)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from interceptors.base import Method, RpcMethod, ServerInterceptor
from servers.errors import DomainError

_LABELS = ("grpc_type", "grpc_service", "grpc_method")

STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS)
HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    (*_LABELS, "grpc_code"),
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status.",
    _LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _code_of(error: BaseException | None, context: grpc.aio.ServicerContext) -> str:
    """The status code a call ends with, given what (if anything) it raised."""
    code: grpc.StatusCode
    if error is None:
        code = context.code() or grpc.StatusCode.OK
    elif isinstance(error, DomainError):
        code = error.status_code
    elif isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        code = grpc.StatusCode.CANCELLED
    elif isinstance(error, grpc.aio.AbortError):
        code = context.code() or grpc.StatusCode.UNKNOWN
    else:
        # The error-mapping interceptor turns anything else into INTERNAL.
        code = grpc.StatusCode.INTERNAL
    return str(code.name)


class _MethodMetrics:
    """One method's metric children, resolved once (label lookups cost on the hot path)."""

    def __init__(self, rpc: RpcMethod) -> None:
        self.labels = (rpc.kind, rpc.service, rpc.name)
        self.started = STARTED.labels(*self.labels)
        self.seconds = HANDLING_SECONDS.labels(*self.labels)
        self._handled: dict[str, Any] = {}

    def record(self, code: str, started: float) -> None:
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = HANDLED.labels(*self.labels, code)
        handled.inc()
        self.seconds.observe(time.perf_counter() - started)


class MetricsInterceptor(ServerInterceptor):
    """Counts RPCs and times them to their status."""

    def __init__(self) -> None:
        self._methods: dict[str, _MethodMetrics] = {}

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        rpc: RpcMethod,
    ) -> Any:
        """Record start, status and duration of the call."""
        metrics = self._methods.get(rpc.full_name)
        if metrics is None:
            metrics = self._methods[rpc.full_name] = _MethodMetrics(rpc)
        metrics.started.inc()
        started = time.perf_counter()
        if rpc.response_streaming:
            return self._observe_stream(
                method(request_or_iterator, context), context, metrics, started
            )
        error: BaseException | None = None
        try:
            return await method(request_or_iterator, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            metrics.record(_code_of(error, context), started)

    async def _observe_stream(
        self,
        responses: AsyncIterator[Any],
        context: grpc.aio.ServicerContext,
        metrics: _MethodMetrics,
        started: float,
    ) -> AsyncIterator[Any]:
        error: BaseException | None = None
        try:
            async for response in responses:
                yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            metrics.record(_code_of(error, context), started)
