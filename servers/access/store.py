"""Access tables: requests, reviews, grants, revocations, the audit chain, the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from servers.db import Base, TenantScoped, new_id

#: Scopes: `TEXT[]` on PostgreSQL (as in the seed), JSON on SQLite.
ScopeList = JSON().with_variant(postgresql.ARRAY(Text()), "postgresql")

REQUEST_STATUSES = ("pending", "approved", "denied", "expired")
GRANT_STATUSES = ("active", "expired", "revoked")


class AccessRequestRow(TenantScoped, Base):
    """A request for scopes until a time (the seed's `access_requests`)."""

    __tablename__ = "access_requests"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'expired')", name="status_known"
        ),
        Index("ix_access_requests_status_pending_until", "status", "pending_until"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    requester: Mapped[str] = mapped_column(Text)
    scope: Mapped[list[str]] = mapped_column(ScopeList)
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    approvals_required: Mapped[int] = mapped_column(default=1)
    #: The longest grant the policy allows for these scopes, in seconds.
    max_duration_s: Mapped[int]
    pending_until: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class ReviewRow(TenantScoped, Base):
    """One approver's decision on a request."""

    __tablename__ = "access_reviews"
    __table_args__ = (
        UniqueConstraint("request_id", "reviewer"),
        CheckConstraint("decision IN ('approve', 'deny')", name="decision_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("access_requests.id"), index=True)
    reviewer: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(String(8))
    grant_ends_at: Mapped[datetime | None]
    comment: Mapped[str] = mapped_column(Text, default="")
    reviewed_at: Mapped[datetime]


class GrantRow(TenantScoped, Base):
    """Scopes granted to a subject until `ends_at`; the JIT token's `exp` equals it."""

    __tablename__ = "access_grants"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'expired', 'revoked')", name="status_known"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_access_grants_status_ends_at", "status", "ends_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("access_requests.id"), unique=True)
    grantee: Mapped[str] = mapped_column(Text, index=True)
    scope: Mapped[list[str]] = mapped_column(ScopeList)
    status: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    claimed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(Text)
    #: When the expiry task recorded the end (distinct from revocation).
    expired_at: Mapped[datetime | None]


class RevocationRow(TenantScoped, Base):
    """A revoked token id, shared by every replica until the token would have expired."""

    __tablename__ = "token_revocations"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[uuid.UUID | None]
    revoked_at: Mapped[datetime]
    #: The token's `exp`: after it the entry is useless and may go.
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_by: Mapped[str] = mapped_column(Text)


class AuditEventRow(TenantScoped, Base):
    """An append-only, hash-chained audit record (updates and deletes are refused by triggers)."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("tenant_id", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    sequence: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(Text)
    resource_id: Mapped[str] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime]
    attributes: Mapped[dict[str, str]] = mapped_column(JSON)
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class NotificationRow(TenantScoped, Base):
    """An outbox entry: delivered to the webhooks by a background task, with retries."""

    __tablename__ = "access_notifications"
    __table_args__ = (Index("ix_access_notifications_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    #: Whom it concerns: a subject, or "approvers".
    recipient: Mapped[str] = mapped_column(Text)
    #: The webhook it goes to (one row per configured webhook).
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
