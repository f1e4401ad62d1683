"""What the generated client methods do with requests: build them, key them, page them.

>>> from google.protobuf.struct_pb2 import ListValue, Value
>>> build(Value, None, {"string_value": "x", "number_value": None}).string_value
'x'
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message

MessageT = TypeVar("MessageT", bound=Message)
ResponseT = TypeVar("ResponseT")


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


KeyedT = TypeVar("KeyedT", bound=Message)


def keyed(message: KeyedT) -> KeyedT:
    """`message` with an idempotency key: its own, or a fresh UUID on a copy.

    Every attempt of a retried call then carries the same key, so the platform
    applies the call once however many attempts reach it.
    """
    if getattr(message, "idempotency_key", ""):
        return message
    copy = type(message)()
    copy.CopyFrom(message)
    copy.idempotency_key = uuid.uuid4().hex  # type: ignore[attr-defined]
    return copy


PagedT = TypeVar("PagedT", bound=Message)


def _first_page(message: PagedT, page_size: int | None) -> PagedT:
    copy = type(message)()
    copy.CopyFrom(message)
    if page_size is not None:
        copy.page.page_size = page_size  # type: ignore[attr-defined]
    return copy


def pages(
    call: Callable[..., ResponseT], message: PagedT, page_size: int | None, timeout: float | None
) -> Iterator[ResponseT]:
    """Every page of a List RPC from `message` on, following `page.next_page_token`."""
    message = _first_page(message, page_size)
    while True:
        response = call(message, timeout=timeout)
        yield response
        token: str = response.page.next_page_token  # type: ignore[attr-defined]
        if not token:
            return
        message.page.page_token = token  # type: ignore[attr-defined]


async def async_pages(
    call: Callable[..., Awaitable[ResponseT]],
    message: PagedT,
    page_size: int | None,
    timeout: float | None,
) -> AsyncIterator[ResponseT]:
    """`pages` for the async clients."""
    message = _first_page(message, page_size)
    while True:
        response = await call(message, timeout=timeout)
        yield response
        token: str = response.page.next_page_token  # type: ignore[attr-defined]
        if not token:
            return
        message.page.page_token = token  # type: ignore[attr-defined]
