"""Contract-declared request validation: required fields and the bounds of every field.

Two guards run after authorization, so a caller who may not call an RPC
learns nothing about what its requests must contain:

* `RequiredFieldsGuard`: fields marked `(intelgraph.common.v1.required)`;
* `BoundsGuard`: every field of the request, and of every message in it,
  within its `(intelgraph.common.v1.bounds)` or the platform's defaults
  (`intelgraph/common/v1/field_behavior.proto` says which). Each message of a
  request stream is checked as it arrives.

Both refuse with INVALID_ARGUMENT naming the field's path; neither repeats
the value it refused. A message type's checks are worked out once from its
descriptor, so a request costs a few attribute reads per field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from intelgraph.common.v1 import field_behavior_pb2

from interceptors.base import CallGuard, Check, RpcMethod
from servers.errors import InvalidArgument

#: Defaults of fields that declare no bounds (field_behavior.proto documents them).
DEFAULT_MAX_STRING_CHARS = 256
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_ITEMS = 100
#: The range of `google.protobuf.Timestamp`: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
TIMESTAMP_MIN_S = -62_135_596_800
TIMESTAMP_MAX_S = 253_402_300_799

_TIMESTAMP = "google.protobuf.Timestamp"
_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})

#: Checks one value of a field; the argument after it is the field's path.
ValueCheck = Callable[[Any, str], None]
#: Checks a whole message; the second argument is the path of the message ("" at the top).
MessageCheck = Callable[[Any, str], None]


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


def field_bounds(field: FieldDescriptor) -> field_behavior_pb2.FieldBounds:
    """The bounds `field` declares (all unset when it declares none)."""
    options = field.GetOptions()
    if options.HasExtension(field_behavior_pb2.bounds):
        return options.Extensions[field_behavior_pb2.bounds]
    return field_behavior_pb2.FieldBounds()


def _joined(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _refuse(path: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{path} {problem}", field=path)


def _text_check(bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    most = bounds.max_len or DEFAULT_MAX_STRING_CHARS

    def text(value: str, path: str) -> None:
        if len(value) > most:
            raise _refuse(path, f"is longer than {most} characters")
        if "\x00" in value:
            raise _refuse(path, "holds a NUL character")

    return text


def _bytes_check(bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    most = bounds.max_len or DEFAULT_MAX_BYTES

    def data(value: bytes, path: str) -> None:
        if len(value) > most:
            raise _refuse(path, f"is longer than {most} bytes")

    return data


def _integer_check(bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    low = bounds.min if bounds.HasField("min") else None
    high = bounds.max if bounds.HasField("max") else None

    def integer(value: int, path: str) -> None:
        if low is not None and value < low:
            raise _refuse(path, f"must be at least {low}")
        if high is not None and value > high:
            raise _refuse(path, f"must be at most {high}")

    return integer


def _finite(value: float, path: str) -> None:
    if not math.isfinite(value):
        raise _refuse(path, "must be a finite number")


def _enum_check(enum: EnumDescriptor) -> ValueCheck:
    defined = frozenset(value.number for value in enum.values)

    def member(value: int, path: str) -> None:
        if value not in defined:
            raise _refuse(path, f"is not a value of {enum.full_name}")

    return member


def _anything(_value: Any, _path: str) -> None:
    """Booleans: every value is in bounds."""


def _value_check(field: FieldDescriptor, bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    """The check of one value of `field` (one item, for a repeated field)."""
    kind = field.type
    if field.message_type is not None:
        return message_check(field.message_type)
    if field.enum_type is not None:
        return _enum_check(field.enum_type)
    if kind == FieldDescriptor.TYPE_STRING:
        return _text_check(bounds)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes_check(bounds)
    if kind in _INTEGERS:
        return _integer_check(bounds)
    return _finite if kind in _FLOATS else _anything


def _timestamp(value: Any, path: str) -> None:
    if not TIMESTAMP_MIN_S <= value.seconds <= TIMESTAMP_MAX_S:
        raise _refuse(path, "lies outside 0001-01-01 .. 9999-12-31")
    if not 0 <= value.nanos <= 999_999_999:
        raise _refuse(path, "has nanos outside 0 .. 999999999")


def _map_check(
    name: str, bounds: field_behavior_pb2.FieldBounds, entry: Descriptor
) -> MessageCheck:
    """A map field: at most `max_items` entries, each key and value within its own bounds."""
    most = bounds.max_items or DEFAULT_MAX_ITEMS
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    check_key = _value_check(key_field, bounds)
    check_value = _value_check(value_field, bounds)

    def entries(message: Any, parent: str) -> None:
        values = getattr(message, name)
        if not values:
            return
        path = _joined(parent, name)
        if len(values) > most:
            raise _refuse(path, f"has more than {most} entries")
        for key, value in values.items():
            check_key(key, f"{path}.key")
            check_value(value, f"{path}.value")

    return entries


def _field_check(field: FieldDescriptor) -> MessageCheck:
    """The check of `field` within its message."""
    name = field.name
    bounds = field_bounds(field)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        return _map_check(name, bounds, entry)
    check = _value_check(field, bounds)
    if field.is_repeated:
        most = bounds.max_items or DEFAULT_MAX_ITEMS

        def items(message: Any, parent: str) -> None:
            values = getattr(message, name)
            if not values:
                return
            path = _joined(parent, name)
            if len(values) > most:
                raise _refuse(path, f"has more than {most} items")
            for index, value in enumerate(values):
                check(value, f"{path}[{index}]")

        return items
    if field.type == FieldDescriptor.TYPE_MESSAGE:

        def present(message: Any, parent: str) -> None:
            if message.HasField(name):
                check(getattr(message, name), _joined(parent, name))

        return present

    def scalar(message: Any, parent: str) -> None:
        check(getattr(message, name), _joined(parent, name))

    return scalar


_MESSAGE_CHECKS: dict[str, MessageCheck] = {}


def message_check(descriptor: Descriptor) -> MessageCheck:
    """The check of every field of messages of type `descriptor` (built once per type)."""
    found = _MESSAGE_CHECKS.get(descriptor.full_name)
    if found is not None:
        return found
    if descriptor.full_name == _TIMESTAMP:
        _MESSAGE_CHECKS[_TIMESTAMP] = _timestamp
        return _timestamp
    checks: list[MessageCheck] = []

    def check(message: Any, parent: str) -> None:
        for field_check in checks:
            field_check(message, parent)

    # Registered before its fields are compiled, so a recursive type finds itself.
    _MESSAGE_CHECKS[descriptor.full_name] = check
    checks.extend(_field_check(field) for field in descriptor.fields)
    return check


class BoundsGuard(CallGuard):
    """Refuses requests with a field out of its bounds; streamed requests, message by message."""

    def prepare(self, rpc: RpcMethod) -> Check | None:
        """The bounds check of one method's requests; None when it has no contract."""
        if rpc.descriptor is None or rpc.request_streaming:
            return None
        check = message_check(rpc.descriptor.input_type)

        def validate(request: Any, _context: grpc.aio.ServicerContext) -> None:
            check(request, "")

        return validate
