"""Raw calls of any RPC, for tests of what the server does with what the SDK never sends.

Tests call the platform through the SDK (`intelgraph.sdk`); these are for the few that
must put exactly their own bytes and metadata on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from interceptors import RpcMethod
from interceptors.validation import required_fields


def rpc_path(method: MethodDescriptor) -> str:
    """The RPC's path: "/package.Service/Method"."""
    return f"/{method.containing_service.full_name}/{method.name}"


def complete_request(method: MethodDescriptor, request: Any) -> Any:
    """`request` with a placeholder in every field the contract marks required."""
    rpc_method = RpcMethod(
        full_name=rpc_path(method),
        service=method.containing_service.full_name,
        name=method.name,
        request_streaming=method.client_streaming,
        response_streaming=method.server_streaming,
        descriptor=method,
    )
    for field in required_fields(rpc_method):
        if field.is_repeated and field.message_type is not None:
            getattr(request, field.name).add()
        elif field.is_repeated:
            getattr(request, field.name).append("placeholder")
        elif field.type == field.TYPE_BYTES:
            setattr(request, field.name, b"placeholder")
        elif field.message_type is not None and field.message_type.full_name.endswith("Timestamp"):
            getattr(request, field.name).GetCurrentTime()
        elif field.message_type is not None:
            getattr(request, field.name).SetInParent()
        else:
            setattr(request, field.name, "placeholder")
    return request


async def invoke(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    metadata: tuple[tuple[str, str], ...] = (),
    request: Any = None,
) -> Any:
    """Call any RPC (with an empty request by default), whatever its streaming kind.

    Over a raw channel with exactly `metadata`: what the SDK never sends (no token, malformed
    ones), for the tests of what the server does with it.
    """
    path = rpc_path(method)
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    serialize: Callable[[Any], bytes] = request_class.SerializeToString
    deserialize: Callable[[bytes], Any] = response_class.FromString
    message = complete_request(method, request_class()) if request is None else request
    if method.client_streaming:
        requests = iter([message])
        if method.server_streaming:
            stream_stream = channel.stream_stream(
                path, request_serializer=serialize, response_deserializer=deserialize
            )
            return [r async for r in stream_stream(requests, metadata=metadata)]
        stream_unary = channel.stream_unary(
            path, request_serializer=serialize, response_deserializer=deserialize
        )
        return await stream_unary(requests, metadata=metadata)
    if method.server_streaming:
        unary_stream = channel.unary_stream(
            path, request_serializer=serialize, response_deserializer=deserialize
        )
        return [r async for r in unary_stream(message, metadata=metadata)]
    unary_unary = channel.unary_unary(
        path, request_serializer=serialize, response_deserializer=deserialize
    )
    return await unary_unary(message, metadata=metadata)
