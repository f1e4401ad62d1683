"""Billing: profiles, prices, usage, invoices, credit notes, payments, refunds, ledger, guards.

Finalized documents are immutable in the store: triggers refuse any change to
a finalized invoice or to the lines of one, any change to a credit note other
than issued → void, and any update or delete of credit note lines, payments,
refunds and ledger entries.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: (trigger name, table, event, condition or "" for always, message).
GUARDS = (
    (
        "invoices_frozen_update",
        "invoices",
        "UPDATE",
        "OLD.status = 'finalized'",
        "a finalized invoice is immutable",
    ),
    (
        "invoices_frozen_delete",
        "invoices",
        "DELETE",
        "OLD.status = 'finalized'",
        "a finalized invoice is immutable",
    ),
    (
        "invoice_lines_frozen_update",
        "invoice_lines",
        "UPDATE",
        "(SELECT status FROM invoices WHERE id = OLD.invoice_id) = 'finalized'",
        "the lines of a finalized invoice are immutable",
    ),
    (
        "invoice_lines_frozen_delete",
        "invoice_lines",
        "DELETE",
        "(SELECT status FROM invoices WHERE id = OLD.invoice_id) = 'finalized'",
        "the lines of a finalized invoice are immutable",
    ),
    (
        "credit_notes_only_void",
        "credit_notes",
        "UPDATE",
        "OLD.status <> 'issued' OR NEW.status <> 'void' OR NEW.number <> OLD.number"
        " OR NEW.invoice_id <> OLD.invoice_id OR NEW.total <> OLD.total"
        " OR NEW.subtotal <> OLD.subtotal OR NEW.tax <> OLD.tax"
        " OR NEW.signed_payload <> OLD.signed_payload OR NEW.signature <> OLD.signature",
        "an issued credit note can only be voided",
    ),
    ("credit_notes_no_delete", "credit_notes", "DELETE", "", "credit notes are never deleted"),
    *(
        (f"{table}_append_only_{event.lower()}", table, event, "", f"{table} is append-only")
        for table in ("credit_note_lines", "billing_payments", "billing_refunds", "billing_ledger")
        for event in ("UPDATE", "DELETE")
    ),
)


def _create_guards() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, event, condition, message in GUARDS:
        if postgres:
            check = f"IF {condition} THEN " if condition else ""
            close = " END IF;" if condition else ""
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"{check}RAISE EXCEPTION '{message}';{close} "
                f"RETURN {'OLD' if event == 'DELETE' else 'NEW'}; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
        else:
            when = f" WHEN {condition}" if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON {table}{when} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def _drop_guards() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in GUARDS:
        if postgres:
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
        else:
            op.execute(f"DROP TRIGGER {name}")


def upgrade() -> None:
    op.create_table(
        "billing_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_alerts")),
        sa.UniqueConstraint(
            "tenant_id", "dedupe_key", name=op.f("uq_billing_alerts_tenant_id_dedupe_key")
        ),
    )
    with op.batch_alter_table("billing_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_alerts_raised_at"), ["raised_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_alerts_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "billing_document_series",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("series", sa.String(length=32), nullable=False),
        sa.Column("next_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "series", name=op.f("pk_billing_document_series")),
    )
    op.create_table(
        "billing_idempotency",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "operation", "key", name=op.f("pk_billing_idempotency")
        ),
    )
    op.create_table(
        "billing_ledger",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('usage', 'tax', 'credit', 'void', 'payment', 'refund')",
            name=op.f("ck_billing_ledger_kind_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_ledger")),
    )
    with op.batch_alter_table("billing_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_ledger_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "ix_billing_ledger_tenant_id_recorded_at", ["tenant_id", "recorded_at"], unique=False
        )

    op.create_table(
        "billing_prices",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("per_quantity", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "per_quantity >= 1", name=op.f("ck_billing_prices_per_quantity_positive")
        ),
        sa.CheckConstraint(
            "unit_price >= 0", name=op.f("ck_billing_prices_unit_price_not_negative")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "meter", name=op.f("pk_billing_prices")),
    )
    op.create_table(
        "billing_profiles",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("jurisdiction", sa.String(length=16), nullable=False),
        sa.Column("tax_id", sa.String(length=64), nullable=False),
        sa.Column("tax_mode", sa.String(length=10), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "tax_mode IN ('exclusive', 'inclusive')",
            name=op.f("ck_billing_profiles_tax_mode_known"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_billing_profiles")),
    )
    op.create_table(
        "billing_reconciliations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("metered_total", sa.BigInteger(), nullable=False),
        sa.Column("ledger_total", sa.BigInteger(), nullable=False),
        sa.Column("documents_total", sa.BigInteger(), nullable=False),
        sa.Column("drift", sa.BigInteger(), nullable=False),
        sa.Column("billed_total", sa.BigInteger(), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_reconciliations")),
        sa.UniqueConstraint(
            "tenant_id", "day", name=op.f("uq_billing_reconciliations_tenant_id_day")
        ),
    )
    with op.batch_alter_table("billing_reconciliations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_reconciliations_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "billing_rollout",
        sa.Column("tenant", sa.Uuid(), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "stage IN ('pilot', 'ga', 'frozen')", name=op.f("ck_billing_rollout_stage_known")
        ),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_billing_rollout")),
    )
    op.create_table(
        "billing_signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_billing_signing_keys")),
    )
    op.create_table(
        "billing_spend_caps",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("cap", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("cap >= 0", name=op.f("ck_billing_spend_caps_cap_not_negative")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_billing_spend_caps")),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("series", sa.String(length=32), nullable=False),
        sa.Column("number", sa.String(length=48), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("tax_id", sa.String(length=64), nullable=False),
        sa.Column("jurisdiction", sa.String(length=16), nullable=False),
        sa.Column("tax_rate", sa.String(length=16), nullable=False),
        sa.Column("tax_mode", sa.String(length=10), nullable=False),
        sa.Column("tax_reference", sa.String(length=64), nullable=False),
        sa.Column("tax_attempts", sa.Integer(), nullable=False),
        sa.Column("next_tax_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("signing_key_id", sa.String(length=64), nullable=False),
        sa.Column("signed_payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'tax_pending', 'finalized')", name=op.f("ck_invoices_status_known")
        ),
        sa.CheckConstraint(
            "subtotal + tax = total", name=op.f("ck_invoices_subtotal_plus_tax_is_total")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint(
            "tenant_id", "period_start", name=op.f("uq_invoices_tenant_id_period_start")
        ),
        sa.UniqueConstraint(
            "tenant_id", "series", "number", name=op.f("uq_invoices_tenant_id_series_number")
        ),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoices_status_next_tax_attempt_at",
            ["status", "next_tax_attempt_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_invoices_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "usage_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("line_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_usage_events_quantity_positive")),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name=op.f("pk_usage_events")),
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_events_line_id_recorded_at", ["line_id", "recorded_at"], unique=False
        )
        batch_op.create_index(
            "ix_usage_events_tenant_id_recorded_at", ["tenant_id", "recorded_at"], unique=False
        )

    op.create_table(
        "billing_payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_billing_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_billing_payments_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_payments")),
    )
    with op.batch_alter_table("billing_payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_payments_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_payments_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "credit_notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("series", sa.String(length=32), nullable=False),
        sa.Column("number", sa.String(length=48), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("signing_key_id", sa.String(length=64), nullable=False),
        sa.Column("signed_payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('issued', 'void')", name=op.f("ck_credit_notes_status_known")
        ),
        sa.CheckConstraint(
            "subtotal + tax = total", name=op.f("ck_credit_notes_subtotal_plus_tax_is_total")
        ),
        sa.CheckConstraint("total > 0", name=op.f("ck_credit_notes_total_positive")),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_credit_notes_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint(
            "tenant_id", "series", "number", name=op.f("uq_credit_notes_tenant_id_series_number")
        ),
    )
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_notes_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_credit_notes_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("per_quantity", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("tax_code", sa.String(length=16), nullable=False),
        sa.Column("tax_rate", sa.String(length=16), nullable=False),
        sa.Column("exemption", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "subtotal + tax = total", name=op.f("ck_invoice_lines_subtotal_plus_tax_is_total")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
        sa.UniqueConstraint("invoice_id", "meter", name=op.f("uq_invoice_lines_invoice_id_meter")),
    )
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_lines_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_invoice_lines_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "billing_refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("credit_note_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_billing_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_billing_refunds_credit_note_id_credit_notes"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_billing_refunds_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_refunds")),
    )
    with op.batch_alter_table("billing_refunds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_refunds_credit_note_id"), ["credit_note_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_refunds_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_refunds_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "credit_note_lines",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("credit_note_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_line_id", sa.Uuid(), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "subtotal + tax = total", name=op.f("ck_credit_note_lines_subtotal_plus_tax_is_total")
        ),
        sa.CheckConstraint(
            "subtotal >= 0 AND tax >= 0", name=op.f("ck_credit_note_lines_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_credit_note_lines_credit_note_id_credit_notes"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_credit_note_lines_invoice_line_id_invoice_lines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_note_lines")),
    )
    with op.batch_alter_table("credit_note_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_note_lines_credit_note_id"), ["credit_note_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_note_lines_invoice_line_id"), ["invoice_line_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_note_lines_tenant_id"), ["tenant_id"], unique=False
        )
    _create_guards()


def downgrade() -> None:
    _drop_guards()
    with op.batch_alter_table("credit_note_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_note_lines_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_credit_note_lines_invoice_line_id"))
        batch_op.drop_index(batch_op.f("ix_credit_note_lines_credit_note_id"))

    op.drop_table("credit_note_lines")
    with op.batch_alter_table("billing_refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_refunds_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_billing_refunds_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_billing_refunds_credit_note_id"))

    op.drop_table("billing_refunds")
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_lines_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_invoice_lines_invoice_id"))

    op.drop_table("invoice_lines")
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_notes_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_credit_notes_invoice_id"))

    op.drop_table("credit_notes")
    with op.batch_alter_table("billing_payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_payments_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_billing_payments_invoice_id"))

    op.drop_table("billing_payments")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_events_tenant_id_recorded_at")
        batch_op.drop_index("ix_usage_events_line_id_recorded_at")

    op.drop_table("usage_events")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoices_tenant_id"))
        batch_op.drop_index("ix_invoices_status_next_tax_attempt_at")

    op.drop_table("invoices")
    op.drop_table("billing_spend_caps")
    op.drop_table("billing_signing_keys")
    op.drop_table("billing_rollout")
    with op.batch_alter_table("billing_reconciliations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_reconciliations_tenant_id"))

    op.drop_table("billing_reconciliations")
    op.drop_table("billing_profiles")
    op.drop_table("billing_prices")
    with op.batch_alter_table("billing_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_ledger_tenant_id_recorded_at")
        batch_op.drop_index(batch_op.f("ix_billing_ledger_tenant_id"))

    op.drop_table("billing_ledger")
    op.drop_table("billing_idempotency")
    op.drop_table("billing_document_series")
    with op.batch_alter_table("billing_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_alerts_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_billing_alerts_raised_at"))

    op.drop_table("billing_alerts")
