"""Asking for access: request scopes until a time, read one request, list them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from core.errors import ErrorReason, InvalidArgument, PermissionDenied
from core.pagination import Page
from interceptors.tokens import Principal
from servers.access import store
from servers.access.audit import append_audit
from servers.access.domain import REQUEST_DECISION
from servers.access.steps import Listed, Step, locked_request, request_not_found
from servers.access.store import AccessRequestRow, GrantRow, ReviewRow


class Requests(Step):
    """Access requests: creating them, and reading them back."""

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
            await store.add(session, row)
            await append_audit(
                session,
                tenant=principal.tenant,
                action="request",
                actor=principal.subject,
                resource_id=str(row.id),
                at=now,
                attributes={"scope": ",".join(requested), "expires_at": expires_at.isoformat()},
            )
            self._notify(session, "request_pending", "approvers", row, now)
        return row

    async def get_request(
        self, principal: Principal, request_id: str
    ) -> tuple[AccessRequestRow, list[ReviewRow], GrantRow | None]:
        """A request with its reviews and grant; requesters see their own, approvers all."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            row = await locked_request(session, request_id)
            if row.requester != principal.subject and not await self.is_approver(principal):
                raise request_not_found(request_id)
            return (
                row,
                await store.reviews_of(session, row.id),
                await store.grant_of(session, row.id),
            )

    async def list_requests(
        self, principal: Principal, page: Page, status: str, requester: str
    ) -> Listed:
        """The tenant's requests, newest first (approvers only: the RPC needs admin.write)."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = await store.page_of_requests(session, page, status=status, requester=requester)
        token = page.next_token(rows, lambda row: (row.created_at, row.id))
        return Listed(rows[: page.size], token)
