"""Keyset pagination behind `intelgraph.common.v1.PageRequest` / `PageResponse`.

A page token is the position after the last item served plus a fingerprint of
the query (its filters). The position is written and read by the list's
`Keyset`, one codec per ordering column, so every list decodes its tokens the
same way: a token presented with other filters, one that is not ours at all,
or one whose position does not decode to the list's columns (a forged or
damaged token) is refused with INVALID_ARGUMENT (INVALID_PAGE_TOKEN). Tokens
carry no tenant: every query is tenant-confined anyway.

>>> page = Page.from_request(0, "", filters={"status": "pending"}, keyset=TIME_AND_ID)
>>> page.size, page.after
(50, None)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import ErrorReason, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("not a timestamp")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a timestamp without its zone")
    return moment.astimezone(UTC)  # OverflowError at the ends of the calendar


def _identifier(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError("not an id")
    return uuid.UUID(value)


def _sequence_number(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError("not a sequence number")
    return value


@dataclass(frozen=True)
class Codec:
    """How one ordering column is written into a token, and read back (raising if it cannot)."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 256:
        raise ValueError("not a name")
    return value


INSTANT = Codec(lambda moment: moment.isoformat(), _instant)
IDENTIFIER = Codec(str, _identifier)
SEQUENCE_NUMBER = Codec(int, _sequence_number)
TEXT = Codec(str, _text)


@dataclass(frozen=True)
class Keyset:
    """The columns a list is ordered by, as its page tokens carry them."""

    columns: tuple[Codec, ...]

    def encode(self, position: Sequence[Any]) -> list[Any]:
        """A row's position as JSON values."""
        return [codec.encode(value) for codec, value in zip(self.columns, position, strict=True)]

    def decode(self, raw: Any) -> tuple[Any, ...]:
        """The position a token carries.

        Raises:
            ValueError: It is not one this keyset wrote.
        """
        if not isinstance(raw, list) or len(raw) != len(self.columns):
            raise ValueError("a position of another shape")
        try:
            return tuple(
                codec.decode(value) for codec, value in zip(self.columns, raw, strict=True)
            )
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(str(error)) from None


#: Lists ordered by a timestamp, ties broken by id (newest first, or oldest first).
TIME_AND_ID = Keyset((INSTANT, IDENTIFIER))
#: Lists ordered by a sequence number.
SEQUENCE = Keyset((SEQUENCE_NUMBER,))
#: Lists ordered by a timestamp, ties broken by a text key (newest first, or oldest first).
TIME_AND_KEY = Keyset((INSTANT, TEXT))
#: Lists ordered by a unique name.
NAME = Keyset((TEXT,))


def _fingerprint(filters: Mapping[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _refuse(message: str) -> InvalidArgument:
    return InvalidArgument(
        message, field="page.page_token", reason=ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN
    )


@dataclass(frozen=True)
class Page:
    """One requested page: how many items, after which position (decoded)."""

    size: int
    after: tuple[Any, ...] | None
    fingerprint: str
    keyset: Keyset

    @classmethod
    def of(cls, request: Any, keyset: Keyset, **filters: Any) -> Page:
        """The page a list request asks for (its `page` field, a PageRequest).

        Raises:
            InvalidArgument: As `from_request`.
        """
        return cls.from_request(
            request.page.page_size, request.page.page_token, filters=filters, keyset=keyset
        )

    @classmethod
    def from_request(
        cls, page_size: int, page_token: str, *, filters: Mapping[str, Any], keyset: Keyset
    ) -> Page:
        """Read a PageRequest's fields.

        Raises:
            InvalidArgument: A negative size, or a token not issued for these filters
                or whose position is not one of this list.
        """
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page.page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        fingerprint = _fingerprint(filters)
        if not page_token:
            return cls(size, None, fingerprint, keyset)
        try:
            decoded = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        except (ValueError, binascii.Error):
            raise _refuse("page_token is not one this API issued") from None
        if not isinstance(decoded, dict) or decoded.get("q") != fingerprint:
            raise _refuse("page_token belongs to another query")
        try:
            after = keyset.decode(decoded.get("after"))
        except ValueError:
            raise _refuse("page_token is not one this API issued") from None
        return cls(size, after, fingerprint, keyset)

    def next_token(self, items: Sequence[Any], position: Callable[[Any], Sequence[Any]]) -> str:
        """The token after `items` (fetched as size + 1 rows), or "" on the last page.

        Args:
            items: The rows fetched; one more than `size` means there is a next page.
            position: Maps a row to its values of the keyset's columns.
        """
        if len(items) <= self.size:
            return ""
        payload = {
            "q": self.fingerprint,
            "after": self.keyset.encode(position(items[self.size - 1])),
        }
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
