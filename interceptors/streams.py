"""Limits of client streams: an idle timeout, an overall deadline, bounds on every message.

A request stream is read at the client's pace, so without limits one idle or
endless stream holds whatever its handler holds (a transaction, a lock, a
connection) for as long as the client likes. Here every message must arrive
within `idle_timeout_s` of the previous one (or of the call's start), the
whole stream within `max_duration_s`, and each message is checked against the
bounds of its contract (`interceptors.validation`) as it arrives. A stream
that breaks a limit ends with DEADLINE_EXCEEDED or INVALID_ARGUMENT, raised
from the handler's next read, so the handler's own cleanup runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from interceptors.base import Method, RpcMethod, ServerInterceptor, proceed
from interceptors.validation import within_bounds
from servers.errors import DeadlineExceeded


@dataclass(frozen=True)
class StreamLimits:
    """How long a client stream may idle, and last."""

    idle_timeout_s: float = 30.0
    max_duration_s: float = 900.0


class StreamLimitsInterceptor(ServerInterceptor):
    """Applies `StreamLimits` and the contract's bounds to client-streaming calls."""

    def __init__(self, limits: StreamLimits) -> None:
        self._limits = limits

    def applies_to(self, rpc: RpcMethod) -> bool:
        """Only client streams are limited here (unary requests are checked by `BoundsGuard`)."""
        return rpc.request_streaming

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        rpc: RpcMethod,
    ) -> Any:
        """Hand the handler a limited view of its request stream."""
        limited = self._limited(request_or_iterator, rpc)
        return await proceed(method, limited, context, rpc)

    async def _limited(self, requests: AsyncIterator[Any], rpc: RpcMethod) -> AsyncIterator[Any]:
        check = within_bounds(rpc.descriptor.input_type) if rpc.descriptor is not None else None
        loop = asyncio.get_running_loop()
        ends = loop.time() + self._limits.max_duration_s
        iterator = aiter(requests)
        while True:
            left = ends - loop.time()
            wait = min(self._limits.idle_timeout_s, left)
            try:
                request = await asyncio.wait_for(anext(iterator), max(wait, 0))
            except StopAsyncIteration:
                return
            except TimeoutError:
                if wait >= left:
                    raise DeadlineExceeded(
                        f"the request stream took longer than {self._limits.max_duration_s:g} s"
                    ) from None
                raise DeadlineExceeded(
                    f"no message on the request stream for {self._limits.idle_timeout_s:g} s"
                ) from None
            if check is not None:
                check(request)
            yield request
