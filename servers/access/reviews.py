"""Reviewing a request: approve (the approval that meets the threshold grants) or deny."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument, PermissionDenied
from interceptors.tokens import Principal
from servers.access import metrics, store
from servers.access.audit import append_audit
from servers.access.domain import REVIEW_DECISION, grant_end, whole_seconds
from servers.access.steps import Step, locked_request
from servers.access.store import AccessRequestRow, GrantRow, ReviewRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


class Reviews(Step):
    """Approvers' decisions on pending requests, and the grants they create."""

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
            await store.add(
                session,
                ReviewRow(
                    request_id=row.id,
                    reviewer=principal.subject,
                    decision="approve",
                    grant_ends_at=grant_ends_at,
                    comment=comment,
                    reviewed_at=now,
                ),
            )
            await append_audit(
                session,
                tenant=principal.tenant,
                action="review",
                actor=principal.subject,
                resource_id=str(row.id),
                at=now,
                attributes={"decision": "approve"},
            )
            reviews = await store.reviews_of(session, row.id)
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
        row.status, row.decided_at = "approved", now
        await store.add(session, grant)
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
        self._notify(session, "request_approved", row.requester, row, now, grant=grant)
        lead = timedelta(seconds=self._settings.access_reminder_lead)
        if ends - lead > now:
            self._notify(session, "grant_expiring", row.requester, row, ends - lead, grant=grant)
        metrics.GRANT_DECISION_SECONDS.observe((now - row.created_at).total_seconds())
        return grant

    async def deny(
        self, principal: Principal, request_id: str, comment: str
    ) -> tuple[AccessRequestRow, list[ReviewRow]]:
        """Deny a pending request (one denial is enough)."""
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            row = await self._reviewable(session, principal, request_id, now)
            row.status, row.decided_at = "denied", now
            await store.add(
                session,
                ReviewRow(
                    request_id=row.id,
                    reviewer=principal.subject,
                    decision="deny",
                    comment=comment,
                    reviewed_at=now,
                ),
            )
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
            self._notify(session, "request_denied", row.requester, row, now)
            metrics.GRANT_DECISION_SECONDS.observe((now - row.created_at).total_seconds())
            return row, await store.reviews_of(session, row.id)

    async def _reviewable(
        self, session: AsyncSession, principal: Principal, request_id: str, now: datetime
    ) -> AccessRequestRow:
        row = await locked_request(session, request_id)
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
        if await store.has_reviewed(session, row.id, principal.subject):
            raise FailedPrecondition(
                "you already reviewed this request",
                reason=ErrorReason.ERROR_REASON_ALREADY_REVIEWED,
            )
        return row
