"""Billing rows as contract messages, and Money in and out."""

from __future__ import annotations

import json

from intelgraph.billing.v1 import billing_service_pb2 as pb
from intelgraph.common.v1.money_pb2 import Money

from core.errors import InvalidArgument
from core.times import to_timestamp
from servers.billing.balances import InvoiceBalance
from servers.billing.budgets import BudgetStatus
from servers.billing.credit_notes import IssuedCreditNote
from servers.billing.money import currency
from servers.billing.pricing import Price
from servers.billing.store import (
    AlertRow,
    BillingProfileRow,
    InvoiceLineRow,
    PaymentRow,
    ReconciliationRow,
    RefundRow,
    RolloutChangeRow,
    RolloutRow,
    SpendCapRow,
    UsageEventRow,
)
from servers.billing.tax import TaxCalculation

INVOICE_STATUS = {
    "draft": pb.INVOICE_STATUS_DRAFT,
    "tax_pending": pb.INVOICE_STATUS_TAX_PENDING,
    "finalized": pb.INVOICE_STATUS_FINALIZED,
}
CREDIT_NOTE_STATUS = {"issued": pb.CREDIT_NOTE_STATUS_ISSUED, "void": pb.CREDIT_NOTE_STATUS_VOID}
REASONS = {
    pb.CREDIT_NOTE_REASON_DUPLICATE: "duplicate",
    pb.CREDIT_NOTE_REASON_FRAUDULENT: "fraudulent",
    pb.CREDIT_NOTE_REASON_ORDER_CHANGE: "order_change",
    pb.CREDIT_NOTE_REASON_PRODUCT_UNSATISFACTORY: "product_unsatisfactory",
    pb.CREDIT_NOTE_REASON_OTHER: "other",
}
REASON_VALUES = {name: value for value, name in REASONS.items()}
TAX_MODES = {pb.TAX_MODE_EXCLUSIVE: "exclusive", pb.TAX_MODE_INCLUSIVE: "inclusive"}
TAX_MODE_VALUES = {name: value for value, name in TAX_MODES.items()}
STAGES = {
    pb.ROLLOUT_STAGE_PILOT: "pilot",
    pb.ROLLOUT_STAGE_GA: "ga",
    pb.ROLLOUT_STAGE_FROZEN: "frozen",
}
STAGE_VALUES = {name: value for value, name in STAGES.items()}
ALERT_KINDS = {
    pb.BILLING_ALERT_KIND_RECONCILIATION_DRIFT: "reconciliation_drift",
    pb.BILLING_ALERT_KIND_VARIANCE: "variance",
    pb.BILLING_ALERT_KIND_SPEND_CAP_80: "spend_cap_80",
    pb.BILLING_ALERT_KIND_SPEND_CAP_100: "spend_cap_100",
    pb.BILLING_ALERT_KIND_TAX_PENDING: "tax_pending",
}
ALERT_KIND_VALUES = {name: value for value, name in ALERT_KINDS.items()}


def money(minor_units: int, code: str) -> Money:
    """A Money message."""
    return Money(minor_units=minor_units, currency_code=code)


def budget(status: BudgetStatus) -> pb.Budget:
    """A Budget message, with what the current period spent."""
    row = status.row
    return pb.Budget(
        id=row.id,
        name=row.name,
        monthly_amount=money(row.monthly_amount, row.currency),
        meters=list(row.meters),
        spent=money(status.spent, row.currency),
        period_start=to_timestamp(status.period_start),
        period_end=to_timestamp(status.period_end),
        updated_at=to_timestamp(row.updated_at),
    )


def amount_in(value: Money, field: str) -> tuple[int, str]:
    """(minor units, currency) of a request's Money, the currency checked.

    Raises:
        InvalidArgument: Not an ISO-4217 currency code.
    """
    try:
        return value.minor_units, currency(value.currency_code)
    except ValueError as error:
        raise InvalidArgument(str(error), field=f"{field}.currency_code") from None


