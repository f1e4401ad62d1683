"""Catalog: entities with their tags and dependency edges, SLO events per minute, scenarios.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_entities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("system", sa.String(length=63), nullable=False),
        sa.Column("dependencies", sa.JSON(), nullable=False),
        sa.Column("slos", sa.JSON(), nullable=False),
        sa.Column("expected_availability", sa.Float(), nullable=True),
        sa.Column("requests_per_second", sa.Float(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("budget_id", sa.String(length=256), nullable=False),
        sa.Column("budget_minor_units", sa.BigInteger(), nullable=True),
        sa.Column("budget_currency", sa.String(length=3), nullable=False),
        sa.Column("budget_linked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("etag", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('component', 'api', 'resource', 'system')",
            name=op.f("ck_catalog_entities_kind_known"),
        ),
        sa.CheckConstraint(
            "lifecycle IN ('experimental', 'production', 'deprecated')",
            name=op.f("ck_catalog_entities_lifecycle_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_entities")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_catalog_entities_tenant_id_name")),
    )
    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_entities_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "ix_catalog_entities_tenant_id_owner", ["tenant_id", "owner"], unique=False
        )

    op.create_table(
        "catalog_scenarios",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_catalog_scenarios")),
    )
    with op.batch_alter_table("catalog_scenarios", schema=None) as batch_op:
        batch_op.create_index(
            "ix_catalog_scenarios_tenant_id_created_at",
            ["tenant_id", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "catalog_edges",
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_edges_source_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_edges_target_id_catalog_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("source_id", "target_id", name=op.f("pk_catalog_edges")),
    )
    with op.batch_alter_table("catalog_edges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catalog_edges_target_id"), ["target_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_catalog_edges_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "catalog_slo_minutes",
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("slo", sa.String(length=63), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("good", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "good >= 0 AND good <= total", name=op.f("ck_catalog_slo_minutes_counts_consistent")
        ),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_slo_minutes_entity_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entity_id", "slo", "minute", name=op.f("pk_catalog_slo_minutes")),
    )
    with op.batch_alter_table("catalog_slo_minutes", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_slo_minutes_minute", ["minute"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_catalog_slo_minutes_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "catalog_tags",
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=63), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_tags_entity_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entity_id", "tag", name=op.f("pk_catalog_tags")),
    )
    with op.batch_alter_table("catalog_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catalog_tags_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_catalog_tags_tenant_id_tag", ["tenant_id", "tag"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("catalog_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_tags_tenant_id_tag")
        batch_op.drop_index(batch_op.f("ix_catalog_tags_tenant_id"))

    op.drop_table("catalog_tags")
    with op.batch_alter_table("catalog_slo_minutes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_slo_minutes_tenant_id"))
        batch_op.drop_index("ix_catalog_slo_minutes_minute")

    op.drop_table("catalog_slo_minutes")
    with op.batch_alter_table("catalog_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_edges_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_catalog_edges_target_id"))

    op.drop_table("catalog_edges")
    with op.batch_alter_table("catalog_scenarios", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_scenarios_tenant_id_created_at")

    op.drop_table("catalog_scenarios")
    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_entities_tenant_id_owner")
        batch_op.drop_index(batch_op.f("ix_catalog_entities_tenant_id"))

    op.drop_table("catalog_entities")
