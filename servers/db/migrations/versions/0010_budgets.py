"""Billing cost budgets; Catalog budget links read from them (entities and scenarios).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_budgets",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("monthly_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("meters", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "monthly_amount >= 0", name=op.f("ck_billing_budgets_amount_not_negative")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_billing_budgets")),
    )
    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.alter_column(
            "budget_id",
            existing_type=sa.VARCHAR(length=256),
            type_=sa.String(length=63),
            existing_nullable=False,
        )
        batch_op.drop_column("budget_minor_units")
        batch_op.drop_column("budget_currency")

    with op.batch_alter_table("catalog_scenarios", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("budget_id", sa.String(length=63), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("budget_linked_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("catalog_scenarios", schema=None) as batch_op:
        batch_op.drop_column("budget_linked_at")
        batch_op.drop_column("budget_id")

    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("budget_currency", sa.VARCHAR(length=3), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("budget_minor_units", sa.BIGINT(), nullable=True))
        batch_op.alter_column(
            "budget_id",
            existing_type=sa.String(length=63),
            type_=sa.VARCHAR(length=256),
            existing_nullable=False,
        )

    op.drop_table("billing_budgets")