def invoice_line(line: InvoiceLineRow, code: str) -> pb.InvoiceLine:
    """An InvoiceLine message."""
    return pb.InvoiceLine(
        id=str(line.id),
        meter=line.meter,
        description=line.description,
        quantity=line.quantity,
        unit_price=money(line.unit_price, code),
        per_quantity=line.per_quantity,
        subtotal=money(line.subtotal, code),
        tax=money(line.tax, code),
        total=money(line.total, code),
    )


def invoice(balance: InvoiceBalance) -> pb.Invoice:
    """An Invoice message, with what was paid, credited and refunded."""
    row, code = balance.invoice, balance.invoice.currency
    lines = {str(line.id): line for line in balance.lines}
    breakdown = [
        pb.TaxLine(
            line_id=line_id,
            jurisdiction=row.jurisdiction,
            rate=line.tax_rate,
            taxable_amount=money(line.subtotal, code),
            tax_amount=money(line.tax, code),
            exemption=line.exemption,
        )
        for line_id, line in lines.items()
    ]
    return pb.Invoice(
        id=str(row.id),
        number=row.number or "",
        series=row.series,
        status=INVOICE_STATUS[row.status],
        period_start=to_timestamp(row.period_start),
        period_end=to_timestamp(row.period_end),
        lines=[invoice_line(line, code) for line in balance.lines],
        subtotal=money(row.subtotal, code),
        tax=money(row.tax, code),
        total=money(row.total, code),
        amount_paid=money(balance.paid, code),
        amount_credited=money(balance.credited, code),
        amount_refunded=money(balance.refunded, code),
        tax_details=pb.TaxDetails(
            tax_id=row.tax_id,
            jurisdiction=row.jurisdiction,
            rate=row.tax_rate,
            amount=money(row.tax, code),
            breakdown=breakdown if row.status == "finalized" else [],
            provider_reference=row.tax_reference,
            mode=TAX_MODE_VALUES.get(row.tax_mode, pb.TAX_MODE_UNSPECIFIED),
        ),
        signature=row.signature,
        signing_key_id=row.signing_key_id,
        created_at=to_timestamp(row.created_at),
        finalized_at=to_timestamp(row.finalized_at),
        signed_payload=row.signed_payload,
    )


def credit_note(issued: IssuedCreditNote) -> pb.CreditNote:
    """A CreditNote message."""
    note, code = issued.note, issued.note.currency
    return pb.CreditNote(
        id=str(note.id) if note.number else "",
        number=note.number,
        invoice_id=str(note.invoice_id),
        status=CREDIT_NOTE_STATUS[note.status],
        reason=REASON_VALUES.get(note.reason, pb.CREDIT_NOTE_REASON_OTHER),
        memo=note.memo,
        lines=[
            pb.CreditNoteLine(
                id=str(line.id) if note.number else "",
                invoice_line_id=str(line.invoice_line_id),
                subtotal=money(line.subtotal, code),
                tax=money(line.tax, code),
                total=money(line.total, code),
            )
            for line in issued.lines
        ],
        subtotal=money(note.subtotal, code),
        tax=money(note.tax, code),
        total=money(note.total, code),
        signature=note.signature,
        signing_key_id=note.signing_key_id,
        created_at=to_timestamp(note.created_at),
        voided_at=to_timestamp(note.voided_at),
        signed_payload=note.signed_payload,
        amount_refunded=money(issued.refunded, code),
    )


def usage_event(row: UsageEventRow) -> pb.UsageEvent:
    """A UsageEvent message."""
    return pb.UsageEvent(
        event_id=row.event_id,
        meter=row.meter,
        quantity=row.quantity,
        occurred_at=to_timestamp(row.occurred_at),
        recorded_at=to_timestamp(row.recorded_at),
        invoice_id=str(row.invoice_id),
    )


