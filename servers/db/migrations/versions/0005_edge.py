"""Edge cache: per-tenant byte caps (operators') and leak alarms (each tenant's).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edge_leak_alarms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("cache_key_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_leak_alarms")),
    )
    with op.batch_alter_table("edge_leak_alarms", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_edge_leak_alarms_occurred_at"), ["occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_edge_leak_alarms_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "edge_tenant_caps",
        sa.Column("tenant", sa.Uuid(), nullable=False),
        sa.Column("cap_bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_edge_tenant_caps")),
    )


def downgrade() -> None:
    op.drop_table("edge_tenant_caps")
    with op.batch_alter_table("edge_leak_alarms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edge_leak_alarms_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_edge_leak_alarms_occurred_at"))

    op.drop_table("edge_leak_alarms")
