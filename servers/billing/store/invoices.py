"""Queries of invoices, their lines and their balances (payments, refunds, credits)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from servers.billing.store.rollout import stage_query
from servers.billing.store.tables import (
    CreditNoteLineRow,
    CreditNoteRow,
    InvoiceLineRow,
    InvoiceRow,
    PaymentRow,
    RefundRow,
)
from servers.db import after_position


async def invoice_of(
    session: AsyncSession, invoice_id: uuid.UUID, *, lock: bool = False
) -> InvoiceRow:
    """The tenant's invoice `invoice_id`.

    Raises:
        NotFound: No such invoice for this tenant.
    """
    query = select(InvoiceRow).where(InvoiceRow.id == invoice_id)
    if lock:
        query = query.with_for_update()
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no invoice {invoice_id}")
    return found


async def lines_of(session: AsyncSession, invoice_id: uuid.UUID) -> list[InvoiceLineRow]:
    """The invoice's lines, in order."""
    return list(
        (
            await session.execute(
                select(InvoiceLineRow)
                .where(InvoiceLineRow.invoice_id == invoice_id)
                .order_by(InvoiceLineRow.position)
            )
        ).scalars()
    )


async def invoices_page(
    session: AsyncSession, status: str, after: tuple[Any, ...] | None, limit: int
) -> list[InvoiceRow]:
    """Up to `limit` invoices (of `status`, if any), newest period first, after a keyset."""
    query = select(InvoiceRow)
    if status:
        query = query.where(InvoiceRow.status == status)
    query = after_position(query, (InvoiceRow.period_start, InvoiceRow.id), after, limit)
    return list((await session.execute(query)).scalars())


async def billed_invoice(session: AsyncSession) -> InvoiceRow | None:
    """One invoice that fixes the tenant's currency (not an empty draft), if any."""
    return (
        await session.execute(
            select(InvoiceRow)
            .where((InvoiceRow.status != "draft") | (InvoiceRow.subtotal != 0))
            .limit(1)
        )
    ).scalar_one_or_none()


async def drafts(session: AsyncSession) -> list[InvoiceRow]:
    """The tenant's draft invoices."""
    return list(
        (await session.execute(select(InvoiceRow).where(InvoiceRow.status == "draft"))).scalars()
    )


async def due_invoices(session: AsyncSession, now: datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant, invoice) of every tenant's invoice due for finalizing or a tax retry at `now`."""
    rows = (
        await session.execute(
            select(InvoiceRow.tenant_id, InvoiceRow.id)
            .where(
                or_(
                    and_(InvoiceRow.status == "draft", InvoiceRow.period_end <= now),
                    and_(
                        InvoiceRow.status == "tax_pending",
                        InvoiceRow.next_tax_attempt_at <= now,
                    ),
                )
            )
            .execution_options(all_tenants=True)
        )
    ).all()
    return [(tenant, invoice_id) for tenant, invoice_id in rows]


async def count_tax_pending(session: AsyncSession) -> int:
    """How many invoices of every tenant wait for the tax provider."""
    pending = await session.scalar(
        select(func.count())
        .select_from(InvoiceRow)
        .where(InvoiceRow.status == "tax_pending")
        .execution_options(all_tenants=True)
    )
    return int(pending or 0)


def _paid_and_refunded(invoice_id: Any) -> tuple[Any, Any]:
    """Scalar subqueries: what was paid on the invoice, and refunded."""
    return (
        select(func.coalesce(func.sum(PaymentRow.amount), 0))
        .where(PaymentRow.invoice_id == invoice_id)
        .scalar_subquery(),
        select(func.coalesce(func.sum(RefundRow.amount), 0))
        .where(RefundRow.invoice_id == invoice_id)
        .scalar_subquery(),
    )


def _lines_query() -> Select[InvoiceLineRow, Any, Any]:
    """An invoice's lines (:invoice_id) with what its issued credit notes took of each."""
    credited = (
        select(
            CreditNoteLineRow.invoice_line_id,
            func.sum(CreditNoteLineRow.subtotal).label("subtotal"),
            func.sum(CreditNoteLineRow.tax).label("tax"),
        )
        .join(CreditNoteRow, CreditNoteRow.id == CreditNoteLineRow.credit_note_id)
        .where(
            CreditNoteRow.invoice_id == bindparam("invoice_id"), CreditNoteRow.status == "issued"
        )
        .group_by(CreditNoteLineRow.invoice_line_id)
        .subquery()
    )
    return (
        select(
            InvoiceLineRow,
            func.coalesce(credited.c.subtotal, 0),
            func.coalesce(credited.c.tax, 0),
        )
        .outerjoin(credited, credited.c.invoice_line_id == InvoiceLineRow.id)
        .where(InvoiceLineRow.invoice_id == bindparam("invoice_id"))
        .order_by(InvoiceLineRow.position)
    )


# Built once: these run in every credit note, payment and refund.
_LINES = _lines_query()
_PAID_AND_REFUNDED = select(*_paid_and_refunded(bindparam("invoice_id")))
_LOCKED_INVOICE = (
    select(InvoiceRow, stage_query(bindparam("tenant")), *_paid_and_refunded(InvoiceRow.id))
    .where(InvoiceRow.id == bindparam("invoice_id"))
    .with_for_update(of=InvoiceRow)
)


async def credited_lines(
    session: AsyncSession, invoice_id: uuid.UUID
) -> list[tuple[InvoiceLineRow, int, int]]:
    """The invoice's lines with the subtotal and tax its issued credit notes took (one query)."""
    rows = (await session.execute(_LINES, {"invoice_id": invoice_id})).all()
    return [(line, int(subtotal), int(tax)) for line, subtotal, tax in rows]


async def paid_and_refunded(session: AsyncSession, invoice_id: uuid.UUID) -> tuple[int, int]:
    """What was paid on the invoice, and refunded."""
    paid, refunded = (await session.execute(_PAID_AND_REFUNDED, {"invoice_id": invoice_id})).one()
    return int(paid), int(refunded)


async def locked_invoice(
    session: AsyncSession, tenant: uuid.UUID, invoice_id: uuid.UUID
) -> tuple[InvoiceRow, str | None, int, int] | None:
    """The invoice locked for this transaction, the tenant's stage, what was paid and refunded.

    One query; None when there is no such invoice.
    """
    found = (
        await session.execute(_LOCKED_INVOICE, {"tenant": tenant, "invoice_id": invoice_id})
    ).one_or_none()
    if found is None:
        return None
    invoice, stage, paid, refunded = found
    return invoice, stage, int(paid), int(refunded)