def payment(row: PaymentRow) -> pb.Payment:
    """A Payment message."""
    return pb.Payment(
        id=str(row.id),
        invoice_id=str(row.invoice_id),
        amount=money(row.amount, row.currency),
        reference=row.reference,
        created_at=to_timestamp(row.created_at),
    )


def refund(row: RefundRow) -> pb.Refund:
    """A Refund message."""
    return pb.Refund(
        id=str(row.id),
        invoice_id=str(row.invoice_id),
        credit_note_id=str(row.credit_note_id or ""),
        amount=money(row.amount, row.currency),
        memo=row.memo,
        created_at=to_timestamp(row.created_at),
    )


def tax_calculation(calculation: TaxCalculation, code: str) -> pb.TaxCalculation:
    """A TaxCalculation message."""
    return pb.TaxCalculation(
        lines=[
            pb.TaxLine(
                line_id=line.reference,
                jurisdiction=line.jurisdiction,
                rate=str(line.rate),
                taxable_amount=money(line.taxable, code),
                tax_amount=money(line.tax, code),
                exemption=line.exemption,
            )
            for line in calculation.lines
        ],
        subtotal=money(calculation.subtotal, code),
        tax=money(calculation.tax, code),
        total=money(calculation.total, code),
        provider_reference=calculation.provider_reference,
    )


def report(row: ReconciliationRow) -> pb.ReconciliationReport:
    """A ReconciliationReport message."""
    code = row.currency
    return pb.ReconciliationReport(
        id=str(row.id),
        day=row.day,
        metered_total=money(row.metered_total, code),
        ledger_total=money(row.ledger_total, code),
        documents_total=money(row.documents_total, code),
        drift=money(row.drift, code),
        alert=row.alert,
        created_at=to_timestamp(row.created_at),
    )


def spend_cap(row: SpendCapRow | None, spent: int, code: str) -> pb.SpendCap:
    """A SpendCap message (cap 0: none)."""
    return pb.SpendCap(
        cap=money(row.cap if row else 0, code),
        spent=money(spent, code),
        updated_at=to_timestamp(row.updated_at) if row else None,
    )


def rollout(row: RolloutRow) -> pb.TenantRollout:
    """A TenantRollout message."""
    return pb.TenantRollout(
        tenant_id=str(row.tenant),
        stage=STAGE_VALUES[row.stage],
        updated_at=to_timestamp(row.updated_at),
    )


def rollout_change(row: RolloutChangeRow) -> pb.RolloutChange:
    """A RolloutChange message."""
    return pb.RolloutChange(
        id=str(row.id),
        tenant_id=str(row.tenant),
        from_stage=STAGE_VALUES.get(row.from_stage, pb.ROLLOUT_STAGE_UNSPECIFIED),
        to_stage=STAGE_VALUES[row.to_stage],
        changed_at=to_timestamp(row.changed_at),
        changed_by=row.changed_by,
        reason=row.reason,
        backout=row.backout,
    )


def alert(row: AlertRow) -> pb.BillingAlert:
    """A BillingAlert message."""
    return pb.BillingAlert(
        id=str(row.id),
        kind=ALERT_KIND_VALUES.get(row.kind, pb.BILLING_ALERT_KIND_UNSPECIFIED),
        message=row.message,
        raised_at=to_timestamp(row.raised_at),
        details={
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in row.details.items()
        },
    )


def profile(row: BillingProfileRow) -> pb.BillingProfile:
    """A BillingProfile message."""
    return pb.BillingProfile(
        currency_code=row.currency,
        jurisdiction=row.jurisdiction,
        tax_id=row.tax_id,
        tax_mode=TAX_MODE_VALUES[row.tax_mode],
        updated_at=to_timestamp(row.updated_at),
    )


def price(value: Price) -> pb.Price:
    """A Price message."""
    return pb.Price(
        meter=value.meter,
        description=value.description,
        unit_price=money(value.unit_price, value.currency),
        per_quantity=value.per_quantity,
        tenant_override=value.tenant_override,
    )
