"""Money moving on a finalized invoice: payments received, refunds paid back.

Each is one transaction that locks the invoice row, checks the invariants
against what the store holds, and writes the document, its ledger entry and its
idempotency key together. Invariants (zero slack): payments never exceed what
is due; refunds never exceed what was paid, nor the credit note they pay out.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument
from servers.billing import idempotency, records, store
from servers.billing.balances import locked_balance, same_currency
from servers.billing.credit_notes import credit_note_of
from servers.billing.invoices import Billing
from servers.billing.store import InvoiceRow, PaymentRow, RefundRow

#: A document an idempotency key replays.
_Row = TypeVar("_Row", PaymentRow, RefundRow)


async def _replayed(  # noqa: PLR0917 - a key's claim
    session: AsyncSession,
    tenant: uuid.UUID,
    model: type[_Row],
    operation: str,
    key: str,
    request: dict[str, Any],
    now: datetime,
    new_id: uuid.UUID,
) -> _Row | None:
    """What the key's first request made, or None when this request is the first (or keyless)."""
    if not key:
        return None
    earlier = await idempotency.claim(session, tenant, operation, key, request, now, new_id)
    if earlier is None:
        return None
    return await store.document_of(session, model, earlier)


async def record_payment(  # noqa: PLR0917 - one payment's facts
    billing: Billing,
    tenant: uuid.UUID,
    invoice_id: uuid.UUID,
    amount: int,
    currency: str,
    reference: str = "",
    key: str = "",
) -> PaymentRow:
    """Record money received against a finalized invoice.

    Raises:
        FailedPrecondition: Not finalized, billing frozen, or more than is due.
        InvalidArgument: Not positive, another currency, a reused key.
    """
    request = {"invoice_id": str(invoice_id), "amount": amount, "currency": currency}
    payment_id = uuid.uuid4()
    async with billing.database.tenant_session(tenant) as session:
        now = billing.clock()
        earlier = await _replayed(
            session, tenant, PaymentRow, "record_payment", key, request, now, payment_id
        )
        if earlier is not None:
            return earlier
        balance = await locked_balance(session, tenant, invoice_id)
        invoice = balance.invoice
        same_currency(currency, invoice, "amount.currency_code")
        if amount <= 0:
            raise InvalidArgument("the payment must be positive", field="amount.minor_units")
        if amount > balance.due:
            raise FailedPrecondition(
                f"{max(balance.due, 0)} is due on the invoice, not {amount}",
                reason=ErrorReason.ERROR_REASON_PAYMENT_EXCEEDS_DUE,
                metadata={"due": str(balance.due)},
            )
        payment = PaymentRow(
            id=payment_id,
            tenant_id=tenant,
            invoice_id=invoice.id,
            amount=amount,
            currency=invoice.currency,
            reference=reference,
            created_at=now,
        )
        session.add(payment)
        records.ledger(
            session, tenant, "payment", -amount, invoice.currency, invoice.id, str(payment.id), now
        )
        await session.flush()
        return payment


async def create_refund(  # noqa: PLR0917 - one refund's facts
    billing: Billing,
    tenant: uuid.UUID,
    invoice_id: uuid.UUID,
    amount: int,
    currency: str,
    credit_note_id: uuid.UUID | None = None,
    memo: str = "",
    key: str = "",
) -> RefundRow:
    """Pay money back on an invoice (optionally paying out a credit note).

    Raises:
        FailedPrecondition: Not finalized, billing frozen, more than was paid (or than
            the credit note holds), or a void credit note.
        InvalidArgument: Not positive, another currency, a reused key.
        NotFound: No such invoice or credit note.
    """
    request = {
        "invoice_id": str(invoice_id),
        "amount": amount,
        "currency": currency,
        "credit_note_id": str(credit_note_id or ""),
        "memo": memo,
    }
    refund_id = uuid.uuid4()
    async with billing.database.tenant_session(tenant) as session:
        now = billing.clock()
        earlier = await _replayed(
            session, tenant, RefundRow, "create_refund", key, request, now, refund_id
        )
        if earlier is not None:
            return earlier
        balance = await locked_balance(session, tenant, invoice_id)
        invoice = balance.invoice
        same_currency(currency, invoice, "amount.currency_code")
        if amount <= 0:
            raise InvalidArgument("the refund must be positive", field="amount.minor_units")
        if amount > balance.paid - balance.refunded:
            raise FailedPrecondition(
                f"{balance.paid - balance.refunded} was paid and not refunded, not {amount}",
                reason=ErrorReason.ERROR_REASON_REFUND_EXCEEDS_PAID,
                metadata={"refundable": str(balance.paid - balance.refunded)},
            )
        if credit_note_id is not None:
            await _check_credit_note_refund(session, invoice, credit_note_id, amount)
        refund = RefundRow(
            id=refund_id,
            tenant_id=tenant,
            invoice_id=invoice.id,
            credit_note_id=credit_note_id,
            amount=amount,
            currency=invoice.currency,
            memo=memo,
            created_at=now,
        )
        session.add(refund)
        records.ledger(
            session, tenant, "refund", amount, invoice.currency, invoice.id, str(refund.id), now
        )
        await session.flush()
        return refund


async def _check_credit_note_refund(
    session: AsyncSession, invoice: InvoiceRow, credit_note_id: uuid.UUID, amount: int
) -> None:
    issued = await credit_note_of(session, credit_note_id)
    if issued.note.invoice_id != invoice.id:
        raise InvalidArgument("the credit note belongs to another invoice", field="credit_note_id")
    if issued.note.status != "issued":
        raise FailedPrecondition(
            "the credit note is void",
            reason=ErrorReason.ERROR_REASON_CREDIT_NOTE_STATE,
            metadata={"status": issued.note.status},
        )
    if issued.refunded + amount > issued.note.total:
        raise FailedPrecondition(
            f"the credit note has {issued.note.total - issued.refunded} left to refund",
            reason=ErrorReason.ERROR_REASON_REFUND_EXCEEDS_PAID,
            metadata={"refundable": str(issued.note.total - issued.refunded)},
        )
