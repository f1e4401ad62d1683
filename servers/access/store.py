"""Access storage: the tables and every query of the service, over the caller's session.

The tables: requests, reviews, grants, revocations, the audit chain, the outbox.
The queries are functions taking an `AsyncSession`; the use cases open the
sessions (one transaction per step), and nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Row,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.pagination import Page
from servers.db import ALL_TENANTS, Base, TenantScoped, after_position, new_id

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


# -- writes -----------------------------------------------------------------------------


async def add(session: AsyncSession, *rows: Base) -> None:
    """Insert `rows` now (flushed, so their ids and constraints are settled)."""
    session.add_all(rows)
    await session.flush()


async def flush(session: AsyncSession) -> None:
    """Write the changes made to loaded rows now, inside the transaction."""
    await session.flush()


def add_notifications(session: AsyncSession, rows: Iterable[NotificationRow]) -> None:
    """Put outbox rows in the transaction (written with its commit)."""
    session.add_all(list(rows))


# -- requests and reviews -----------------------------------------------------------------


async def request_for_update(
    session: AsyncSession, request_id: uuid.UUID
) -> AccessRequestRow | None:
    """The request, locked for the rest of the transaction, or None."""
    return await session.get(AccessRequestRow, request_id, with_for_update=True)


async def request_by_id(session: AsyncSession, request_id: uuid.UUID) -> AccessRequestRow | None:
    """The request (not locked), or None."""
    return await session.get(AccessRequestRow, request_id)


async def reviews_of(session: AsyncSession, request_id: uuid.UUID) -> list[ReviewRow]:
    """A request's reviews, oldest first."""
    return list(
        (
            await session.execute(
                select(ReviewRow)
                .where(ReviewRow.request_id == request_id)
                .order_by(ReviewRow.reviewed_at, ReviewRow.id)
            )
        ).scalars()
    )


async def has_reviewed(session: AsyncSession, request_id: uuid.UUID, reviewer: str) -> bool:
    """Whether `reviewer` already reviewed the request."""
    reviewed = await session.execute(
        select(ReviewRow.id).where(
            ReviewRow.request_id == request_id, ReviewRow.reviewer == reviewer
        )
    )
    return reviewed.first() is not None


async def page_of_requests(
    session: AsyncSession, page: Page, *, status: str, requester: str
) -> list[AccessRequestRow]:
    """Up to `page.size + 1` requests after the page's position, newest first."""
    query = select(AccessRequestRow)
    if status:
        query = query.where(AccessRequestRow.status == status)
    if requester:
        query = query.where(AccessRequestRow.requester == requester)
    keyset = (AccessRequestRow.created_at, AccessRequestRow.id)
    query = after_position(query, keyset, page.after, page.size + 1)
    return list((await session.execute(query)).scalars())


async def pending_requests_due(
    session: AsyncSession, now: datetime
) -> Sequence[Row[uuid.UUID, uuid.UUID]]:
    """(tenant, request id) of every pending request past `pending_until`, across tenants."""
    return (
        await session.execute(
            select(AccessRequestRow.tenant_id, AccessRequestRow.id)
            .where(AccessRequestRow.status == "pending", AccessRequestRow.pending_until <= now)
            .execution_options(**{ALL_TENANTS: True})
        )
    ).all()


# -- grants and revocations ---------------------------------------------------------------


async def grant_for_update(session: AsyncSession, grant_id: uuid.UUID) -> GrantRow | None:
    """The grant, locked for the rest of the transaction, or None."""
    return await session.get(GrantRow, grant_id, with_for_update=True)


async def grant_of(session: AsyncSession, request_id: uuid.UUID) -> GrantRow | None:
    """The grant a request produced, if any."""
    return (
        await session.execute(select(GrantRow).where(GrantRow.request_id == request_id))
    ).scalar_one_or_none()


async def page_of_grants(
    session: AsyncSession, page: Page, *, status: str, grantee: str
) -> list[GrantRow]:
    """Up to `page.size + 1` grants after the page's position, newest start first."""
    query = select(GrantRow)
    if status:
        query = query.where(GrantRow.status == status)
    if grantee:
        query = query.where(GrantRow.grantee == grantee)
    keyset = (GrantRow.starts_at, GrantRow.id)
    query = after_position(query, keyset, page.after, page.size + 1)
    return list((await session.execute(query)).scalars())


