"""Billing tables (migration 0004).

Money columns are BIGINT minor units of the row's `currency`. The store itself
keeps finalized documents immutable: triggers refuse any change to a finalized
invoice or its lines, any change to a credit note but issued → void, and any
update or delete of credit note lines, payments, refunds and ledger entries.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from servers.db import Base, TenantScoped, new_id

INVOICE_STATUSES = ("draft", "tax_pending", "finalized")
CREDIT_NOTE_STATUSES = ("issued", "void")
CREDIT_NOTE_REASONS = (
    "duplicate",
    "fraudulent",
    "order_change",
    "product_unsatisfactory",
    "other",
)
LEDGER_KINDS = ("usage", "tax", "credit", "void", "payment", "refund")
ROLLOUT_STAGES = ("pilot", "ga", "frozen")
TAX_MODES = ("exclusive", "inclusive")


class BillingProfileRow(TenantScoped, Base):
    """The tenant's currency and tax facts."""

    __tablename__ = "billing_profiles"
    __table_args__ = (
        CheckConstraint("tax_mode IN ('exclusive', 'inclusive')", name="tax_mode_known"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    jurisdiction: Mapped[str] = mapped_column(String(16))
    tax_id: Mapped[str] = mapped_column(String(64), default="")
    tax_mode: Mapped[str] = mapped_column(String(10))
    updated_at: Mapped[datetime]


class PriceRow(TenantScoped, Base):
    """A tenant's own price for a meter (the price book's default applies otherwise)."""

    __tablename__ = "billing_prices"
    __table_args__ = (
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        CheckConstraint("per_quantity >= 1", name="per_quantity_positive"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    meter: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    per_quantity: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class InvoiceRow(TenantScoped, Base):
    """An invoice: a draft collects the period's usage; finalized, it is frozen and signed."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "period_start"),
        UniqueConstraint("tenant_id", "series", "number"),
        CheckConstraint("status IN ('draft', 'tax_pending', 'finalized')", name="status_known"),
        CheckConstraint("subtotal + tax = total", name="subtotal_plus_tax_is_total"),
        Index("ix_invoices_status_next_tax_attempt_at", "status", "next_tax_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    series: Mapped[str] = mapped_column(String(32))
    number: Mapped[str | None] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    #: Draft: the rated usage so far. Finalized: net, tax and gross.
    subtotal: Mapped[int] = mapped_column(BigInteger, default=0)
    tax: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_id: Mapped[str] = mapped_column(String(64), default="")
    jurisdiction: Mapped[str] = mapped_column(String(16), default="")
    tax_rate: Mapped[str] = mapped_column(String(16), default="")
    tax_mode: Mapped[str] = mapped_column(String(10), default="exclusive")
    tax_reference: Mapped[str] = mapped_column(String(64), default="")
    tax_attempts: Mapped[int] = mapped_column(default=0)
    next_tax_attempt_at: Mapped[datetime | None]
    signature: Mapped[str] = mapped_column(Text, default="")
    signing_key_id: Mapped[str] = mapped_column(String(64), default="")
    signed_payload: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]


class InvoiceLineRow(TenantScoped, Base):
    """One meter's usage on an invoice; priced when created, taxed when finalized."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        UniqueConstraint("invoice_id", "meter"),
        CheckConstraint("subtotal + tax = total", name="subtotal_plus_tax_is_total"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int]
    meter: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    per_quantity: Mapped[int] = mapped_column(BigInteger, default=1)
    #: round_half_up(quantity * unit_price / per_quantity): what the usage is worth.
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    subtotal: Mapped[int] = mapped_column(BigInteger, default=0)
    tax: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_code: Mapped[str] = mapped_column(String(16), default="")
    tax_rate: Mapped[str] = mapped_column(String(16), default="")
    exemption: Mapped[str] = mapped_column(String(32), default="")


class UsageEventRow(TenantScoped, Base):
    """One metered event, recorded once per event id, rated into a draft line."""

    __tablename__ = "usage_events"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_usage_events_tenant_id_recorded_at", "tenant_id", "recorded_at"),
        Index("ix_usage_events_line_id_recorded_at", "line_id", "recorded_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    meter: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    invoice_id: Mapped[uuid.UUID]
    line_id: Mapped[uuid.UUID]
    #: What the event added to its line's amount (rounding makes it differ per event).
    amount: Mapped[int] = mapped_column(BigInteger)


class DocumentSeriesRow(TenantScoped, Base):
    """The next number of a tenant's document series (gapless: bumped in the issuing txn)."""

    __tablename__ = "billing_document_series"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    series: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_number: Mapped[int] = mapped_column(BigInteger)


class CreditNoteRow(TenantScoped, Base):
    """A signed, numbered credit against a finalized invoice; only ever voided after."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "series", "number"),
        CheckConstraint("status IN ('issued', 'void')", name="status_known"),
        CheckConstraint("subtotal + tax = total", name="subtotal_plus_tax_is_total"),
        CheckConstraint("total > 0", name="total_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), index=True)
    series: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(32))
    memo: Mapped[str] = mapped_column(Text, default="")
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(Text)
    signing_key_id: Mapped[str] = mapped_column(String(64))
    signed_payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    voided_at: Mapped[datetime | None]


class CreditNoteLineRow(TenantScoped, Base):
    """What a credit note takes off one invoice line."""

    __tablename__ = "credit_note_lines"
    __table_args__ = (
        CheckConstraint("subtotal + tax = total", name="subtotal_plus_tax_is_total"),
        CheckConstraint("subtotal >= 0 AND tax >= 0", name="not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    credit_note_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("credit_notes.id"), index=True)
    invoice_line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoice_lines.id"), index=True)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)


class PaymentRow(TenantScoped, Base):
    """Money received against a finalized invoice."""

    __tablename__ = "billing_payments"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class RefundRow(TenantScoped, Base):
    """Money paid back on an invoice, optionally paying out a credit note."""

    __tablename__ = "billing_refunds"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), index=True)
    credit_note_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("credit_notes.id"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    memo: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class LedgerEntryRow(TenantScoped, Base):
    """One signed movement of what the tenant owes (append-only).

    usage +rated amount, tax +tax at finalization, credit -total, void +total,
    payment -amount, refund +amount.
    """

    __tablename__ = "billing_ledger"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('usage', 'tax', 'credit', 'void', 'payment', 'refund')", name="kind_known"
        ),
        Index("ix_billing_ledger_tenant_id_recorded_at", "tenant_id", "recorded_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    invoice_id: Mapped[uuid.UUID]
    #: The usage event, credit note, payment or refund it records.
    source_id: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime]


class IdempotencyRow(TenantScoped, Base):
    """An idempotency key's first request and what it created (the unique key serializes)."""

    __tablename__ = "billing_idempotency"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    operation: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]


class SpendCapRow(TenantScoped, Base):
    """The tenant's hard cap on a period's rated usage, and the alerts raised for it."""

    __tablename__ = "billing_spend_caps"
    __table_args__ = (CheckConstraint("cap >= 0", name="cap_not_negative"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cap: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    updated_at: Mapped[datetime]


class BudgetRow(TenantScoped, Base):
    """A cost budget: a monthly amount for the rated usage of some meters (or all)."""

    __tablename__ = "billing_budgets"
    __table_args__ = (CheckConstraint("monthly_amount >= 0", name="amount_not_negative"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    #: Chosen by the tenant (a slug), so other services can name it.
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    monthly_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: Meters counted against it; empty: all of them.
    meters: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AlertRow(TenantScoped, Base):
    """A billing alert; `dedupe_key` keeps one per cause (per day, per period, per invoice)."""

    __tablename__ = "billing_alerts"
    __table_args__ = (UniqueConstraint("tenant_id", "dedupe_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(128))
    raised_at: Mapped[datetime] = mapped_column(index=True)


class ReconciliationRow(TenantScoped, Base):
    """One tenant's reconciliation of one UTC day (re-running replaces it)."""

    __tablename__ = "billing_reconciliations"
    __table_args__ = (UniqueConstraint("tenant_id", "day"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    day: Mapped[str] = mapped_column(String(10))
    currency: Mapped[str] = mapped_column(String(3))
    metered_total: Mapped[int] = mapped_column(BigInteger)
    ledger_total: Mapped[int] = mapped_column(BigInteger)
    documents_total: Mapped[int] = mapped_column(BigInteger)
    drift: Mapped[int] = mapped_column(BigInteger)
    #: Rated usage of the day (what variance guards compare).
    billed_total: Mapped[int] = mapped_column(BigInteger, default=0)
    alert: Mapped[bool]
    created_at: Mapped[datetime]


class RolloutRow(Base):
    """Which tenants bill as pilot, GA or frozen.

    A platform table: its rows are about tenants but belong to the operators,
    so the column is `tenant`, not the `tenant_id` that marks tenant-scoped rows.
    """

    __tablename__ = "billing_rollout"
    __table_args__ = (CheckConstraint("stage IN ('pilot', 'ga', 'frozen')", name="stage_known"),)

    tenant: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(Text, default="")


class RolloutChangeRow(Base):
    """One change of one tenant's rollout stage: the rollout's history (a platform table)."""

    __tablename__ = "billing_rollout_changes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant: Mapped[uuid.UUID] = mapped_column(index=True)
    #: "" when the change enrolled the tenant.
    from_stage: Mapped[str] = mapped_column(String(8))
    to_stage: Mapped[str] = mapped_column(String(8))
    changed_at: Mapped[datetime] = mapped_column(index=True)
    changed_by: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, default="")
    backout: Mapped[bool] = mapped_column(default=False)


class SigningKeyRow(Base):
    """Every public key that ever signed a billing document (documents outlive key rotation)."""

    __tablename__ = "billing_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    first_used_at: Mapped[datetime]
