"""The billing rollout's history: every stage change with who, when and why.

Tenants enrolled before this revision get one change each, from their current
row (their stage, its time and actor), marked as recorded by this migration.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    changes = op.create_table(
        "billing_rollout_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.Uuid(), nullable=False),
        sa.Column("from_stage", sa.String(length=8), nullable=False),
        sa.Column("to_stage", sa.String(length=8), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("backout", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_rollout_changes")),
    )
    with op.batch_alter_table("billing_rollout_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_rollout_changes_changed_at"), ["changed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_rollout_changes_tenant"), ["tenant"], unique=False
        )
    rollout = sa.table(
        "billing_rollout",
        sa.column("tenant", sa.Uuid()),
        sa.column("stage", sa.String()),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("updated_by", sa.Text()),
    )
    rows = op.get_bind().execute(sa.select(rollout)).all()
    if rows:
        op.bulk_insert(
            changes,
            [
                {
                    "id": uuid.uuid4(),
                    "tenant": row.tenant,
                    "from_stage": "",
                    "to_stage": row.stage,
                    "changed_at": row.updated_at,
                    "changed_by": row.updated_by,
                    "reason": "stage before the rollout history was kept (migration 0013)",
                    "backout": False,
                }
                for row in rows
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_rollout_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_rollout_changes_tenant"))
        batch_op.drop_index(batch_op.f("ix_billing_rollout_changes_changed_at"))
    op.drop_table("billing_rollout_changes")
