"""Whole-graph analytics results per graph revision, and the queue of their computations.

Graphs imported before this revision get their current revision queued, so
their results are computed once a server runs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "graph_materializations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expected_ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("relationships_imported", sa.BigInteger(), nullable=False),
        sa.Column("warm_started", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "revision", name=op.f("pk_graph_materializations")),
    )
    with op.batch_alter_table("graph_materializations", schema=None) as batch_op:
        batch_op.create_index("ix_graph_materializations_state", ["state"], unique=False)

    op.execute(
        "INSERT INTO graph_materializations (tenant_id, revision, state, requested_at,"
        " attempts, detail, relationships_imported, warm_started)"
        " SELECT tenant_id, revision, 'pending', updated_at, 0, '', relationships, false"
        " FROM graph_revisions"
    )
    op.create_table(
        "graph_results",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("pack_id", sa.String(length=64), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "revision", "pack_id", name=op.f("pk_graph_results")),
    )


def downgrade() -> None:
    op.drop_table("graph_results")
    with op.batch_alter_table("graph_materializations", schema=None) as batch_op:
        batch_op.drop_index("ix_graph_materializations_state")

    op.drop_table("graph_materializations")
