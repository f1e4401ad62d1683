"""After an invoice is final: credit notes (preview, issue, void), payments and refunds.

Each mutation is one transaction that locks the invoice row (concurrent credits
on one invoice serialize), checks the invariants against what the store holds,
writes the document, its ledger entry and its idempotency key together.
Invariants (zero slack): non-void credit notes never exceed the invoice, nor
any of its lines (subtotal and tax apart); refunds never exceed what was paid,
nor the credit note they pay out; payments never exceed what is due; every
document's subtotal + tax = total.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument, NotFound
from servers.billing import idempotency, metrics, records
from servers.billing.credits import (
    CreditPart,
    CreditRefused,
    LineBalance,
    credit_amount,
    credit_lines,
)
from servers.billing.documents import timestamp
from servers.billing.invoices import Billing, invoice_of
from servers.billing.rollout import check_stage, require_billing, stage_query
from servers.billing.store import (
    CreditNoteLineRow,
    CreditNoteRow,
    InvoiceLineRow,
    InvoiceRow,
    PaymentRow,
    RefundRow,
)
from servers.billing.usage import series_of

#: A document an idempotency key replays.
_Row = TypeVar("_Row", PaymentRow, RefundRow)


@dataclass
class InvoiceBalance:
    """A finalized invoice and what happened to it since."""

    invoice: InvoiceRow
    lines: list[InvoiceLineRow]
    balances: list[LineBalance]
    credited: int
    paid: int
    refunded: int

    @property
    def due(self) -> int:
        """What the tenant still owes on it (negative: overpaid, a refund is due)."""
        return self.invoice.total - self.credited - (self.paid - self.refunded)


@dataclass(frozen=True)
class CreditRequest:
    """A credit note asked for: by line (subtotals) or by amount (tax included)."""

    invoice_id: uuid.UUID
    lines: tuple[tuple[str, int], ...] = ()
    amount: int = 0
    currency: str = ""
    reason: str = "other"
    memo: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """What the request asks for, for idempotency keys."""
        return {
            "invoice_id": str(self.invoice_id),
            "lines": [list(line) for line in self.lines],
            "amount": self.amount,
            "currency": self.currency,
            "reason": self.reason,
            "memo": self.memo,
        }


@dataclass
class IssuedCreditNote:
    """A credit note, its lines and what was refunded against it."""

    note: CreditNoteRow
    lines: list[CreditNoteLineRow] = field(default_factory=list)
    refunded: int = 0


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


async def _balance(
    session: AsyncSession, invoice: InvoiceRow, paid: int, refunded: int
) -> InvoiceBalance:
    """The invoice's lines with what its issued credit notes took (one query)."""
    rows = (await session.execute(_LINES, {"invoice_id": invoice.id})).all()
    lines = [line for line, _, _ in rows]
    balances = [
        LineBalance(str(line.id), line.subtotal, line.tax, int(subtotal), int(tax))
        for line, subtotal, tax in rows
    ]
    credited_total = sum(b.credited_subtotal + b.credited_tax for b in balances)
    return InvoiceBalance(invoice, lines, balances, credited_total, paid, refunded)


async def balance_of(session: AsyncSession, invoice: InvoiceRow) -> InvoiceBalance:
    """The invoice's lines with what issued credit notes took, and its payments and refunds."""
    paid, refunded = (await session.execute(_PAID_AND_REFUNDED, {"invoice_id": invoice.id})).one()
    return await _balance(session, invoice, int(paid), int(refunded))


async def _locked_balance(
    session: AsyncSession, tenant: uuid.UUID, invoice_id: uuid.UUID
) -> InvoiceBalance:
    """The finalized invoice, locked for this transaction, and its balance.

    One query locks the invoice and reads the tenant's billing stage and the
    invoice's payments and refunds; one more reads its lines and credits.

    Raises:
        FailedPrecondition: Billing frozen for the tenant, or the invoice not finalized.
        NotFound: No such invoice.
    """
    found = (
        await session.execute(_LOCKED_INVOICE, {"tenant": tenant, "invoice_id": invoice_id})
    ).one_or_none()
    if found is None:
        await require_billing(session, tenant)  # frozen tenants learn that first
        raise NotFound(f"no invoice {invoice_id}")
    invoice, stage, paid, refunded = found
    check_stage(stage)
    return await _balance(session, _require_finalized(invoice), int(paid), int(refunded))


