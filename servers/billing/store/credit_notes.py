"""Queries of credit notes, and of the payments and refunds idempotency keys replay."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing.store.tables import CreditNoteLineRow, CreditNoteRow, PaymentRow, RefundRow

#: A document an idempotency key replays.
_Row = TypeVar("_Row", PaymentRow, RefundRow)


async def credit_note_row(session: AsyncSession, note_id: uuid.UUID) -> CreditNoteRow | None:
    """The tenant's credit note `note_id`, if any."""
    return (
        await session.execute(select(CreditNoteRow).where(CreditNoteRow.id == note_id))
    ).scalar_one_or_none()


async def credit_note_lines(session: AsyncSession, note_id: uuid.UUID) -> list[CreditNoteLineRow]:
    """The credit note's lines."""
    return list(
        (
            await session.execute(
                select(CreditNoteLineRow).where(CreditNoteLineRow.credit_note_id == note_id)
            )
        ).scalars()
    )


async def refunded_on_note(session: AsyncSession, note_id: uuid.UUID) -> int:
    """What refunds paid out against the credit note."""
    refunded = await session.scalar(
        select(func.coalesce(func.sum(RefundRow.amount), 0)).where(
            RefundRow.credit_note_id == note_id
        )
    )
    return int(refunded or 0)


async def credit_note_ids(session: AsyncSession, invoice_id: uuid.UUID) -> list[uuid.UUID]:
    """The invoice's credit notes' ids, oldest first."""
    return list(
        (
            await session.execute(
                select(CreditNoteRow.id)
                .where(CreditNoteRow.invoice_id == invoice_id)
                .order_by(CreditNoteRow.created_at, CreditNoteRow.number)
            )
        ).scalars()
    )


async def document_of(session: AsyncSession, model: type[_Row], document_id: uuid.UUID) -> _Row:
    """A payment or refund that exists (an idempotency key named it)."""
    found = await session.get(model, document_id)
    assert found is not None
    return found
