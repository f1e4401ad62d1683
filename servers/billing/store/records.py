"""Writes every billing operation makes beside its documents: ledger, alerts, numbers, keys.

Also the idempotency keys' rows and the public keys that signed documents.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing.store.tables import (
    AlertRow,
    DocumentSeriesRow,
    IdempotencyRow,
    LedgerEntryRow,
    SigningKeyRow,
)
from servers.db import insert


def add_ledger_entry(  # noqa: PLR0917 - one ledger entry's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    kind: str,
    amount: int,
    currency: str,
    invoice_id: uuid.UUID,
    source_id: str,
    at: datetime,
) -> None:
    """Add a ledger entry to the session."""
    session.add(
        LedgerEntryRow(
            tenant_id=tenant,
            kind=kind,
            amount=amount,
            currency=currency,
            invoice_id=invoice_id,
            source_id=source_id,
            recorded_at=at,
        )
    )


async def insert_alert(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert an alert unless its dedupe key was raised before; True when it is new."""
    inserted = await session.execute(
        insert(session, AlertRow)
        .on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
        .returning(AlertRow.id),
        values,
    )
    return inserted.first() is not None


async def take_number(session: AsyncSession, tenant: uuid.UUID, series: str) -> int:
    """The series' next number, taken in this transaction (the row lock serializes issuers)."""
    statement = insert(session, DocumentSeriesRow)
    taken = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "series"],
            set_={"next_number": DocumentSeriesRow.next_number + 1},
        ).returning(DocumentSeriesRow.next_number - 1),
        {"tenant_id": tenant, "series": series, "next_number": 2},
    )
    return int(taken or 0)


async def insert_idempotency_key(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a key's row; False when the key exists (after its first transaction ends)."""
    inserted = await session.execute(
        insert(session, IdempotencyRow)
        .on_conflict_do_nothing(index_elements=["tenant_id", "operation", "key"])
        .returning(IdempotencyRow.key),
        values,
    )
    return inserted.first() is not None


async def idempotency_key(session: AsyncSession, operation: str, key: str) -> tuple[str, uuid.UUID]:
    """(request hash, resource id) of the tenant's existing key."""
    earlier = (
        await session.execute(
            select(IdempotencyRow.request_hash, IdempotencyRow.resource_id).where(
                IdempotencyRow.operation == operation, IdempotencyRow.key == key
            )
        )
    ).one()
    resource: uuid.UUID = earlier.resource_id
    return earlier.request_hash, resource


async def record_signing_key(
    session: AsyncSession, kid: str, public_jwk: dict[str, str], at: datetime
) -> None:
    """Remember a public key that signed a document (once)."""
    await session.execute(
        insert(session, SigningKeyRow).on_conflict_do_nothing(index_elements=["kid"]),
        {"kid": kid, "public_jwk": public_jwk, "first_used_at": at},
    )


async def signing_keys(session: AsyncSession) -> list[SigningKeyRow]:
    """Every public key that ever signed a document."""
    return list((await session.execute(select(SigningKeyRow))).scalars())
