"""The AccessService servicer: translates messages and calls the use cases, nothing else."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence

import grpc
from intelgraph.access.v1 import access_service_pb2 as pb
from intelgraph.access.v1 import access_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageResponse

from core.errors import FailedPrecondition, InvalidArgument
from core.interfaces import CacheInvalidation, Notifications
from core.pagination import SEQUENCE, TIME_AND_ID, Page
from core.times import from_timestamp, optional_instant, to_timestamp
from interceptors import current_principal
from servers.access.audit import AuditLog
from servers.access.component import AccessComponent
from servers.access.grants import Grants
from servers.access.requests import Requests
from servers.access.reviews import Reviews
from servers.access.store import AccessRequestRow, AuditEventRow, GrantRow, ReviewRow
from servers.db.switches import SwitchChangeRow
from servers.jobs import every, every_under_lease
from servers.runtime import Job, PlatformServicer, Runtime, ServiceDefinition
from servers.switches import SwitchBoard, SwitchState, UnfitValue, UnknownSwitch

_REQUEST_STATUS = {
    "pending": pb.ACCESS_REQUEST_STATUS_PENDING,
    "approved": pb.ACCESS_REQUEST_STATUS_APPROVED,
    "denied": pb.ACCESS_REQUEST_STATUS_DENIED,
    "expired": pb.ACCESS_REQUEST_STATUS_EXPIRED,
}
_GRANT_STATUS = {
    "active": pb.GRANT_STATUS_ACTIVE,
    "expired": pb.GRANT_STATUS_EXPIRED,
    "revoked": pb.GRANT_STATUS_REVOKED,
}
_DECISION = {"approve": pb.REVIEW_DECISION_APPROVE, "deny": pb.REVIEW_DECISION_DENY}
logger = logging.getLogger(__name__)

_ACTION_PREFIX = "AUDIT_ACTION_"


def _status_name(value: int, names: Mapping[str, int]) -> str:
    return next((name for name, number in names.items() if number == value), "")


def _review(row: ReviewRow) -> pb.Review:
    return pb.Review(
        reviewer=row.reviewer,
        decision=_DECISION[row.decision],
        reviewed_at=to_timestamp(row.reviewed_at),
        comment=row.comment,
        grant_ends_at=to_timestamp(row.grant_ends_at),
    )


def _request(
    row: AccessRequestRow, reviews: Sequence[ReviewRow] = (), grant: GrantRow | None = None
) -> pb.AccessRequest:
    return pb.AccessRequest(
        id=str(row.id),
        requester=row.requester,
        scope=list(row.scope),
        status=_REQUEST_STATUS[row.status],
        expires_at=to_timestamp(row.expires_at),
        created_at=to_timestamp(row.created_at),
        reason=row.reason,
        reviews=[_review(review) for review in reviews],
        approvals_required=row.approvals_required,
        pending_until=to_timestamp(row.pending_until),
        grant_id=str(grant.id) if grant else "",
    )


def _grant(row: GrantRow) -> pb.Grant:
    return pb.Grant(
        id=str(row.id),
        access_request_id=str(row.request_id),
        grantee=row.grantee,
        scope=list(row.scope),
        status=_GRANT_STATUS[row.status],
        starts_at=to_timestamp(row.starts_at),
        ends_at=to_timestamp(row.ends_at),
        jti=row.jti,
        claimed_at=to_timestamp(row.claimed_at),
        revoked_at=to_timestamp(row.revoked_at),
        revoked_by=row.revoked_by or "",
    )


def _switch(state: SwitchState) -> pb.Switch:
    switch = pb.Switch(
        name=state.switch.name,
        value=state.value,
        description=state.switch.description,
        default_value=state.switch.default,
        changed_by=state.changed_by,
        reason=state.reason,
    )
    if state.changed_at is not None:
        switch.changed_at.CopyFrom(to_timestamp(state.changed_at))
    return switch


def _change(row: SwitchChangeRow) -> pb.SwitchChange:
    return pb.SwitchChange(
        name=row.name,
        old_value=row.old_value,
        new_value=row.new_value,
        changed_at=to_timestamp(row.changed_at),
        changed_by=row.changed_by,
        reason=row.reason,
    )


def _event(row: AuditEventRow) -> pb.AuditEvent:
    return pb.AuditEvent(
        id=str(row.id),
        sequence=row.sequence,
        action=pb.AuditAction.Value(_ACTION_PREFIX + row.action.upper()),
        actor=row.actor,
        resource_id=row.resource_id,
        occurred_at=to_timestamp(row.occurred_at),
        attributes=row.attributes,
        previous_hash=row.previous_hash,
        hash=row.hash,
    )


class AccessService(PlatformServicer, access_service_pb2_grpc.AccessServiceServicer):
    """Access requests, approvals, time-boxed JIT grants, revocation and the audit chain."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.requests = Requests(runtime)
        self.reviews = Reviews(runtime)
        self.grants = Grants(runtime)
        self.audit = AuditLog(runtime)

    def background_jobs(self) -> list[Job]:
        """Expiry (one replica), grant gauges (each replica).

        The outbox is delivered by `AccessComponent`, on every replica whether or
        not it serves Access, since other services write notifications too.
        """
        return [
            functools.partial(
                every_under_lease,
                self.runtime.database,
                "access.expiry",
                1.0,
                self.grants.expire_due,
            ),
            functools.partial(every, 5.0, self.grants.observe_grants, "access.gauges"),
        ]

    async def RequestAccess(
        self,
        request: pb.RequestAccessRequest,
        context: grpc.aio.ServicerContext[pb.RequestAccessRequest, pb.RequestAccessResponse],
    ) -> pb.RequestAccessResponse:
        """Ask for scopes until a time."""
        row = await self.requests.request_access(
            current_principal(),
            list(request.scope),
            from_timestamp(request.expires_at),
            request.reason,
        )
        return pb.RequestAccessResponse(access_request=_request(row))

    async def GetAccessRequest(
        self,
        request: pb.GetAccessRequestRequest,
        context: grpc.aio.ServicerContext[pb.GetAccessRequestRequest, pb.GetAccessRequestResponse],
    ) -> pb.GetAccessRequestResponse:
        """One request with its reviews and grant."""
        row, reviews, grant = await self.requests.get_request(current_principal(), request.id)
        return pb.GetAccessRequestResponse(access_request=_request(row, reviews, grant))

    async def ListAccessRequests(
        self,
        request: pb.ListAccessRequestsRequest,
        context: grpc.aio.ServicerContext[
            pb.ListAccessRequestsRequest, pb.ListAccessRequestsResponse
        ],
    ) -> pb.ListAccessRequestsResponse:
        """The tenant's requests, newest first (without their reviews)."""
        status = _status_name(request.status, _REQUEST_STATUS)
        listed = await self.requests.list_requests(
            current_principal(),
            Page.of(request, TIME_AND_ID, status=status, requester=request.requester),
            status,
            request.requester,
        )
        return pb.ListAccessRequestsResponse(
            access_requests=[_request(row) for row in listed.rows],
            page=PageResponse(next_page_token=listed.next_page_token),
        )

    async def ApproveAccess(
        self,
        request: pb.ApproveAccessRequest,
        context: grpc.aio.ServicerContext[pb.ApproveAccessRequest, pb.ApproveAccessResponse],
    ) -> pb.ApproveAccessResponse:
        """Approve; the approval that meets the threshold creates the grant."""
        row, reviews, grant = await self.reviews.approve(
            current_principal(),
            request.id,
            optional_instant(request, "grant_ends_at"),
            request.comment,
        )
        return pb.ApproveAccessResponse(
            access_request=_request(row, reviews, grant), grant=_grant(grant) if grant else None
        )

    async def DenyAccess(
        self,
        request: pb.DenyAccessRequest,
        context: grpc.aio.ServicerContext[pb.DenyAccessRequest, pb.DenyAccessResponse],
    ) -> pb.DenyAccessResponse:
        """Deny a pending request."""
        row, reviews = await self.reviews.deny(current_principal(), request.id, request.comment)
        return pb.DenyAccessResponse(access_request=_request(row, reviews))

    async def ClaimGrant(
        self,
        request: pb.ClaimGrantRequest,
        context: grpc.aio.ServicerContext[pb.ClaimGrantRequest, pb.ClaimGrantResponse],
    ) -> pb.ClaimGrantResponse:
        """The grantee's JIT token."""
        claimed = await self.grants.claim(current_principal(), request.grant_id)
        return pb.ClaimGrantResponse(grant=_grant(claimed.grant), token=claimed.token)

    async def RevokeGrant(
        self,
        request: pb.RevokeGrantRequest,
        context: grpc.aio.ServicerContext[pb.RevokeGrantRequest, pb.RevokeGrantResponse],
    ) -> pb.RevokeGrantResponse:
        """End a grant now."""
        grant = await self.grants.revoke(current_principal(), request.grant_id, request.reason)
        return pb.RevokeGrantResponse(grant=_grant(grant))

    async def ListGrants(
        self,
        request: pb.ListGrantsRequest,
        context: grpc.aio.ServicerContext[pb.ListGrantsRequest, pb.ListGrantsResponse],
    ) -> pb.ListGrantsResponse:
        """Grants: the caller's own, or every grant for approvers."""
        status = _status_name(request.status, _GRANT_STATUS)
        listed = await self.grants.list_grants(
            current_principal(),
            Page.of(request, TIME_AND_ID, status=status, grantee=request.grantee),
            status,
            request.grantee,
        )
        return pb.ListGrantsResponse(
            grants=[_grant(row) for row in listed.rows],
            page=PageResponse(next_page_token=listed.next_page_token),
        )

    async def GetJwks(
        self,
        request: pb.GetJwksRequest,
        context: grpc.aio.ServicerContext[pb.GetJwksRequest, pb.GetJwksResponse],
    ) -> pb.GetJwksResponse:
        """The public signing keys (current and previous) as a standard JWKS."""
        ring = self.runtime.keys.ring()
        return pb.GetJwksResponse(keys=[pb.Jwk(**jwk) for jwk in ring.jwks()])

    async def GetCaller(
        self,
        request: pb.GetCallerRequest,
        context: grpc.aio.ServicerContext[pb.GetCallerRequest, pb.GetCallerResponse],
    ) -> pb.GetCallerResponse:
        """Who the verified token says the caller is."""
        principal = current_principal()
        return pb.GetCallerResponse(
            subject=principal.subject,
            tenant_id=principal.tenant_id,
            scopes=list(principal.scopes),
            jit=principal.jit,
            token_id=principal.token_id,
            expires_at=to_timestamp(principal.expires),
        )

    async def ListAuditEvents(
        self,
        request: pb.ListAuditEventsRequest,
        context: grpc.aio.ServicerContext[pb.ListAuditEventsRequest, pb.ListAuditEventsResponse],
    ) -> pb.ListAuditEventsResponse:
        """A page of the tenant's audit chain."""
        action = pb.AuditAction.Name(request.action).removeprefix(_ACTION_PREFIX).lower()
        action = "" if action == "unspecified" else action
        since = optional_instant(request, "since")
        until = optional_instant(request, "until")
        listed = await self.audit.audit_events(
            current_principal(),
            Page.of(
                request,
                SEQUENCE,
                action=action,
                actor=request.actor,
                resource_id=request.resource_id,
                since=str(since),
                until=str(until),
            ),
            action=action,
            actor=request.actor,
            resource_id=request.resource_id,
            since=since,
            until=until,
        )
        return pb.ListAuditEventsResponse(
            events=[_event(row) for row in listed.rows],
            page=PageResponse(next_page_token=listed.next_page_token),
        )

    async def VerifyAuditChain(
        self,
        request: pb.VerifyAuditChainRequest,
        context: grpc.aio.ServicerContext[pb.VerifyAuditChainRequest, pb.VerifyAuditChainResponse],
    ) -> pb.VerifyAuditChainResponse:
        """Recompute the tenant's audit chain."""
        check = await self.audit.verify_chain(current_principal())
        return pb.VerifyAuditChainResponse(
            valid=check.valid,
            events_checked=check.events_checked,
            first_invalid_sequence=check.first_invalid_sequence,
            problem=check.problem,
        )

    def _switches(self) -> SwitchBoard:
        switches = self.runtime.switches
        if switches is None:  # a runtime built without the platform (a bare test servicer)
            raise FailedPrecondition("this process keeps no backout switches")
        return switches

    async def ListSwitches(
        self,
        request: pb.ListSwitchesRequest,
        context: grpc.aio.ServicerContext[pb.ListSwitchesRequest, pb.ListSwitchesResponse],
    ) -> pb.ListSwitchesResponse:
        """Every backout switch, as the store has it now."""
        states = await self._switches().states()
        return pb.ListSwitchesResponse(
            switches=[_switch(state) for state in states], page=PageResponse()
        )

    async def SetSwitch(
        self,
        request: pb.SetSwitchRequest,
        context: grpc.aio.ServicerContext[pb.SetSwitchRequest, pb.SetSwitchResponse],
    ) -> pb.SetSwitchResponse:
        """Set a backout switch for every replica, keeping who, when and why."""
        try:
            state = await self._switches().set(
                request.name,
                request.value,
                changed_by=current_principal().subject,
                reason=request.reason,
            )
        except UnknownSwitch as error:
            raise InvalidArgument(str(error), field="name") from None
        except UnfitValue as error:
            raise InvalidArgument(str(error), field="value") from None
        logger.warning(
            "backout switch %s set to %r: %s", request.name, request.value, request.reason
        )
        return pb.SetSwitchResponse(state=_switch(state))

    async def ListSwitchChanges(
        self,
        request: pb.ListSwitchChangesRequest,
        context: grpc.aio.ServicerContext[
            pb.ListSwitchChangesRequest, pb.ListSwitchChangesResponse
        ],
    ) -> pb.ListSwitchChangesResponse:
        """A page of the switches' changes, newest first."""
        page = Page.of(request, SEQUENCE, name=request.name)
        before = int(page.after[0]) if page.after else None
        rows = await self._switches().history(request.name, before=before, limit=page.size + 1)
        return pb.ListSwitchChangesResponse(
            changes=[_change(row) for row in rows[: page.size]],
            page=PageResponse(next_page_token=page.next_token(rows, lambda row: (row.id,))),
        )


SERVICE = ServiceDefinition(
    component=AccessComponent.of,
    provides=(Notifications,),
    needs=(CacheInvalidation,),
    name="access",
    descriptor=pb.DESCRIPTOR.services_by_name["AccessService"],
    servicer_class=AccessService,
    add_to_server=access_service_pb2_grpc.add_AccessServiceServicer_to_server,
    capability="access requests and just-in-time grants (issue #5)",
)