async def active_grants_due(
    session: AsyncSession, now: datetime
) -> Sequence[Row[uuid.UUID, uuid.UUID]]:
    """(tenant, grant id) of every active grant past its end, across tenants."""
    return (
        await session.execute(
            select(GrantRow.tenant_id, GrantRow.id)
            .where(GrantRow.status == "active", GrantRow.ends_at <= now)
            .execution_options(**{ALL_TENANTS: True})
        )
    ).all()


async def grant_counts(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """(grants in force, active grants past their end), across tenants."""
    active = await session.scalar(
        select(func.count())
        .select_from(GrantRow)
        .where(GrantRow.status == "active", GrantRow.ends_at > now)
        .execution_options(**{ALL_TENANTS: True})
    )
    overdue = await session.scalar(
        select(func.count())
        .select_from(GrantRow)
        .where(GrantRow.status == "active", GrantRow.ends_at <= now)
        .execution_options(**{ALL_TENANTS: True})
    )
    return active or 0, overdue or 0


async def live_revocations(session: AsyncSession, now: datetime) -> Sequence[Row[str, datetime]]:
    """(jti, expires_at) of every revocation not yet past its token's expiry, across tenants."""
    return (
        await session.execute(
            select(RevocationRow.jti, RevocationRow.expires_at)
            .where(RevocationRow.expires_at > now)
            .execution_options(**{ALL_TENANTS: True})
        )
    ).all()


# -- the audit chain ----------------------------------------------------------------------


def _chain_lock_key(tenant: uuid.UUID) -> int:
    return int.from_bytes(tenant.bytes[:8], "big", signed=True)


async def lock_audit_chain(session: AsyncSession, tenant: uuid.UUID) -> None:
    """Serialize appends to the tenant's chain until the transaction ends.

    An advisory transaction lock on PostgreSQL; SQLite's write lock does it there.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _chain_lock_key(tenant)}
        )


async def last_audit_link(session: AsyncSession) -> Row[int, str] | None:
    """(sequence, hash) of the session tenant's newest audit event, or None."""
    return (
        await session.execute(
            select(AuditEventRow.sequence, AuditEventRow.hash)
            .order_by(AuditEventRow.sequence.desc())
            .limit(1)
        )
    ).first()


async def audit_chain(session: AsyncSession) -> list[AuditEventRow]:
    """The session tenant's whole chain, in sequence order."""
    return list(
        (await session.execute(select(AuditEventRow).order_by(AuditEventRow.sequence))).scalars()
    )


async def stream_audit_chain(session: AsyncSession) -> AsyncIterator[AuditEventRow]:
    """The session tenant's whole chain, in sequence order, streamed."""
    events = await session.stream_scalars(select(AuditEventRow).order_by(AuditEventRow.sequence))
    async for row in events:
        yield row


async def page_of_audit_events(
    session: AsyncSession,
    page: Page,
    *,
    action: str,
    actor: str,
    resource_id: str,
    since: datetime | None,
    until: datetime | None,
) -> list[AuditEventRow]:
    """Up to `page.size + 1` audit events after the page's position, in chain order."""
    query = select(AuditEventRow)
    if action:
        query = query.where(AuditEventRow.action == action)
    if actor:
        query = query.where(AuditEventRow.actor == actor)
    if resource_id:
        query = query.where(AuditEventRow.resource_id == resource_id)
    if since is not None:
        query = query.where(AuditEventRow.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEventRow.occurred_at < until)
    keyset = (AuditEventRow.sequence,)
    query = after_position(query, keyset, page.after, page.size + 1, descending=False)
    return list((await session.execute(query)).scalars())


# -- the outbox ---------------------------------------------------------------------------


async def notifications_due(
    session: AsyncSession, now: datetime, *, max_attempts: int, limit: int
) -> list[NotificationRow]:
    """Undelivered outbox rows due by `now` with attempts left, oldest due first, across tenants."""
    return list(
        (
            await session.execute(
                select(NotificationRow)
                .where(
                    NotificationRow.delivered_at.is_(None),
                    NotificationRow.next_attempt_at <= now,
                    NotificationRow.attempts < max_attempts,
                )
                .order_by(NotificationRow.next_attempt_at)
                .limit(limit)
                .execution_options(**{ALL_TENANTS: True})
            )
        ).scalars()
    )


async def update_notification(
    session: AsyncSession, notification_id: uuid.UUID, changes: Mapping[str, object]
) -> None:
    """Record a delivery attempt's outcome on an outbox row (whatever its tenant)."""
    await session.execute(
        update(NotificationRow)
        .where(NotificationRow.id == notification_id)
        .values(**changes)
        .execution_options(**{ALL_TENANTS: True})
    )
