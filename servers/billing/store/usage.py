"""Queries of usage events, drafts and their lines, spend caps and alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing.store.tables import (
    AlertRow,
    InvoiceLineRow,
    InvoiceRow,
    SpendCapRow,
    UsageEventRow,
)
from servers.db import after_position, insert


async def usage_event(
    session: AsyncSession, tenant: uuid.UUID, event_id: str, *, fresh: bool = False
) -> UsageEventRow | None:
    """The tenant's usage event `event_id` (`fresh`: reread from the store), if any."""
    if fresh:
        return await session.get(UsageEventRow, (tenant, event_id), populate_existing=True)
    return await session.get(UsageEventRow, (tenant, event_id))


async def insert_usage_event(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a usage event; False when its id was recorded (concurrently) before."""
    inserted = await session.execute(
        insert(session, UsageEventRow)
        .on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
        .returning(UsageEventRow.event_id),
        values,
    )
    return inserted.first() is not None


async def spend_cap_of(
    session: AsyncSession, tenant: uuid.UUID, *, lock: bool = False
) -> SpendCapRow | None:
    """The tenant's spend cap (locked for this transaction with `lock`), if any."""
    if lock:
        return await session.get(SpendCapRow, tenant, with_for_update=True)
    return await session.get(SpendCapRow, tenant)


def current(now: datetime) -> Any:
    """The condition of the draft that takes usage at `now` (past months' drafts do not)."""
    return (InvoiceRow.status == "draft") & (InvoiceRow.period_end > now)


async def open_draft(session: AsyncSession, now: datetime) -> InvoiceRow | None:
    """The draft taking usage at `now`, locked, if any."""
    return (
        await session.execute(
            select(InvoiceRow)
            .where(current(now))
            .order_by(InvoiceRow.period_start.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def closed_until(session: AsyncSession, start: datetime, end: datetime) -> datetime | None:
    """Where the last invoice closed before the end of [start, end) ended, if any."""
    closed: datetime | None = await session.scalar(
        select(func.max(InvoiceRow.period_end)).where(
            InvoiceRow.period_start >= start, InvoiceRow.period_end < end
        )
    )
    return closed


async def insert_draft(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert a draft invoice (nothing when its period's draft exists)."""
    await session.execute(
        insert(session, InvoiceRow).on_conflict_do_nothing(
            index_elements=["tenant_id", "period_start"]
        ),
        values,
    )


def _line_query(invoice_id: uuid.UUID, meter: str) -> Any:
    return (
        select(InvoiceLineRow)
        .where(InvoiceLineRow.invoice_id == invoice_id, InvoiceLineRow.meter == meter)
        .with_for_update()
    )


async def draft_line(
    session: AsyncSession, invoice_id: uuid.UUID, meter: str
) -> InvoiceLineRow | None:
    """The draft's line for `meter`, locked, if any."""
    found: InvoiceLineRow | None = (
        await session.execute(_line_query(invoice_id, meter))
    ).scalar_one_or_none()
    return found


async def insert_line(session: AsyncSession, values: dict[str, Any]) -> InvoiceLineRow:
    """Insert a draft's line at the next position (unless it exists); the line, locked."""
    position = await session.scalar(
        select(func.count())
        .select_from(InvoiceLineRow)
        .where(InvoiceLineRow.invoice_id == values["invoice_id"])
    )
    await session.execute(
        insert(session, InvoiceLineRow).on_conflict_do_nothing(
            index_elements=["invoice_id", "meter"]
        ),
        {**values, "position": int(position or 0)},
    )
    line: InvoiceLineRow = (
        await session.execute(_line_query(values["invoice_id"], values["meter"]))
    ).scalar_one()
    return line


async def spent(session: AsyncSession, now: datetime) -> int:
    """What the current period's draft has rated so far (0 without one)."""
    draft = await session.scalar(
        select(InvoiceRow.subtotal).where(
            InvoiceRow.status == "draft",
            InvoiceRow.period_start <= now,
            InvoiceRow.period_end > now,
        )
    )
    return int(draft or 0)


async def alerts_page(
    session: AsyncSession, kind: str, after: tuple[Any, ...] | None, limit: int
) -> list[AlertRow]:
    """Up to `limit` alerts (of `kind`, if any), newest first, after a keyset."""
    query = select(AlertRow)
    if kind:
        query = query.where(AlertRow.kind == kind)
    query = after_position(query, (AlertRow.raised_at, AlertRow.id), after, limit)
    return list((await session.execute(query)).scalars())
