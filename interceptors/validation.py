"""Contract-declared request validation: required fields and the bounds of every field.

Two guards run after authorization, so a caller who may not call an RPC
learns nothing about what its requests must contain:

* `RequiredFieldsGuard`: fields marked `(intelgraph.common.v1.required)`;
* `BoundsGuard`: every field of the request, and of every message in it,
  within its `(intelgraph.common.v1.bounds)` or the platform's defaults
  (`intelgraph/common/v1/field_behavior.proto` says which). Each message of a
  request stream is checked as it arrives (`interceptors.streams`).

(Bytes that are not a message of the request's type at all are refused before
either, by the outermost interceptor, which parses requests: that says nothing
about the RPC.)

Both refuse with INVALID_ARGUMENT naming the field's path; neither repeats
the value it refused. A message type's checks are worked out once from its
descriptor, so a request costs a few attribute reads per field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from intelgraph.common.v1 import field_behavior_pb2

from core.errors import InvalidArgument
from interceptors.base import CallGuard, Check, Context, RpcMethod

#: Defaults of fields that declare no bounds (field_behavior.proto documents them).
DEFAULT_MAX_STRING_CHARS = 256
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_ITEMS = 100
#: The range of `google.protobuf.Timestamp`: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
TIMESTAMP_MIN_S = -62_135_596_800
TIMESTAMP_MAX_S = 253_402_300_799

_TIMESTAMP = "google.protobuf.Timestamp"
#: Control characters no string may hold (C0 but tab, line feed, carriage return; DEL).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
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

#: Where in a value a bound is broken ("" for the value itself, else a path below it,
#: as "amount.minor_units" or "[3].id") and how.
Violation = tuple[str, str]
#: Finds the first broken bound in one value of a field (an item, for a repeated field).
ValueCheck = Callable[[Any], Violation | None]


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

        def validate(request: Any, _context: Context) -> None:
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


def _below(name: str, violation: Violation) -> Violation:
    """`violation`, found in the value of `name`, as seen from the value holding it."""
    rest, problem = violation
    if not rest:
        return name, problem
    return (f"{name}{rest}" if rest.startswith("[") else f"{name}.{rest}"), problem


def _text_check(bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    most = bounds.max_len or DEFAULT_MAX_STRING_CHARS
    too_long = ("", f"is longer than {most} characters")
    control = ("", "holds a control character (only tab, line feed and carriage return may)")

    def text(value: str) -> Violation | None:
        if len(value) > most:
            return too_long
        if _CONTROL.search(value) is not None:
            return control
        return None

    return text


def _bytes_check(bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    most = bounds.max_len or DEFAULT_MAX_BYTES
    too_long = ("", f"is longer than {most} bytes")

    def data(value: bytes) -> Violation | None:
        return too_long if len(value) > most else None

    return data


def _integer_check(bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    low = bounds.min if bounds.HasField("min") else None
    high = bounds.max if bounds.HasField("max") else None

    def integer(value: int) -> Violation | None:
        if low is not None and value < low:
            return "", f"must be at least {low}"
        if high is not None and value > high:
            return "", f"must be at most {high}"
        return None

    return integer


def _number_check(bounds: field_behavior_pb2.FieldBounds) -> ValueCheck:
    low = bounds.float_min if bounds.HasField("float_min") else -math.inf
    high = bounds.float_max if bounds.HasField("float_max") else math.inf

    def number(value: float) -> Violation | None:
        if not math.isfinite(value):
            return "", "must be a finite number"
        if value < low:
            return "", f"must be at least {low:g}"
        if value > high:
            return "", f"must be at most {high:g}"
        return None

    return number


def _enum_check(enum: EnumDescriptor) -> ValueCheck:
    defined = frozenset(value.number for value in enum.values)
    unknown = ("", f"is not a value of {enum.full_name}")

    def member(value: int) -> Violation | None:
        return None if value in defined else unknown

    return member


def _anything(_value: Any) -> Violation | None:
    """Booleans: every value is in bounds."""
    return None


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
    return _number_check(bounds) if kind in _FLOATS else _anything


def _timestamp(value: Any) -> Violation | None:
    if not TIMESTAMP_MIN_S <= value.seconds <= TIMESTAMP_MAX_S:
        return "", "lies outside 0001-01-01 .. 9999-12-31"
    if not 0 <= value.nanos <= 999_999_999:
        return "", "has nanos outside 0 .. 999999999"
    return None


def _map_check(name: str, bounds: field_behavior_pb2.FieldBounds, entry: Descriptor) -> ValueCheck:
    """A map field: at most `max_items` entries, each key and value within its own bounds."""
    most = bounds.max_items or DEFAULT_MAX_ITEMS
    check_key = _value_check(entry.fields_by_name["key"], bounds)
    check_value = _value_check(entry.fields_by_name["value"], bounds)

    def entries(message: Any) -> Violation | None:
        values = getattr(message, name)
        if len(values) > most:
            return name, f"has more than {most} entries"
        for key, value in values.items():
            found = check_key(key)
            if found is not None:
                return _below(f"{name}.key", found)
            found = check_value(value)
            if found is not None:
                return _below(f"{name}.value", found)
        return None

    return entries


def _field_check(field: FieldDescriptor) -> ValueCheck:
    """The check of `field` within its message (it is given the message)."""
    name = field.name
    bounds = field_bounds(field)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        return _map_check(name, bounds, entry)
    check = _value_check(field, bounds)
    if field.is_repeated:
        most = bounds.max_items or DEFAULT_MAX_ITEMS
        too_many = (name, f"has more than {most} items")

        def items(message: Any) -> Violation | None:
            values = getattr(message, name)
            if len(values) > most:
                return too_many
            for index, value in enumerate(values):
                found = check(value)
                if found is not None:
                    return _below(f"{name}[{index}]", found)
            return None

        return items
    if field.type == FieldDescriptor.TYPE_MESSAGE:

        def present(message: Any) -> Violation | None:
            if not message.HasField(name):
                return None
            found = check(getattr(message, name))
            return None if found is None else _below(name, found)

        return present

    def scalar(message: Any) -> Violation | None:
        found = check(getattr(message, name))
        return None if found is None else _below(name, found)

    return scalar


_MESSAGE_CHECKS: dict[str, ValueCheck] = {}


def message_check(descriptor: Descriptor) -> ValueCheck:
    """The check of every field of messages of type `descriptor` (built once per type)."""
    found = _MESSAGE_CHECKS.get(descriptor.full_name)
    if found is not None:
        return found
    if descriptor.full_name == _TIMESTAMP:
        _MESSAGE_CHECKS[_TIMESTAMP] = _timestamp
        return _timestamp
    checks: list[ValueCheck] = []

    def check(message: Any) -> Violation | None:
        for field_check in checks:
            violation = field_check(message)
            if violation is not None:
                return violation
        return None

    # Registered before its fields are compiled, so a recursive type finds itself.
    _MESSAGE_CHECKS[descriptor.full_name] = check
    checks.extend(_field_check(field) for field in descriptor.fields)
    return check


def within_bounds(descriptor: Descriptor) -> Callable[[Any], None]:
    """A function that refuses a message of type `descriptor` with a field out of bounds.

    Raises (from the function it returns):
        InvalidArgument: Naming the first field out of bounds (never its value).
    """
    check = message_check(descriptor)

    def refuse_out_of_bounds(message: Any) -> None:
        violation = check(message)
        if violation is not None:
            path, problem = violation
            raise InvalidArgument(f"{path} {problem}", field=path)

    return refuse_out_of_bounds


class BoundsGuard(CallGuard):
    """Refuses requests with a field out of its bounds; streamed requests, message by message."""

    def prepare(self, rpc: RpcMethod) -> Check | None:
        """The bounds check of one method's requests; None when it has no contract."""
        if rpc.descriptor is None or rpc.request_streaming:
            return None
        check = within_bounds(rpc.descriptor.input_type)

        def validate(request: Any, _context: Context) -> None:
            check(request)

        return validate
