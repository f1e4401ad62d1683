"""Invoices: draft → tax_pending → finalized (numbered, signed, immutable).

Finalizing takes three steps, so the tax provider is never called inside a
transaction: (1) the draft closes (status tax_pending, its period ends now,
the tenant's tax facts are copied onto it; new usage goes to a new draft);
(2) the provider taxes its lines; (3) the taxed lines, the number, the
signature and the ledger's tax entry are written in one transaction. When the
provider is unavailable (or refuses the jurisdiction) the invoice stays
tax_pending, an alert is raised and a background job retries with exponential
backoff: nothing is guessed, nothing is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.interfaces import Notifications
from core.times import rfc3339
from servers.billing import metrics, records, store
from servers.billing.documents import DocumentSigner
from servers.billing.pricing import profile_of
from servers.billing.rollout import require_billing
from servers.billing.store import InvoiceLineRow, InvoiceRow, invoice_of, lines_of
from servers.billing.tax import (
    LineToTax,
    TaxCalculation,
    TaxProvider,
    TaxUnavailable,
    UnknownJurisdiction,
)
from servers.db import Database

__all__ = [
    "Billing",
    "finalize",
    "finalize_due",
    "invoice_document",
    "invoice_of",
    "lines_of",
    "tax_backoff",
]

#: Longest wait between two attempts at taxing a pending invoice.
MAX_TAX_BACKOFF = timedelta(minutes=15)


@dataclass(frozen=True)
class Billing:
    """What billing operations need besides a session."""

    database: Database
    provider: TaxProvider
    signer: DocumentSigner
    clock: Callable[[], datetime]
    #: Where alerts are pushed (None: they are only stored).
    notifications: Notifications | None = None


def tax_backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: 1 s, 2 s, 4 s, ... up to 15 minutes.

    >>> [tax_backoff(n).total_seconds() for n in (1, 2, 3, 20)]
    [1.0, 2.0, 4.0, 900.0]
    """
    return min(timedelta(seconds=2 ** max(attempts - 1, 0)), MAX_TAX_BACKOFF)


def invoice_document(invoice: InvoiceRow, lines: list[InvoiceLineRow]) -> dict[str, Any]:
    """What an invoice's signature covers."""
    return {
        "type": "invoice",
        "id": str(invoice.id),
        "tenant_id": str(invoice.tenant_id),
        "series": invoice.series,
        "number": invoice.number,
        "currency": invoice.currency,
        "period_start": rfc3339(invoice.period_start),
        "period_end": rfc3339(invoice.period_end),
        "finalized_at": rfc3339(invoice.finalized_at),
        "subtotal": invoice.subtotal,
        "tax": invoice.tax,
        "total": invoice.total,
        "tax_details": {
            "tax_id": invoice.tax_id,
            "jurisdiction": invoice.jurisdiction,
            "rate": invoice.tax_rate,
            "mode": invoice.tax_mode,
            "provider_reference": invoice.tax_reference,
        },
        "lines": [
            {
                "id": str(line.id),
                "meter": line.meter,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "per_quantity": line.per_quantity,
                "subtotal": line.subtotal,
                "tax": line.tax,
                "total": line.total,
                "tax_rate": line.tax_rate,
                "exemption": line.exemption,
            }
            for line in lines
        ],
    }


async def finalize(billing: Billing, tenant: uuid.UUID, invoice_id: uuid.UUID) -> InvoiceRow:
    """Close, tax, number and sign an invoice (tax_pending if the provider is down).

    Finalizing a finalized invoice returns it unchanged.

    Raises:
        NotFound: No such invoice.
        FailedPrecondition: The tenant does not bill (not enrolled, or frozen).
    """
    async with billing.database.tenant_session(tenant) as session:
        await require_billing(session, tenant)
        invoice = await invoice_of(session, invoice_id, lock=True)
        if invoice.status == "finalized":
            return invoice
        if invoice.status == "draft":
            now = billing.clock()
            profile = await profile_of(session, tenant)
            invoice.status = "tax_pending"
            # Never an empty period: the next draft starts where this one ends.
            invoice.period_end = max(
                min(invoice.period_end, now), invoice.period_start + timedelta(microseconds=1)
            )
            invoice.tax_id, invoice.jurisdiction = profile.tax_id, profile.jurisdiction
            invoice.tax_mode = profile.tax_mode
            invoice.next_tax_attempt_at = now
        lines = await lines_of(session, invoice_id)
        facts = (invoice.jurisdiction, invoice.tax_id, invoice.tax_mode, invoice.currency)
    return await _tax_and_issue(billing, tenant, invoice_id, lines, facts)


