"""Contract-declared request validation: fields marked `(intelgraph.common.v1.required)`.

It runs after authorization, so a caller who may not call an RPC learns
nothing about what its requests must contain.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from intelgraph.common.v1 import field_behavior_pb2

from interceptors.base import CallGuard, Check, RpcMethod
from servers.errors import InvalidArgument


def required_fields(rpc: RpcMethod) -> list[FieldDescriptor]:
    """The request fields the contract of `rpc` marks required."""
    if rpc.descriptor is None:
        return []
    return [
        field
        for field in rpc.descriptor.input_type.fields
        if field.GetOptions().Extensions[field_behavior_pb2.required]
    ]


def is_set(message: Any, field: FieldDescriptor) -> bool:
    """Whether `field` of `message` carries a value (not the proto3 default)."""
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.has_presence:
        return bool(message.HasField(field.name))
    return bool(getattr(message, field.name))


class RequiredFieldsGuard(CallGuard):
    """Refuses unary requests that leave a required field unset."""

    def prepare(self, rpc: RpcMethod) -> Check | None:
        """The check of one method's required fields; None when it has none."""
        fields = [] if rpc.request_streaming else required_fields(rpc)
        if not fields:
            return None

        def validate(request: Any, _context: grpc.aio.ServicerContext) -> None:
            for field in fields:
                if not is_set(request, field):
                    raise InvalidArgument(f"{field.name} is required", field=field.name)

        return validate
