"""What a finalized invoice owes: its lines less credits, payments less refunds.

Credit notes, payments and refunds all start from the invoice's balance, read
(and, for a mutation, locked) in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument, NotFound
from core.pagination import Page
from servers.billing import store
from servers.billing.credits import LineBalance
from servers.billing.rollout import check_stage, require_billing
from servers.billing.store import InvoiceLineRow, InvoiceRow, invoice_of
from servers.db import Database


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


async def _balance(
    session: AsyncSession, invoice: InvoiceRow, paid: int, refunded: int
) -> InvoiceBalance:
    """The invoice's lines with what its issued credit notes took (one query)."""
    rows = await store.credited_lines(session, invoice.id)
    lines = [line for line, _, _ in rows]
    balances = [
        LineBalance(str(line.id), line.subtotal, line.tax, subtotal, tax)
        for line, subtotal, tax in rows
    ]
    credited_total = sum(b.credited_subtotal + b.credited_tax for b in balances)
    return InvoiceBalance(invoice, lines, balances, credited_total, paid, refunded)


async def balance_of(session: AsyncSession, invoice: InvoiceRow) -> InvoiceBalance:
    """The invoice's lines with what issued credit notes took, and its payments and refunds."""
    paid, refunded = await store.paid_and_refunded(session, invoice.id)
    return await _balance(session, invoice, paid, refunded)


async def locked_balance(
    session: AsyncSession, tenant: uuid.UUID, invoice_id: uuid.UUID
) -> InvoiceBalance:
    """The finalized invoice, locked for this transaction, and its balance.

    One query locks the invoice and reads the tenant's billing stage and the
    invoice's payments and refunds; one more reads its lines and credits.

    Raises:
        FailedPrecondition: Billing frozen for the tenant, or the invoice not finalized.
        NotFound: No such invoice.
    """
    found = await store.locked_invoice(session, tenant, invoice_id)
    if found is None:
        await require_billing(session, tenant)  # frozen tenants learn that first
        raise NotFound(f"no invoice {invoice_id}")
    invoice, stage, paid, refunded = found
    check_stage(stage)
    return await _balance(session, require_finalized(invoice), paid, refunded)


def require_finalized(invoice: InvoiceRow) -> InvoiceRow:
    """The invoice, once it is finalized.

    Raises:
        FailedPrecondition: A draft, or waiting for tax.
    """
    if invoice.status != "finalized":
        raise FailedPrecondition(
            f"invoice {invoice.id} is {invoice.status.replace('_', ' ')}, not finalized",
            reason=ErrorReason.ERROR_REASON_INVOICE_STATE,
            metadata={"status": invoice.status},
        )
    return invoice


def same_currency(currency: str, invoice: InvoiceRow, field_name: str) -> None:
    """Refuse amounts in another currency than the invoice's.

    Raises:
        InvalidArgument: Another currency.
    """
    if currency and currency != invoice.currency:
        raise InvalidArgument(
            f"amounts must be in the invoice's currency, {invoice.currency}", field=field_name
        )


async def invoice_balance(
    database: Database, tenant: uuid.UUID, invoice_id: uuid.UUID
) -> InvoiceBalance:
    """One invoice with what was paid, credited and refunded.

    Raises:
        NotFound: No such invoice.
    """
    async with database.tenant_session(tenant, readonly=True) as session:
        return await balance_of(session, await invoice_of(session, invoice_id))


async def list_invoices(
    database: Database, tenant: uuid.UUID, status: str, page: Page
) -> tuple[list[InvoiceBalance], str]:
    """A page of the tenant's invoices (of `status`, if any), newest period first; next token."""
    async with database.tenant_session(tenant, readonly=True) as session:
        rows = await store.invoices_page(session, status, page.after, page.size + 1)
        token = page.next_token(rows, lambda row: (row.period_start, row.id))
        return [await balance_of(session, row) for row in rows[: page.size]], token
