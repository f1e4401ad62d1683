"""Keyset pagination behind `intelgraph.common.v1.PageRequest` / `PageResponse`.

A page token is the position after the last item served plus a fingerprint of
the query (its filters); a token presented with other filters, or one that is
not ours at all, is refused with INVALID_ARGUMENT (INVALID_PAGE_TOKEN).
Tokens carry no tenant: every query is tenant-confined anyway.

>>> page = Page.from_request(0, "", filters={"status": "pending"})
>>> page.size, page.after
(50, None)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servers.errors import ErrorReason, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def _fingerprint(filters: Mapping[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _refuse(message: str) -> InvalidArgument:
    return InvalidArgument(
        message, field="page.page_token", reason=ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN
    )


@dataclass(frozen=True)
class Page:
    """One requested page: how many items, after which position."""

    size: int
    after: list[Any] | None
    fingerprint: str

    @classmethod
    def from_request(cls, page_size: int, page_token: str, *, filters: Mapping[str, Any]) -> Page:
        """Read a PageRequest's fields.

        Raises:
            InvalidArgument: A negative size, or a token not issued for these filters.
        """
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative", field="page.page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        fingerprint = _fingerprint(filters)
        if not page_token:
            return cls(size, None, fingerprint)
        try:
            decoded = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        except (ValueError, binascii.Error):
            raise _refuse("page_token is not one this API issued") from None
        if not isinstance(decoded, dict) or decoded.get("q") != fingerprint:
            raise _refuse("page_token belongs to another query")
        after = decoded.get("after")
        if not isinstance(after, list):
            raise _refuse("page_token is not one this API issued")
        return cls(size, after, fingerprint)

    def next_token(self, items: Sequence[Any], position: Any) -> str:
        """The token after `items` (fetched as size + 1 rows), or "" on the last page.

        Args:
            items: The rows fetched; one more than `size` means there is a next page.
            position: Maps a row to its JSON-ready keyset position.
        """
        if len(items) <= self.size:
            return ""
        payload = {"q": self.fingerprint, "after": position(items[self.size - 1])}
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
