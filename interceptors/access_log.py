"""One structured line per RPC, and the request id every call carries.

The outermost interceptor. It takes the caller's `x-request-id` (or mints one),
returns it in the response's trailing metadata, and binds it to the call's
context, so every log line of the call — and of tasks it starts — names it.
When the call ends it logs, as logger "conductor.access": the method, the
status code and reason, the duration, the tenant, a stable hash of the subject
(never the token), the peer and the request id; refusals at WARNING, server
faults at ERROR with their incident id, the rest at INFO.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import structlog

from core.request_ids import REQUEST_ID_KEY, accepted, mark_current_span, request_id
from interceptors.auth import verified_principal
from interceptors.base import Context, Method, RpcMethod, ServerInterceptor, invocation_metadata
from interceptors.outcomes import Outcome, outcome
from interceptors.tokens import subject_hash

logger = structlog.get_logger("conductor.access")

#: Server faults: logged at ERROR. Every other failure is a refusal (WARNING).
FAULTS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNIMPLEMENTED"})


def _ending(error: BaseException | None, context: Context) -> Outcome:
    if error is None:
        return Outcome("OK", "")
    reported = outcome.get()
    if reported is not None:
        return reported
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return Outcome("CANCELLED", "")
    code = cast("grpc.StatusCode | None", context.code())
    return Outcome(code.name if code is not None else "UNKNOWN", "")


class AccessLogInterceptor(ServerInterceptor):
    """Request ids in and out, and one log line per call."""

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: Context,
        rpc: RpcMethod,
    ) -> Any:
        """Bind the call's request id, run it, and log how it ended."""
        given = next((v for k, v in invocation_metadata(context) if k == REQUEST_ID_KEY), "")
        call_id = accepted(given)
        request_id.set(call_id)
        outcome.set(None)
        structlog.contextvars.bind_contextvars(request_id=call_id)
        mark_current_span(call_id)
        # In the trailers, not the headers: sent early, headers would turn a refusal's
        # trailers-only answer into headers then trailers, which a client still sending a
        # stream can see as INTERNAL. The error-mapping interceptor adds it to its own.
        context.set_trailing_metadata(((REQUEST_ID_KEY, call_id),))
        started = time.perf_counter()
        if rpc.response_streaming:
            return self._stream(method(request_or_iterator, context), context, rpc, started)
        error: BaseException | None = None
        try:
            return await method(request_or_iterator, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            _log(rpc, context, _ending(error, context), started)

    async def _stream(
        self, responses: AsyncIterator[Any], context: Context, rpc: RpcMethod, started: float
    ) -> AsyncIterator[Any]:
        error: BaseException | None = None
        try:
            async for response in responses:
                yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            _log(rpc, context, _ending(error, context), started)


def _log(rpc: RpcMethod, context: Context, ended: Outcome, started: float) -> None:
    principal = verified_principal()
    fields: dict[str, Any] = {
        "method": rpc.full_name,
        "code": ended.code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "peer": context.peer(),
    }
    if ended.reason:
        fields["reason"] = ended.reason
    if ended.incident:
        fields["incident"] = ended.incident
    if principal is not None:
        fields["tenant"] = principal.tenant_id
        fields["subject"] = subject_hash(principal.subject)
    if ended.code == "OK":
        logger.info("rpc", **fields)
    elif ended.code in FAULTS:
        logger.error("rpc", **fields)
    else:
        logger.warning("rpc", **fields)
