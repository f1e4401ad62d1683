"""Grants: claiming the JIT token, revoking, listing, and the expiry and gauge jobs."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ErrorReason, FailedPrecondition
from core.pagination import Page
from interceptors.tokens import Principal, mint
from servers.access import metrics, store
from servers.access.audit import append_audit
from servers.access.steps import Listed, Step, grant_not_found, locked_grant
from servers.access.store import GrantRow, RevocationRow
from servers.switches import JIT_CLAIMS

#: What an expiry changes, for the edge cache (the resource types of the contract).
_EXPIRY_TOUCHES = (
    "intelgraph.access.v1.Grant",
    "intelgraph.access.v1.AccessRequest",
    "intelgraph.access.v1.AuditEvent",
)


@dataclass(frozen=True)
class Claimed:
    """A claimed grant and its JIT token."""

    grant: GrantRow
    token: str


class Grants(Step):
    """Grants in force, and their ends: claimed, revoked, listed, expired."""

    async def claim(self, principal: Principal, grant_id: str) -> Claimed:
        """The JIT token of a grant; only its grantee gets an answer."""
        switches = self._runtime.switches
        if switches is not None and not switches.is_on(JIT_CLAIMS):
            raise FailedPrecondition(
                "JIT claims are switched off (backout switch access.jit_claims); "
                "the grant stays, and can be claimed once they are on again",
                metadata={"switch": JIT_CLAIMS},
            )
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            grant = await locked_grant(session, grant_id)
            if grant.grantee != principal.subject:
                raise grant_not_found(grant_id)
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
            grant = await locked_grant(session, grant_id)
            if grant.grantee != principal.subject and not await self.is_approver(principal):
                raise grant_not_found(grant_id)
            if grant.status != "active" or grant.ends_at <= now:
                raise FailedPrecondition(
                    f"the grant is {grant.status if grant.status != 'active' else 'over'}",
                    reason=ErrorReason.ERROR_REASON_GRANT_NOT_ACTIVE,
                )
            grant.status, grant.revoked_at, grant.revoked_by = "revoked", now, principal.subject
            await store.add(
                session,
                RevocationRow(
                    jti=grant.jti,
                    grant_id=grant.id,
                    revoked_at=now,
                    expires_at=grant.ends_at,
                    revoked_by=principal.subject,
                ),
            )
            await append_audit(
                session,
                tenant=principal.tenant,
                action="revoke",
                actor=principal.subject,
                resource_id=str(grant.id),
                at=now,
                attributes={"jti": grant.jti, "reason": reason},
            )
            request = await store.request_by_id(session, grant.request_id)
            if request is not None:
                self._notify(session, "grant_revoked", grant.grantee, request, now, grant=grant)
        metrics.REVOCATIONS.inc()
        await self._revocations.announce(grant.jti, grant.ends_at)
        return grant

    async def list_grants(
        self, principal: Principal, page: Page, status: str, grantee: str
    ) -> Listed:
        """Grants the caller may see: their own, or all for approvers."""
        if not await self.is_approver(principal):
            grantee = principal.subject
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = await store.page_of_grants(session, page, status=status, grantee=grantee)
        token = page.next_token(rows, lambda row: (row.starts_at, row.id))
        return Listed(rows[: page.size], token)

    # -- background jobs --------------------------------------------------------------

    async def expire_due(self) -> int:
        """Record every grant past its end as expired and every stale pending request.

        Catches up on any backlog (the job may have been stopped); returns how many
        it recorded. Expiry is recorded distinctly from revocation.
        """
        now = self._now()
        async with self._db.platform_session(readonly=True) as session:
            due_grants = await store.active_grants_due(session, now)
            due_requests = await store.pending_requests_due(session, now)
        for tenant, grant_id in due_grants:
            async with self._db.tenant_session(tenant) as session:
                grant = await store.grant_for_update(session, grant_id)
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
                request = await store.request_for_update(session, request_id)
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
                self._notify(session, "request_expired", request.requester, request, now)
            await self._runtime.changed(tenant, *_EXPIRY_TOUCHES)
        return len(due_grants) + len(due_requests)

    async def observe_grants(self) -> None:
        """Refresh the grant gauges: active grants, and grants past their end not yet expired."""
        now = self._now()
        async with self._db.platform_session(readonly=True) as session:
            active, overdue = await store.grant_counts(session, now)
        metrics.GRANTS_ACTIVE.set(active)
        metrics.GRANTS_OVERDUE.set(overdue)
