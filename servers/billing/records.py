"""What every billing operation writes beside its documents: ledger entries, alerts, numbers.

All of it happens in the caller's transaction, so a document never exists
without its ledger entry, and a number is never used by a document that did not
commit (numbers are gapless).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing import metrics
from servers.billing.store import AlertRow, DocumentSeriesRow, LedgerEntryRow
from servers.db import insert

#: Digits of a document's sequence number ("INV-2026-000042").
NUMBER_DIGITS = 6


def ledger(  # noqa: PLR0917 - one ledger entry's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    kind: str,
    amount: int,
    currency: str,
    invoice_id: uuid.UUID,
    source_id: str,
    at: datetime,
) -> None:
    """Record a signed movement of what the tenant owes (nothing for zero)."""
    if amount:
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


async def alert(  # noqa: PLR0917 - one alert's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    kind: str,
    message: str,
    dedupe_key: str,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> bool:
    """Raise an alert once per `dedupe_key`; True when it is new."""
    inserted = await session.execute(
        insert(session, AlertRow)
        .on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
        .returning(AlertRow.id),
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant,
            "kind": kind,
            "message": message,
            "details": details or {},
            "dedupe_key": dedupe_key,
            "raised_at": at,
        },
    )
    new = inserted.first() is not None
    if new:
        metrics.ALERTS.labels(kind).inc()
    return new


async def next_number(session: AsyncSession, tenant: uuid.UUID, series: str) -> str:
    """The series' next number, taken in this transaction (the row lock serializes issuers)."""
    statement = insert(session, DocumentSeriesRow)
    taken = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "series"],
            set_={"next_number": DocumentSeriesRow.next_number + 1},
        ).returning(DocumentSeriesRow.next_number - 1),
        {"tenant_id": tenant, "series": series, "next_number": 2},
    )
    return f"{series}-{int(taken or 0):0{NUMBER_DIGITS}d}"