def _require_finalized(invoice: InvoiceRow) -> InvoiceRow:
    if invoice.status != "finalized":
        raise FailedPrecondition(
            f"invoice {invoice.id} is {invoice.status.replace('_', ' ')}, not finalized",
            reason=ErrorReason.ERROR_REASON_INVOICE_STATE,
            metadata={"status": invoice.status},
        )
    return invoice


def _same_currency(currency: str, invoice: InvoiceRow, field_name: str) -> None:
    if currency and currency != invoice.currency:
        raise InvalidArgument(
            f"amounts must be in the invoice's currency, {invoice.currency}", field=field_name
        )


def _parts(balance: InvoiceBalance, request: CreditRequest) -> list[CreditPart]:
    try:
        if request.lines:
            return credit_lines({b.line_id: b for b in balance.balances}, request.lines)
        return credit_amount(balance.balances, request.amount)
    except CreditRefused as refused:
        if refused.reason == "exceeds":
            raise FailedPrecondition(
                str(refused),
                reason=ErrorReason.ERROR_REASON_CREDIT_EXCEEDS_INVOICE,
                metadata={"invoice_line_id": refused.line} if refused.line else {},
            ) from None
        raise InvalidArgument(
            str(refused), field="lines" if request.lines else "amount.minor_units"
        ) from None


def credit_note_document(
    note: CreditNoteRow, invoice: InvoiceRow, lines: list[CreditNoteLineRow]
) -> dict[str, Any]:
    """What a credit note's signature covers."""
    return {
        "type": "credit_note",
        "id": str(note.id),
        "tenant_id": str(note.tenant_id),
        "series": note.series,
        "number": note.number,
        "invoice_id": str(invoice.id),
        "invoice_number": invoice.number,
        "reason": note.reason,
        "memo": note.memo,
        "currency": note.currency,
        "subtotal": note.subtotal,
        "tax": note.tax,
        "total": note.total,
        "issued_at": timestamp(note.created_at),
        "lines": [
            {
                "id": str(line.id),
                "invoice_line_id": str(line.invoice_line_id),
                "subtotal": line.subtotal,
                "tax": line.tax,
                "total": line.total,
            }
            for line in lines
        ],
    }


def _draft_note(
    tenant: uuid.UUID,
    invoice: InvoiceRow,
    request: CreditRequest,
    parts: list[CreditPart],
    note_id: uuid.UUID | None = None,
) -> IssuedCreditNote:
    note = CreditNoteRow(
        id=note_id or uuid.uuid4(),
        tenant_id=tenant,
        invoice_id=invoice.id,
        series="",
        number="",
        status="issued",
        reason=request.reason,
        memo=request.memo,
        currency=invoice.currency,
        subtotal=sum(part.subtotal for part in parts),
        tax=sum(part.tax for part in parts),
        total=sum(part.total for part in parts),
        signature="",
        signing_key_id="",
        signed_payload="",
    )
    lines = [
        CreditNoteLineRow(
            id=uuid.uuid4(),
            tenant_id=tenant,
            credit_note_id=note.id,
            invoice_line_id=uuid.UUID(part.line_id),
            subtotal=part.subtotal,
            tax=part.tax,
            total=part.total,
        )
        for part in parts
    ]
    return IssuedCreditNote(note, lines)


async def preview_credit_note(
    billing: Billing, tenant: uuid.UUID, request: CreditRequest
) -> IssuedCreditNote:
    """The credit note as it would be issued now (nothing is written)."""
    async with billing.database.tenant_session(tenant, readonly=True) as session:
        invoice = _require_finalized(await invoice_of(session, request.invoice_id))
        _same_currency(request.currency, invoice, "amount.currency_code")
        balance = await balance_of(session, invoice)
        preview = _draft_note(tenant, invoice, request, _parts(balance, request))
        preview.note.created_at = billing.clock()
        return preview


