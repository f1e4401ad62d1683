"""Queries of the daily reconciliation: the day's sums, reports and their history."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing.store.tables import (
    CreditNoteRow,
    InvoiceLineRow,
    InvoiceRow,
    LedgerEntryRow,
    PaymentRow,
    ReconciliationRow,
    RefundRow,
    UsageEventRow,
)


async def one_snapshot(session: AsyncSession) -> None:
    """Make every later statement of the transaction read one snapshot (PostgreSQL).

    Reconciliation sums the ledger, the usage and the documents in separate
    statements; under READ COMMITTED each would see the writes committed before
    it, so usage recorded between two of them showed as drift. Must come before
    the transaction's first query. (SQLite's transactions read one snapshot already.)
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))


async def _sum(session: AsyncSession, column: object, *where: object) -> int:
    value = await session.scalar(select(func.coalesce(func.sum(column), 0)).where(*where))  # type: ignore[arg-type]
    return int(value or 0)


async def ledger_sums(session: AsyncSession, start: datetime, end: datetime) -> tuple[int, int]:
    """The ledger's entries booked in [start, end): all of them, and usage alone."""
    in_day = (LedgerEntryRow.recorded_at >= start, LedgerEntryRow.recorded_at < end)
    total = await _sum(session, LedgerEntryRow.amount, *in_day)
    usage = await _sum(session, LedgerEntryRow.amount, LedgerEntryRow.kind == "usage", *in_day)
    return total, usage


async def touched_lines(
    session: AsyncSession, start: datetime, end: datetime
) -> list[tuple[int, int, int, int]]:
    """Lines with usage recorded in [start, end).

    Each as (unit price, per quantity, quantity before start, quantity before end).
    """
    touched = (
        select(UsageEventRow.line_id)
        .where(UsageEventRow.recorded_at >= start, UsageEventRow.recorded_at < end)
        .distinct()
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            InvoiceLineRow.unit_price,
            InvoiceLineRow.per_quantity,
            func.sum(case((UsageEventRow.recorded_at < start, UsageEventRow.quantity), else_=0)),
            func.sum(UsageEventRow.quantity),
        )
        .join(InvoiceLineRow, InvoiceLineRow.id == UsageEventRow.line_id)
        .where(UsageEventRow.recorded_at < end, UsageEventRow.line_id.in_(touched))
        .group_by(InvoiceLineRow.id, InvoiceLineRow.unit_price, InvoiceLineRow.per_quantity)
    )
    return [
        (unit_price, per, int(before), int(through)) for unit_price, per, before, through in rows
    ]


async def documents_sum(session: AsyncSession, start: datetime, end: datetime) -> int:
    """What the documents issued (or voided) in [start, end) added to what is owed."""
    finalized = and_(
        InvoiceRow.status == "finalized",
        InvoiceRow.finalized_at >= start,
        InvoiceRow.finalized_at < end,
    )
    invoiced = await _sum(session, InvoiceRow.total, finalized)
    rated = await session.scalar(
        select(func.coalesce(func.sum(InvoiceLineRow.amount), 0))
        .join(InvoiceRow, InvoiceRow.id == InvoiceLineRow.invoice_id)
        .where(finalized)
    )
    issued = await _sum(
        session,
        CreditNoteRow.total,
        CreditNoteRow.created_at >= start,
        CreditNoteRow.created_at < end,
    )
    voided = await _sum(
        session,
        CreditNoteRow.total,
        CreditNoteRow.voided_at >= start,
        CreditNoteRow.voided_at < end,
    )
    paid = await _sum(
        session, PaymentRow.amount, PaymentRow.created_at >= start, PaymentRow.created_at < end
    )
    refunded = await _sum(
        session, RefundRow.amount, RefundRow.created_at >= start, RefundRow.created_at < end
    )
    return invoiced - int(rated or 0) - issued + voided - paid + refunded


async def report_of(session: AsyncSession, day: str) -> ReconciliationRow | None:
    """The tenant's stored report of `day` (ISO 8601), if any."""
    return (
        await session.execute(select(ReconciliationRow).where(ReconciliationRow.day == day))
    ).scalar_one_or_none()


async def billed_history(session: AsyncSession, first: str, before: str) -> list[int]:
    """The rated usage of the tenant's reconciled days in [first, before) (ISO 8601 days)."""
    return [
        int(value)
        for value in (
            await session.execute(
                select(ReconciliationRow.billed_total).where(
                    ReconciliationRow.day >= first, ReconciliationRow.day < before
                )
            )
        ).scalars()
    ]


async def active_tenants(session: AsyncSession, start: datetime, end: datetime) -> set[uuid.UUID]:
    """Every tenant with a ledger entry in [start, end)."""
    return set(
        (
            await session.execute(
                select(LedgerEntryRow.tenant_id)
                .where(LedgerEntryRow.recorded_at >= start, LedgerEntryRow.recorded_at < end)
                .distinct()
                .execution_options(all_tenants=True)
            )
        ).scalars()
    )
