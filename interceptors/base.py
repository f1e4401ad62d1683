"""The one shape every server interceptor here takes, and the chain that runs them.

An interceptor implements `intercept(method, request_or_iterator, context, rpc)`,
the shape of grpc-interceptor, on `grpc.aio`:

* for a unary response, `method(...)` returns an awaitable; the interceptor
  awaits it (or not) and returns the response;
* for a streaming response, `method(...)` returns an async iterator; the
  interceptor returns an async iterator too (the stream itself, or a wrapper
  around it), without awaiting it.

`InterceptorChain` is the single `grpc.aio.ServerInterceptor` given to the
server. It composes the interceptors outermost first and wraps each method
handler once, on its first call, rather than on every call.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import grpc
from google.protobuf import descriptor, descriptor_pool

#: A servicer method, or the rest of the chain below an interceptor.
#: The servicer context of any RPC, as interceptors see it.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
#: A method handler, as grpc registers it.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Method = Callable[[Any, Context], Any]

#: The metadata grpc handed the chain for the current call. Reading it here is
#: much cheaper than `context.invocation_metadata()`, which rebuilds it (~9 µs).
_call_metadata: ContextVar[Sequence[tuple[str, Any]] | None] = ContextVar(
    "intelgraph_call_metadata", default=None
)


def invocation_metadata(context: Context) -> Sequence[tuple[str, Any]]:
    """The current call's metadata."""
    metadata = _call_metadata.get()
    if metadata is None:
        return tuple(context.invocation_metadata() or ())
    return metadata


@dataclass(frozen=True)
class RpcMethod:
    """What interceptors know about the method being called.

    Attributes:
        full_name: The wire name, "/intelgraph.access.v1.AccessService/GetJwks".
        service: Fully qualified service name, "intelgraph.access.v1.AccessService".
        name: The method's short name, "GetJwks".
        request_streaming: The client streams requests.
        response_streaming: The server streams responses.
        descriptor: The method's descriptor (with its options), when the
            service's file is in the default descriptor pool.
    """

    full_name: str
    service: str
    name: str
    request_streaming: bool
    response_streaming: bool
    descriptor: descriptor.MethodDescriptor | None
    #: Parses one request message from its bytes, when the outermost interceptor
    #: takes requests undecoded (`ServerInterceptor.decodes_requests`); else None.
    decode: Callable[[bytes], Any] | None = None

    @property
    def kind(self) -> str:
        """The gRPC method type: unary, client_stream, server_stream or bidi_stream."""
        if self.request_streaming:
            return "bidi_stream" if self.response_streaming else "client_stream"
        return "server_stream" if self.response_streaming else "unary"

    @functools.cached_property
    def metric_labels(self) -> tuple[str, str, str]:
        """(grpc_type, grpc_service, grpc_method), as the metrics label calls."""
        return (self.kind, self.service, self.name)


def parse_method_name(full_name: str) -> tuple[str, str]:
    """Split a wire method name into (service, method).

    >>> parse_method_name("/intelgraph.access.v1.AccessService/GetJwks")
    ('intelgraph.access.v1.AccessService', 'GetJwks')
    """
    service, _, method = full_name.lstrip("/").rpartition("/")
    return service, method


def describe_method(full_name: str, handler: Handler) -> RpcMethod:
    """Build the `RpcMethod` of a handler, looking its descriptor up by name."""
    service, name = parse_method_name(full_name)
    try:
        service_descriptor = descriptor_pool.Default().FindServiceByName(service)
        method_descriptor = service_descriptor.methods_by_name.get(name)
    except KeyError:
        method_descriptor = None
    return RpcMethod(
        full_name=full_name,
        service=service,
        name=name,
        request_streaming=bool(handler.request_streaming),
        response_streaming=bool(handler.response_streaming),
        descriptor=method_descriptor,
    )


def decoded_stream(rpc: RpcMethod, raw: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """The messages of a request stream that arrives undecoded, parsed one by one."""
    decode = rpc.decode
    assert decode is not None

    async def messages() -> AsyncIterator[Any]:
        async for data in raw:
            yield decode(data)

    return messages()


class ServerInterceptor(abc.ABC):
    """Base of the platform's server interceptors."""

    #: The outermost interceptor may take requests as bytes and parse them itself (with
    #: `rpc.decode`), so that a request that is not a valid message becomes a status of
    #: its choosing rather than grpc's UNKNOWN with the parser's message.
    decodes_requests = False

    def applies_to(self, rpc: RpcMethod) -> bool:
        """Whether this interceptor runs around calls of `rpc`; the chain leaves it out if not."""
        return True

    @abc.abstractmethod
    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: Context,
        rpc: RpcMethod,
    ) -> Any:
        """Run around one call.

        Args:
            method: The rest of the chain; call it with (request_or_iterator, context).
            request_or_iterator: The request, or an async iterator of requests
                for client-streaming methods.
            context: The call's servicer context.
            rpc: What is being called.

        Returns:
            The response for unary-response methods; an async iterator of
            responses for streaming-response methods.
        """


