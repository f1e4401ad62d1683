"""Limits of client streams: an idle timeout, an overall deadline, bounds on every message.

A request stream is read at the client's pace, so without limits one idle or
endless stream holds whatever its handler holds (a transaction, a lock, a
connection) for as long as the client likes. Here every message must arrive
within `idle_timeout_s` of the previous one (or of the call's start), the
whole stream within `max_duration_s`, and each message is checked against the
bounds of its contract (`interceptors.validation`) as it arrives. A stream
that breaks a limit ends with DEADLINE_EXCEEDED or INVALID_ARGUMENT, raised
from the handler's next read, so the handler's own cleanup runs.

A stream the client abandons (cancelled, past its deadline, or cut off by the
server's shutdown) ends for grpc as if the client had finished sending, and
the cancellation reaches the handler just after (in the same batch of events
from the transport, measured at the next turn of the loop). So the end of a
stream is held for `END_SETTLE_S` before the handler sees it: an abandoned
stream is cancelled there, and no handler mistakes half a stream for a whole
one (an import would commit what it had).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from core.errors import DeadlineExceeded
from interceptors.base import Context, Method, RpcMethod, ServerInterceptor, proceed
from interceptors.validation import within_bounds

#: Seconds the end of a request stream waits for a cancellation that came with it.
END_SETTLE_S = 0.05


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
        context: Context,
        rpc: RpcMethod,
    ) -> Any:
        """Hand the handler a limited view of its request stream."""
        limited = self._limited(request_or_iterator, context, rpc)
        return await proceed(method, limited, context, rpc)

    async def _limited(
        self, requests: AsyncIterator[Any], context: Context, rpc: RpcMethod
    ) -> AsyncIterator[Any]:
        check = within_bounds(rpc.descriptor.input_type) if rpc.descriptor is not None else None
        loop = asyncio.get_running_loop()
        ends = loop.time() + self._limits.max_duration_s
        iterator = aiter(requests)
        while True:
            left = ends - loop.time()
            wait = min(self._limits.idle_timeout_s, left)
            try:
                # A timeout of the current task, not wait_for's task around the read: reading
                # in a task of its own keeps grpc's cancellation of an abandoned call from
                # reaching the handler.
                async with asyncio.timeout(max(wait, 0)):
                    request = await anext(iterator)
            except StopAsyncIteration:
                await asyncio.sleep(END_SETTLE_S)  # an abandoned call is cancelled here
                if context.cancelled() or context.done():
                    raise asyncio.CancelledError("the client abandoned the stream") from None
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
