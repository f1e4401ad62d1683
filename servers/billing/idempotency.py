"""Idempotency keys: the first request with a key creates, every repeat gets the same result.

The key's row is inserted first, in the mutation's own transaction, under a
unique key (tenant, operation, key), naming the id the mutation will give what
it creates. A concurrent request with the same key
blocks on that insert until the first commits (then finds its row) or rolls
back (then proceeds itself): exactly one document, serialized by the store's
unique index rather than a lock in Python.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorReason, InvalidArgument, quoted
from servers.billing import store
from servers.billing.documents import canonical


def fingerprint(request: Mapping[str, Any]) -> str:
    """A hash of what the request asks for (its key excluded)."""
    return hashlib.sha256(canonical(request).encode()).hexdigest()


async def claim(  # noqa: PLR0917 - a key's identity, its request and its result
    session: AsyncSession,
    tenant: uuid.UUID,
    operation: str,
    key: str,
    request: Mapping[str, Any],
    at: datetime,
    resource_id: uuid.UUID,
) -> uuid.UUID | None:
    """None when this request is the key's first (go on: create `resource_id`).

    Otherwise the id of what the key's first request created.

    Raises:
        InvalidArgument: The key was used before with a different request.
    """
    request_hash = fingerprint(request)
    inserted = await store.insert_idempotency_key(
        session,
        {
            "tenant_id": tenant,
            "operation": operation,
            "key": key,
            "request_hash": request_hash,
            "resource_id": resource_id,
            "created_at": at,
        },
    )
    if inserted:
        return None
    earlier_hash, resource = await store.idempotency_key(session, operation, key)
    if earlier_hash != request_hash:
        raise InvalidArgument(
            f"idempotency key {quoted(key)} was used with a different {operation} request",
            field="idempotency_key",
            reason=ErrorReason.ERROR_REASON_IDEMPOTENCY_KEY_REUSED,
        )
    return resource