#: A guard's check for one method: returns to let the call through, raises to refuse it.
#: A check that must wait (a policy evaluated off the event loop) returns an awaitable
#: that does the same; one that can decide at once returns None.
Check = Callable[[Any, Context], Awaitable[None] | None]


class CallGuard(ServerInterceptor):
    """An interceptor that only decides, before the call, whether it may go on.

    Implement `prepare`, which the chain calls once per method: it returns
    the per-call check (raising a `DomainError` to refuse), or None when the
    method needs no check. Everything a check can work out from the method
    alone (its rule, its permission) is worked out there, once, and the
    chain runs consecutive guards' checks inline rather than as a layer each.
    """

    @abc.abstractmethod
    def prepare(self, rpc: RpcMethod) -> Check | None:
        """The check for calls of `rpc`, or None if they need none."""

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: Context,
        rpc: RpcMethod,
    ) -> Any:
        """Check, then continue (the chain inlines this; kept for use on its own)."""
        check = self.prepare(rpc)
        pending = None if check is None else check(request_or_iterator, context)
        if pending is not None:
            await pending
        return await proceed(method, request_or_iterator, context, rpc)


async def proceed(
    method: Method, request_or_iterator: Any, context: Context, rpc: RpcMethod
) -> Any:
    """Continue down the chain: await a unary response; hand a response stream back un-awaited."""
    if rpc.response_streaming:
        return method(request_or_iterator, context)
    return await method(request_or_iterator, context)


def _servicer_stream(behavior: Method) -> Method:
    """Present a servicer's streamed responses as one async generator.

    A grpc.aio servicer streams either as an async generator or as a
    coroutine that calls `context.write`; both end up as one iterator here.
    """

    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        result = behavior(request, context)
        if inspect.isawaitable(result):
            await result
            return
        async for response in result:
            yield response

    return call


class InterceptorChain(grpc.aio.ServerInterceptor):
    """Runs `interceptors` around every method, outermost first."""

    def __init__(self, interceptors: Sequence[ServerInterceptor]) -> None:
        self._interceptors = tuple(interceptors)
        self._handlers: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Return the wrapped handler of the called method (None if there is none)."""
        full_name: str = handler_call_details.method
        # intercept_service runs in the call's own task, ahead of its handler.
        _call_metadata.set(handler_call_details.invocation_metadata)
        wrapped = self._handlers.get(full_name)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None
            wrapped = self._wrap(full_name, handler)
            self._handlers[full_name] = wrapped
        return wrapped

    def _wrap(self, full_name: str, handler: Handler) -> Handler:
        rpc = describe_method(full_name, handler)
        decodes = bool(self._interceptors) and self._interceptors[0].decodes_requests
        deserializer = handler.request_deserializer
        if decodes and deserializer is not None:
            rpc = dataclasses.replace(rpc, decode=deserializer)
            deserializer = None  # the outermost interceptor parses
        # grpc's stubs type handlers for sync servers; on grpc.aio they are coroutines
        # (or async generators) taking the aio context.
        behavior = cast(
            Method,
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream,
        )
        below = _servicer_stream(behavior) if rpc.response_streaming else behavior
        for layer in reversed(_group_guards(self._interceptors)):
            if isinstance(layer, tuple):
                checks = tuple(check for guard in layer if (check := guard.prepare(rpc)))
                if checks:
                    below = _guard_step(checks, below, rpc)
            elif not layer.applies_to(rpc):
                continue
            elif rpc.response_streaming:
                below = _stream_layer(layer, below, rpc)
            else:
                below = _unary_layer(layer, below, rpc)

        factory = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[rpc.request_streaming, rpc.response_streaming]
        return factory(
            below,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )


def _group_guards(
    interceptors: Sequence[ServerInterceptor],
) -> list[ServerInterceptor | tuple[CallGuard, ...]]:
    """The chain with each run of consecutive guards collapsed into one tuple."""
    grouped: list[ServerInterceptor | tuple[CallGuard, ...]] = []
    for interceptor in interceptors:
        if isinstance(interceptor, CallGuard) and grouped and isinstance(grouped[-1], tuple):
            grouped[-1] = (*grouped[-1], interceptor)
        elif isinstance(interceptor, CallGuard):
            grouped.append((interceptor,))
        else:
            grouped.append(interceptor)
    return grouped


def _guard_step(checks: tuple[Check, ...], below: Method, rpc: RpcMethod) -> Method:
    if rpc.response_streaming:
        # Checked lazily, inside the stream, so the layers above map refusals.
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            for check in checks:
                pending = check(request, context)
                if pending is not None:
                    await pending
            async for response in below(request, context):
                yield response

        return stream

    async def call(request: Any, context: Context) -> Any:
        for check in checks:
            pending = check(request, context)
            if pending is not None:
                await pending
        return await below(request, context)

    return call


def _unary_layer(layer: ServerInterceptor, below: Method, rpc: RpcMethod) -> Method:
    async def call(request: Any, context: Context) -> Any:
        return await layer.intercept(below, request, context, rpc)

    return call


def _stream_layer(layer: ServerInterceptor, below: Method, rpc: RpcMethod) -> Method:
    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        responses = await layer.intercept(below, request, context, rpc)
        async for response in responses:
            yield response

    return call