async def _tax_and_issue(
    billing: Billing,
    tenant: uuid.UUID,
    invoice_id: uuid.UUID,
    lines: list[InvoiceLineRow],
    facts: tuple[str, str, str, str],
) -> InvoiceRow:
    jurisdiction, tax_id, mode, currency = facts
    try:
        calculation = await billing.provider.calculate(
            [LineToTax(str(line.id), line.amount, line.tax_code) for line in lines],
            jurisdiction=jurisdiction,
            customer_tax_id=tax_id,
            mode="inclusive" if mode == "inclusive" else "exclusive",
            currency=currency,
        )
    except (TaxUnavailable, UnknownJurisdiction) as error:
        # A remote provider may not know a jurisdiction the local table let the profile
        # have: the invoice waits for it as for an outage (retried, alerted), never guessed.
        return await _postpone(billing, tenant, invoice_id, str(error))
    async with billing.database.tenant_session(tenant) as session:
        invoice = await invoice_of(session, invoice_id, lock=True)
        if invoice.status != "tax_pending":
            return invoice  # another finalizer issued it meanwhile
        await _issue(session, billing, invoice, calculation)
        return invoice


async def _postpone(
    billing: Billing, tenant: uuid.UUID, invoice_id: uuid.UUID, why: str
) -> InvoiceRow:
    async with billing.database.tenant_session(tenant) as session:
        invoice = await invoice_of(session, invoice_id, lock=True)
        if invoice.status != "tax_pending":
            return invoice
        now = billing.clock()
        invoice.tax_attempts += 1
        invoice.next_tax_attempt_at = now + tax_backoff(invoice.tax_attempts)
        await records.alert(
            session,
            tenant,
            "tax_pending",
            f"invoice {invoice.id} waits for the tax provider: {why}",
            f"tax_pending:{invoice.id}",
            now,
            {"invoice_id": str(invoice.id)},
            notifications=billing.notifications,
        )
        return invoice


async def _issue(
    session: AsyncSession, billing: Billing, invoice: InvoiceRow, calculation: TaxCalculation
) -> None:
    now = billing.clock()
    lines = await lines_of(session, invoice.id)
    taxed = {line.reference: line for line in calculation.lines}
    for line in lines:
        result = taxed[str(line.id)]
        line.subtotal, line.tax, line.total = result.taxable, result.tax, result.total
        line.tax_rate, line.exemption = str(result.rate), result.exemption
    await session.flush()  # the lines first: the store freezes them once the invoice is final
    rated = invoice.subtotal
    invoice.subtotal, invoice.tax = calculation.subtotal, calculation.tax
    invoice.total = calculation.total
    invoice.tax_rate = str(calculation.rate)
    invoice.tax_reference = calculation.provider_reference
    invoice.number = await records.next_number(session, invoice.tenant_id, invoice.series)
    invoice.finalized_at = now
    invoice.next_tax_attempt_at = None
    signed = await billing.signer.sign(session, invoice_document(invoice, lines))
    invoice.signed_payload, invoice.signature = signed.payload, signed.signature
    invoice.signing_key_id = signed.key_id
    invoice.status = "finalized"
    records.ledger(
        session,
        invoice.tenant_id,
        "tax",
        invoice.total - rated,
        invoice.currency,
        invoice.id,
        str(invoice.id),
        now,
    )
    await session.flush()


async def finalize_due(
    billing: Billing,
    now: datetime,
    changed: Callable[[uuid.UUID], Awaitable[None]] | None = None,
) -> int:
    """Finalize what is due: drafts whose period ended, tax_pending invoices whose retry is due.

    Tenants that do not bill (frozen, not enrolled) are skipped; their drafts
    wait. `changed` hears of each tenant whose invoice moved. Returns how many
    invoices were issued.
    """
    async with billing.database.platform_session(readonly=True) as session:
        due = await store.due_invoices(session, now)
    issued = 0
    for tenant, invoice_id in due:
        try:
            invoice = await finalize(billing, tenant, invoice_id)
        except DomainError:
            continue
        issued += invoice.status == "finalized"
        if changed is not None:
            await changed(tenant)
    async with billing.database.platform_session(readonly=True) as session:
        pending = await store.count_tax_pending(session)
    metrics.TAX_PENDING.set(pending)
    return issued
