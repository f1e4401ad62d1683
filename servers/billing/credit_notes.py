"""Credit notes of a finalized invoice: preview, issue (signed, numbered), void.

Each mutation is one transaction that locks the invoice row (concurrent credits
on one invoice serialize), checks the invariants against what the store holds,
writes the document, its ledger entry and its idempotency key together.
Invariants (zero slack): non-void credit notes never exceed the invoice, nor
any of its lines (subtotal and tax apart); every document's subtotal + tax = total.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument, NotFound
from core.times import rfc3339
from servers.billing import idempotency, metrics, records, store
from servers.billing.balances import (
    InvoiceBalance,
    balance_of,
    locked_balance,
    require_finalized,
    same_currency,
)
from servers.billing.credits import CreditPart, CreditRefused, credit_amount, credit_lines
from servers.billing.invoices import Billing
from servers.billing.rollout import require_billing
from servers.billing.store import CreditNoteLineRow, CreditNoteRow, InvoiceRow, invoice_of
from servers.billing.usage import series_of
from servers.db import Database


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
        "issued_at": rfc3339(note.created_at),
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
        invoice = require_finalized(await invoice_of(session, request.invoice_id))
        same_currency(request.currency, invoice, "amount.currency_code")
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
        balance = await locked_balance(session, tenant, request.invoice_id)
        invoice = balance.invoice
        same_currency(request.currency, invoice, "amount.currency_code")
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
    note = await store.credit_note_row(session, note_id)
    if note is None:
        raise NotFound(f"no credit note {note_id}")
    lines = await store.credit_note_lines(session, note_id)
    refunded = await store.refunded_on_note(session, note_id)
    return IssuedCreditNote(note, lines, refunded)


async def credit_notes_of(session: AsyncSession, invoice_id: uuid.UUID) -> list[IssuedCreditNote]:
    """The invoice's credit notes, oldest first."""
    await invoice_of(session, invoice_id)
    ids = await store.credit_note_ids(session, invoice_id)
    return [await credit_note_of(session, note_id) for note_id in ids]


async def list_credit_notes(
    database: Database, tenant: uuid.UUID, invoice_id: uuid.UUID
) -> list[IssuedCreditNote]:
    """The invoice's credit notes, oldest first.

    Raises:
        NotFound: No such invoice.
    """
    async with database.tenant_session(tenant, readonly=True) as session:
        return await credit_notes_of(session, invoice_id)


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
