"""The access workflow: request → review (approve/deny) → grant → claim → revoke or expire.

Every step is one transaction that writes the state change, its audit events
and its notifications together, so a crash leaves either all of them or none:
no grant without its audit record; and a JIT token is only ever produced from
an existing grant (it is minted deterministically from the grant, with `exp`
equal to the grant's end, when the grantee claims it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import (
    ErrorReason,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from core.pagination import Page
from interceptors.policy import MethodFacts
from interceptors.tokens import Principal, mint
from servers.access import metrics
from servers.access.audit import append_audit, verify_audit_chain
from servers.access.domain import (
    REQUEST_DECISION,
    REVIEW_DECISION,
    ChainCheck,
    grant_end,
    whole_seconds,
)
from servers.access.revocation import RevocationFeed
from servers.access.store import (
    AccessRequestRow,
    AuditEventRow,
    GrantRow,
    NotificationRow,
    ReviewRow,
    RevocationRow,
)
from servers.db import ALL_TENANTS
from servers.runtime import Runtime

#: What approvers are checked against: holding admin.write (and the scope's approver set).
APPROVER = MethodFacts("intelgraph.access.v1.AccessService", "Review", "admin.write")


@dataclass(frozen=True)
class Claimed:
    """A claimed grant and its JIT token."""

    grant: GrantRow
    token: str


@dataclass(frozen=True)
class Listed:
    """One page of rows and the token of the next."""

    rows: Sequence[Any]
    next_page_token: str


#: What an expiry changes, for the edge cache (the resource types of the contract).
_EXPIRY_TOUCHES = (
    "intelgraph.access.v1.Grant",
    "intelgraph.access.v1.AccessRequest",
    "intelgraph.access.v1.AuditEvent",
)


class AccessWorkflow:
    """The access requests and JIT grants of every tenant, one transaction per step."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._db = runtime.database
        self._engine = runtime.engine
        feed = runtime.component(RevocationFeed)
        if feed is None:
            raise RuntimeError("the access workflow needs the runtime's revocation feed")
        self._revocations = feed

    def _now(self) -> datetime:
        return self._runtime.clock()

    async def is_approver(self, principal: Principal) -> bool:
        """Whether the caller holds admin.write (needed to review and to see every request)."""
        decision = await self._engine.decision(principal.facts, APPROVER, {}, int(time.time()))
        return decision.allow

    # -- requests -----------------------------------------------------------------

    async def request_access(
        self, principal: Principal, scope: Sequence[str], expires_at: datetime, reason: str
    ) -> AccessRequestRow:
        """Ask for `scope` until `expires_at`; the policy decides what may be asked for."""
        now = self._now()
        requested = sorted({item.strip() for item in scope if item.strip()})
        if expires_at <= now:
            raise InvalidArgument("expires_at must be in the future", field="expires_at")
        verdict = await self._engine.query(
            REQUEST_DECISION,
            {
                "subject": principal.subject,
                "tenant": principal.tenant_id,
                "scopes": list(principal.scopes),
                "requested": requested,
                "reason": reason.strip(),
            },
        )
        denials = set(verdict["deny"])
        if "no_scope_requested" in denials:
            raise InvalidArgument("request at least one scope", field="scope")
        if "scope_not_requestable" in denials:
            raise PermissionDenied(
                "the policy does not let you request these scopes",
                reason=ErrorReason.ERROR_REASON_SCOPE_NOT_REQUESTABLE,
                metadata={"scope": ",".join(requested)},
            )
        if "reason_required" in denials:
            raise InvalidArgument(
                "the policy requires a reason for these scopes",
                field="reason",
                reason=ErrorReason.ERROR_REASON_REASON_REQUIRED,
            )
        async with self._db.tenant_session(principal.tenant) as session:
            row = AccessRequestRow(
                requester=principal.subject,
                scope=requested,
                status="pending",
                expires_at=expires_at,
                created_at=now,
                reason=reason.strip(),
                approvals_required=int(verdict["approvals_required"]),
                max_duration_s=int(verdict["max_duration_s"]),
                pending_until=now + timedelta(seconds=self._settings.access_pending_ttl),
            )
            session.add(row)
            await session.flush()
            await append_audit(
                session,
                tenant=principal.tenant,
                action="request",
                actor=principal.subject,
                resource_id=str(row.id),
                at=now,
                attributes={"scope": ",".join(requested), "expires_at": expires_at.isoformat()},
            )
            _notify(session, self._settings.webhook_urls, "request_pending", "approvers", row, now)
        return row

    async def get_request(
        self, principal: Principal, request_id: str
    ) -> tuple[AccessRequestRow, list[ReviewRow], GrantRow | None]:
        """A request with its reviews and grant; requesters see their own, approvers all."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            row = await _request(session, request_id)
            if row.requester != principal.subject and not await self.is_approver(principal):
                raise _request_not_found(request_id)
            return row, await _reviews(session, row.id), await _grant_of(session, row.id)

    async def list_requests(
        self, principal: Principal, page: Page, status: str, requester: str
    ) -> Listed:
        """The tenant's requests, newest first (approvers only: the RPC needs admin.write)."""
        query = select(AccessRequestRow)
        if status:
            query = query.where(AccessRequestRow.status == status)
        if requester:
            query = query.where(AccessRequestRow.requester == requester)
        return await self._page(principal, query, AccessRequestRow, page)

    async def _page(self, principal: Principal, query: Any, model: Any, page: Page) -> Listed:
        if page.after is not None:
            created, identifier = page.after
            query = query.where(
                (model.created_at < created)
                | ((model.created_at == created) & (model.id < identifier))
            )
        query = query.order_by(model.created_at.desc(), model.id.desc()).limit(page.size + 1)
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = list((await session.execute(query)).scalars())
        token = page.next_token(rows, lambda row: (row.created_at, row.id))
        return Listed(rows[: page.size], token)

    # -- reviews ------------------------------------------------------------------

    async def approve(
        self, principal: Principal, request_id: str, grant_ends_at: datetime | None, comment: str
    ) -> tuple[AccessRequestRow, list[ReviewRow], GrantRow | None]:
        """Record an approval; the approval that meets the threshold creates the grant."""
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            row = await self._reviewable(session, principal, request_id, now)
            if grant_ends_at is not None and not now < grant_ends_at <= row.expires_at:
                raise InvalidArgument(
                    "grant_ends_at may shorten the grant, never lengthen it or end it in the past",
                    field="grant_ends_at",
                    reason=ErrorReason.ERROR_REASON_GRANT_END_INVALID,
                )
            session.add(
                ReviewRow(
                    request_id=row.id,
                    reviewer=principal.subject,
                    decision="approve",
                    grant_ends_at=grant_ends_at,
                    comment=comment,
                    reviewed_at=now,
                )
            )
            await session.flush()
            await append_audit(
                session,
                tenant=principal.tenant,
                action="review",
                actor=principal.subject,
                resource_id=str(row.id),
                at=now,
                attributes={"decision": "approve"},
            )
            reviews = await _reviews(session, row.id)
            approvals = [review for review in reviews if review.decision == "approve"]
            grant = None
            if len(approvals) >= row.approvals_required:
                grant = await self._grant(session, principal, row, approvals, now)
            return row, reviews, grant

    async def _grant(
        self,
        session: AsyncSession,
        principal: Principal,
        row: AccessRequestRow,
        approvals: Sequence[ReviewRow],
        now: datetime,
    ) -> GrantRow:
        starts = whole_seconds(now)
        ends = grant_end(
            starts,
            row.expires_at,
            row.max_duration_s,
            [review.grant_ends_at for review in approvals],
        )
        if ends <= starts:
            raise FailedPrecondition(
                "the requested end has passed; request again",
                reason=ErrorReason.ERROR_REASON_REQUEST_NOT_PENDING,
            )
        grant = GrantRow(
            request_id=row.id,
            grantee=row.requester,
            scope=list(row.scope),
            status="active",
            starts_at=starts,
            ends_at=ends,
            jti=uuid.uuid4().hex,
        )
        session.add(grant)
        row.status, row.decided_at = "approved", now
        await session.flush()
        await append_audit(
            session,
            tenant=principal.tenant,
            action="approve",
            actor=principal.subject,
            resource_id=str(row.id),
            at=now,
            attributes={"grant_id": str(grant.id), "ends_at": ends.isoformat()},
        )
        await append_audit(
            session,
            tenant=principal.tenant,
            action="mint",
            actor="system",
            resource_id=str(grant.id),
            at=now,
            attributes={
                "jti": grant.jti,
                "exp": str(int(ends.timestamp())),
                "scope": ",".join(grant.scope),
            },
        )
        _notify(
            session,
            self._settings.webhook_urls,
            "request_approved",
            row.requester,
            row,
            now,
            grant=grant,
        )
        lead = timedelta(seconds=self._settings.access_reminder_lead)
        if ends - lead > now:
            _notify(
                session,
                self._settings.webhook_urls,
                "grant_expiring",
                row.requester,
                row,
                ends - lead,
                grant=grant,
            )
        metrics.GRANT_DECISION_SECONDS.observe((now - row.created_at).total_seconds())
        return grant

    async def deny(
        self, principal: Principal, request_id: str, comment: str
    ) -> tuple[AccessRequestRow, list[ReviewRow]]:
        """Deny a pending request (one denial is enough)."""
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            row = await self._reviewable(session, principal, request_id, now)
            session.add(
                ReviewRow(
                    request_id=row.id,
                    reviewer=principal.subject,
                    decision="deny",
                    comment=comment,
                    reviewed_at=now,
                )
            )
            row.status, row.decided_at = "denied", now
            await session.flush()
            for action in ("review", "deny"):
                await append_audit(
                    session,
                    tenant=principal.tenant,
                    action=action,
                    actor=principal.subject,
                    resource_id=str(row.id),
                    at=now,
                    attributes={"decision": "deny"},
                )
            _notify(session, self._settings.webhook_urls, "request_denied", row.requester, row, now)
            metrics.GRANT_DECISION_SECONDS.observe((now - row.created_at).total_seconds())
            return row, await _reviews(session, row.id)

    async def _reviewable(
        self, session: AsyncSession, principal: Principal, request_id: str, now: datetime
    ) -> AccessRequestRow:
        row = await _request(session, request_id)
        verdict = await self._engine.query(
            REVIEW_DECISION,
            {
                "subject": principal.subject,
                "scopes": list(principal.scopes),
                "requester": row.requester,
                "requested": list(row.scope),
            },
        )
        denials = set(verdict["deny"])
        if "self_approval" in denials:
            raise PermissionDenied(
                "requesters never review their own requests",
                reason=ErrorReason.ERROR_REASON_SELF_APPROVAL,
            )
        if "not_an_approver" in denials:
            raise PermissionDenied(
                "you are not an approver of these scopes",
                reason=ErrorReason.ERROR_REASON_NOT_AN_APPROVER,
            )
        if row.status != "pending" or row.pending_until <= now:
            raise FailedPrecondition(
                f"the access request is {row.status if row.status != 'pending' else 'expired'}",
                reason=ErrorReason.ERROR_REASON_REQUEST_NOT_PENDING,
            )
        reviewed = await session.execute(
            select(ReviewRow.id).where(
                ReviewRow.request_id == row.id, ReviewRow.reviewer == principal.subject
            )
        )
        if reviewed.first() is not None:
            raise FailedPrecondition(
                "you already reviewed this request",
                reason=ErrorReason.ERROR_REASON_ALREADY_REVIEWED,
            )
        return row

    # -- grants -------------------------------------------------------------------

    async def claim(self, principal: Principal, grant_id: str) -> Claimed:
        """The JIT token of a grant; only its grantee gets an answer."""
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            grant = await _grant(session, grant_id)
            if grant.grantee != principal.subject:
                raise _grant_not_found(grant_id)
            if grant.status != "active" or grant.ends_at <= now:
                raise FailedPrecondition(
                    f"the grant is {grant.status if grant.status != 'active' else 'over'}",
                    reason=ErrorReason.ERROR_REASON_GRANT_NOT_ACTIVE,
                )
            token = mint(
                self._runtime.keys.ring(),
                issuer=self._settings.token_issuer,
                audience=self._settings.token_audience,
                subject=grant.grantee,
                tenant=principal.tenant,
                scopes=grant.scope,
                ttl_s=int((grant.ends_at - grant.starts_at).total_seconds()),
                jit=True,
                now=grant.starts_at.timestamp(),
                token_id=grant.jti,
            )
            grant.claimed_at = grant.claimed_at or now
            await append_audit(
                session,
                tenant=principal.tenant,
                action="claim",
                actor=principal.subject,
                resource_id=str(grant.id),
                at=now,
                attributes={"jti": grant.jti},
            )
            return Claimed(grant, token)

    async def revoke(self, principal: Principal, grant_id: str, reason: str) -> GrantRow:
        """End a grant at once; allowed to its grantee and to approvers."""
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            grant = await _grant(session, grant_id)
            if grant.grantee != principal.subject and not await self.is_approver(principal):
                raise _grant_not_found(grant_id)
            if grant.status != "active" or grant.ends_at <= now:
                raise FailedPrecondition(
                    f"the grant is {grant.status if grant.status != 'active' else 'over'}",
                    reason=ErrorReason.ERROR_REASON_GRANT_NOT_ACTIVE,
                )
            grant.status, grant.revoked_at, grant.revoked_by = "revoked", now, principal.subject
            session.add(
                RevocationRow(
                    jti=grant.jti,
                    grant_id=grant.id,
                    revoked_at=now,
                    expires_at=grant.ends_at,
                    revoked_by=principal.subject,
                )
            )
            await session.flush()
            await append_audit(
                session,
                tenant=principal.tenant,
                action="revoke",
                actor=principal.subject,
                resource_id=str(grant.id),
                at=now,
                attributes={"jti": grant.jti, "reason": reason},
            )
            request = await session.get(AccessRequestRow, grant.request_id)
            if request is not None:
                _notify(
                    session,
                    self._settings.webhook_urls,
                    "grant_revoked",
                    grant.grantee,
                    request,
                    now,
                    grant=grant,
                )
        metrics.REVOCATIONS.inc()
        await self._revocations.announce(grant.jti, grant.ends_at)
        return grant

    async def list_grants(
        self, principal: Principal, page: Page, status: str, grantee: str
    ) -> Listed:
        """Grants the caller may see: their own, or all for approvers."""
        query = select(GrantRow)
        if not await self.is_approver(principal):
            grantee = principal.subject
        if status:
            query = query.where(GrantRow.status == status)
        if grantee:
            query = query.where(GrantRow.grantee == grantee)
        if page.after is not None:
            starts, identifier = page.after
            query = query.where(
                (GrantRow.starts_at < starts)
                | ((GrantRow.starts_at == starts) & (GrantRow.id < identifier))
            )
        query = query.order_by(GrantRow.starts_at.desc(), GrantRow.id.desc()).limit(page.size + 1)
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = list((await session.execute(query)).scalars())
        token = page.next_token(rows, lambda row: (row.starts_at, row.id))
        return Listed(rows[: page.size], token)

    # -- expiry (a background job) ---------------------------------------------------

    async def expire_due(self) -> int:
        """Record every grant past its end as expired and every stale pending request.

        Catches up on any backlog (the job may have been stopped); returns how many
        it recorded. Expiry is recorded distinctly from revocation.
        """
        now = self._now()
        async with self._db.platform_session(readonly=True) as session:
            due_grants = (
                await session.execute(
                    select(GrantRow.tenant_id, GrantRow.id)
                    .where(GrantRow.status == "active", GrantRow.ends_at <= now)
                    .execution_options(**{ALL_TENANTS: True})
                )
            ).all()
            due_requests = (
                await session.execute(
                    select(AccessRequestRow.tenant_id, AccessRequestRow.id)
                    .where(
                        AccessRequestRow.status == "pending", AccessRequestRow.pending_until <= now
                    )
                    .execution_options(**{ALL_TENANTS: True})
                )
            ).all()
        for tenant, grant_id in due_grants:
            async with self._db.tenant_session(tenant) as session:
                grant = await session.get(GrantRow, grant_id, with_for_update=True)
                if grant is None or grant.status != "active":
                    continue
                grant.status, grant.expired_at = "expired", now
                await append_audit(
                    session,
                    tenant=tenant,
                    action="expire",
                    actor="system",
                    resource_id=str(grant.id),
                    at=now,
                    attributes={"jti": grant.jti, "ends_at": grant.ends_at.isoformat()},
                )
            metrics.EXPIRIES.inc()
            await self._runtime.changed(tenant, *_EXPIRY_TOUCHES)
        for tenant, request_id in due_requests:
            async with self._db.tenant_session(tenant) as session:
                request = await session.get(AccessRequestRow, request_id, with_for_update=True)
                if request is None or request.status != "pending":
                    continue
                request.status, request.decided_at = "expired", now
                await append_audit(
                    session,
                    tenant=tenant,
                    action="expire",
                    actor="system",
                    resource_id=str(request.id),
                    at=now,
                    attributes={"pending_until": request.pending_until.isoformat()},
                )
                _notify(
                    session,
                    self._settings.webhook_urls,
                    "request_expired",
                    request.requester,
                    request,
                    now,
                )
            await self._runtime.changed(tenant, *_EXPIRY_TOUCHES)
        return len(due_grants) + len(due_requests)

    async def observe_grants(self) -> None:
        """Refresh the grant gauges: active grants, and grants past their end not yet expired."""
        now = self._now()
        async with self._db.platform_session(readonly=True) as session:
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
        metrics.GRANTS_ACTIVE.set(active or 0)
        metrics.GRANTS_OVERDUE.set(overdue or 0)

    # -- audit --------------------------------------------------------------------

    async def audit_events(
        self,
        principal: Principal,
        page: Page,
        *,
        action: str,
        actor: str,
        resource_id: str,
        since: datetime | None,
        until: datetime | None,
    ) -> Listed:
        """A page of the tenant's audit events, in chain order."""
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
        if page.after is not None:
            query = query.where(AuditEventRow.sequence > page.after[0])
        query = query.order_by(AuditEventRow.sequence).limit(page.size + 1)
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = list((await session.execute(query)).scalars())
        return Listed(rows[: page.size], page.next_token(rows, lambda row: (row.sequence,)))

    async def verify_chain(self, principal: Principal) -> ChainCheck:
        """Recompute the caller's tenant's audit chain."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            return await verify_audit_chain(session)


def _notify(  # noqa: PLR0917 - a record's fields
    session: AsyncSession,
    urls: Sequence[str],
    kind: str,
    recipient: str,
    request: AccessRequestRow,
    deliver_at: datetime,
    *,
    grant: GrantRow | None = None,
) -> None:
    """Put a notification in the outbox, once per configured webhook."""
    payload: dict[str, Any] = {
        "kind": kind,
        "tenant_id": str(request.tenant_id),
        "access_request_id": str(request.id),
        "requester": request.requester,
        "scope": list(request.scope),
        "status": request.status,
    }
    if grant is not None:
        payload |= {"grant_id": str(grant.id), "grant_ends_at": grant.ends_at.isoformat()}
    for url in urls:
        session.add(
            NotificationRow(
                kind=kind,
                recipient=recipient,
                url=url,
                payload=payload,
                created_at=deliver_at,
                next_attempt_at=deliver_at,
            )
        )


def _parse_id(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} is not a UUID", field=field) from None


def _request_not_found(request_id: str) -> NotFound:
    return NotFound(f"access request {request_id} not found")


def _grant_not_found(grant_id: str) -> NotFound:
    return NotFound(f"grant {grant_id} not found")


async def _request(session: AsyncSession, request_id: str) -> AccessRequestRow:
    row = await session.get(AccessRequestRow, _parse_id(request_id, "id"), with_for_update=True)
    if row is None:
        raise _request_not_found(request_id)
    return row


async def _grant(session: AsyncSession, grant_id: str) -> GrantRow:
    row = await session.get(GrantRow, _parse_id(grant_id, "grant_id"), with_for_update=True)
    if row is None:
        raise _grant_not_found(grant_id)
    return row


async def _reviews(session: AsyncSession, request_id: uuid.UUID) -> list[ReviewRow]:
    return list(
        (
            await session.execute(
                select(ReviewRow)
                .where(ReviewRow.request_id == request_id)
                .order_by(ReviewRow.reviewed_at, ReviewRow.id)
            )
        ).scalars()
    )


async def _grant_of(session: AsyncSession, request_id: uuid.UUID) -> GrantRow | None:
    return (
        await session.execute(select(GrantRow).where(GrantRow.request_id == request_id))
    ).scalar_one_or_none()
