"""Request messages from keyword arguments: what every generated client method does first.

>>> from google.protobuf.struct_pb2 import ListValue, Value
>>> build(Value, None, {"string_value": "x", "number_value": None}).string_value
'x'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message

MessageT = TypeVar("MessageT", bound=Message)


def build(
    message_class: type[MessageT], request: MessageT | None, fields: Mapping[str, Any]
) -> MessageT:
    """`request` itself, or a `message_class` made of the fields given (None: not given).

    Raises:
        TypeError: Both a request and fields, or a request of another type.
    """
    given = {name: value for name, value in fields.items() if value is not None}
    if request is None:
        return message_class(**given)
    if given:
        raise TypeError(f"pass a {message_class.__name__} or its fields, not both")
    if not isinstance(request, message_class):
        raise TypeError(f"expected a {message_class.__name__}, got {type(request).__name__}")
    return request
