"""Access requests, reviews, grants, token revocations, the audit chain, the notification outbox.

The audit table is append-only in the store itself: triggers refuse UPDATE and
DELETE on both backends (the hash chain still detects edits made around them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_notifications")),
    )
    with op.batch_alter_table("access_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_access_notifications_due", ["delivered_at", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_access_notifications_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "access_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column(
            "scope",
            sa.JSON().with_variant(postgresql.ARRAY(sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("max_duration_s", sa.Integer(), nullable=False),
        sa.Column("pending_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'expired')",
            name=op.f("ck_access_requests_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_requests")),
    )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_access_requests_status_pending_until", ["status", "pending_until"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_access_requests_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("previous_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint(
            "tenant_id", "sequence", name=op.f("uq_audit_events_tenant_id_sequence")
        ),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_events_resource_id"), ["resource_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_events_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "token_revocations",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_token_revocations")),
    )
    with op.batch_alter_table("token_revocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_token_revocations_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_token_revocations_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "access_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("grantee", sa.Text(), nullable=False),
        sa.Column(
            "scope",
            sa.JSON().with_variant(postgresql.ARRAY(sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'expired', 'revoked')", name=op.f("ck_access_grants_status_known")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_access_grants_ends_after_start")),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_access_grants_request_id_access_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grants")),
        sa.UniqueConstraint("jti", name=op.f("uq_access_grants_jti")),
        sa.UniqueConstraint("request_id", name=op.f("uq_access_grants_request_id")),
    )
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_grants_grantee"), ["grantee"], unique=False)
        batch_op.create_index(
            "ix_access_grants_status_ends_at", ["status", "ends_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_access_grants_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "access_reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("grant_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('approve', 'deny')", name=op.f("ck_access_reviews_decision_known")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_access_reviews_request_id_access_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_reviews")),
        sa.UniqueConstraint(
            "request_id", "reviewer", name=op.f("uq_access_reviews_request_id_reviewer")
        ),
    )
    with op.batch_alter_table("access_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_access_reviews_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_access_reviews_tenant_id"), ["tenant_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{event.lower()} BEFORE {event} ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER audit_events_no_{event}")
    with op.batch_alter_table("access_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_reviews_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_access_reviews_request_id"))

    op.drop_table("access_reviews")
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_grants_tenant_id"))
        batch_op.drop_index("ix_access_grants_status_ends_at")
        batch_op.drop_index(batch_op.f("ix_access_grants_grantee"))

    op.drop_table("access_grants")
    with op.batch_alter_table("token_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_revocations_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_token_revocations_expires_at"))

    op.drop_table("token_revocations")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_resource_id"))

    op.drop_table("audit_events")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_requests_tenant_id"))
        batch_op.drop_index("ix_access_requests_status_pending_until")

    op.drop_table("access_requests")
    with op.batch_alter_table("access_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_notifications_tenant_id"))
        batch_op.drop_index("ix_access_notifications_due")

    op.drop_table("access_notifications")
