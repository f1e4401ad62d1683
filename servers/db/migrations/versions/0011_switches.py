"""Backout switches: each switch's value, and every change to it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_switch_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.String(length=256), nullable=False),
        sa.Column("new_value", sa.String(length=256), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_switch_changes")),
    )
    with op.batch_alter_table("platform_switch_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_platform_switch_changes_name"), ["name"], unique=False)

    op.create_table(
        "platform_switches",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_platform_switches")),
    )


def downgrade() -> None:
    op.drop_table("platform_switches")
    with op.batch_alter_table("platform_switch_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_switch_changes_name"))

    op.drop_table("platform_switch_changes")