async def create_credit_note(
    billing: Billing, tenant: uuid.UUID, request: CreditRequest, key: str = ""
) -> IssuedCreditNote:
    """Issue a signed, numbered credit note.

    Raises:
        NotFound: No such invoice.
        FailedPrecondition: Not finalized, billing frozen, or it would credit too much.
        InvalidArgument: Bad lines or amount, another currency, a reused key.
    """
    note_id = uuid.uuid4()
    async with billing.database.tenant_session(tenant) as session:
        now = billing.clock()
        if key:
            earlier = await idempotency.claim(
                session, tenant, "create_credit_note", key, request.fingerprint(), now, note_id
            )
            if earlier is not None:
                return await credit_note_of(session, earlier)
        balance = await _locked_balance(session, tenant, request.invoice_id)
        invoice = balance.invoice
        _same_currency(request.currency, invoice, "amount.currency_code")
        issued = _draft_note(tenant, invoice, request, _parts(balance, request), note_id)
        note = issued.note
        note.series = series_of("CN", now)
        note.number = await records.next_number(session, tenant, note.series)
        note.created_at = now
        document = credit_note_document(note, invoice, issued.lines)
        signed = await billing.signer.sign(session, document)
        note.signed_payload, note.signature, note.signing_key_id = (
            signed.payload,
            signed.signature,
            signed.key_id,
        )
        session.add(note)
        await session.flush()  # no ORM relationship orders the lines after their note
        session.add_all(issued.lines)
        records.ledger(
            session, tenant, "credit", -note.total, note.currency, invoice.id, str(note.id), now
        )
        await session.flush()
        metrics.CREDIT_NOTES.inc()
        return issued


async def credit_note_of(session: AsyncSession, note_id: uuid.UUID) -> IssuedCreditNote:
    """A credit note of the tenant, with its lines and refunds.

    Raises:
        NotFound: No such credit note.
    """
    note = (
        await session.execute(select(CreditNoteRow).where(CreditNoteRow.id == note_id))
    ).scalar_one_or_none()
    if note is None:
        raise NotFound(f"no credit note {note_id}")
    lines = list(
        (
            await session.execute(
                select(CreditNoteLineRow).where(CreditNoteLineRow.credit_note_id == note_id)
            )
        ).scalars()
    )
    refunded = await session.scalar(
        select(func.coalesce(func.sum(RefundRow.amount), 0)).where(
            RefundRow.credit_note_id == note_id
        )
    )
    return IssuedCreditNote(note, lines, int(refunded or 0))


async def credit_notes_of(session: AsyncSession, invoice_id: uuid.UUID) -> list[IssuedCreditNote]:
    """The invoice's credit notes, oldest first."""
    await invoice_of(session, invoice_id)
    ids = (
        await session.execute(
            select(CreditNoteRow.id)
            .where(CreditNoteRow.invoice_id == invoice_id)
            .order_by(CreditNoteRow.created_at, CreditNoteRow.number)
        )
    ).scalars()
    return [await credit_note_of(session, note_id) for note_id in ids]


async def void_credit_note(
    billing: Billing, tenant: uuid.UUID, note_id: uuid.UUID, key: str = ""
) -> IssuedCreditNote:
    """Void an issued credit note that nothing was refunded against.

    Raises:
        NotFound: No such credit note.
        FailedPrecondition: Already void, refunded against, or billing frozen.
    """
    async with billing.database.tenant_session(tenant) as session:
        await require_billing(session, tenant)
        now = billing.clock()
        if key:
            earlier = await idempotency.claim(
                session, tenant, "void_credit_note", key, {"id": str(note_id)}, now, note_id
            )
            if earlier is not None:
                return await credit_note_of(session, earlier)
        issued = await credit_note_of(session, note_id)
        await invoice_of(session, issued.note.invoice_id, lock=True)
        note = issued.note
        if note.status != "issued" or issued.refunded:
            raise FailedPrecondition(
                "the credit note is already void"
                if note.status != "issued"
                else "refunds were paid out against this credit note: it cannot be voided",
                reason=ErrorReason.ERROR_REASON_CREDIT_NOTE_STATE,
                metadata={"status": note.status, "refunded": str(issued.refunded)},
            )
        note.status, note.voided_at = "void", now
        records.ledger(
            session, tenant, "void", note.total, note.currency, note.invoice_id, str(note.id), now
        )
        await session.flush()
        return issued


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
    found = await session.get(model, earlier)
    assert found is not None
    return found


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
        balance = await _locked_balance(session, tenant, invoice_id)
        invoice = balance.invoice
        _same_currency(currency, invoice, "amount.currency_code")
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
        balance = await _locked_balance(session, tenant, invoice_id)
        invoice = balance.invoice
        _same_currency(currency, invoice, "amount.currency_code")
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
