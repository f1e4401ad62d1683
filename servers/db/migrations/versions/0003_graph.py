"""Tenant graphs: entities, relationships and graph revisions (analytics packs).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "graph_entities",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_graph_entities")),
    )
    op.create_table(
        "graph_relationships",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("target_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.CheckConstraint("weight > 0", name=op.f("ck_graph_relationships_weight_positive")),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_graph_relationships")),
    )
    op.create_table(
        "graph_revisions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("entities", sa.BigInteger(), nullable=False),
        sa.Column("relationships", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_graph_revisions")),
    )


def downgrade() -> None:
    op.drop_table("graph_revisions")
    op.drop_table("graph_relationships")
    op.drop_table("graph_entities")
