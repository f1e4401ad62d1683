"""Access requests and JIT grants through gRPC and GraphQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import jwt
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.access.v1 import access_service_pb2 as pb
from intelgraph.access.v1 import access_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageRequest
from intelgraph.sdk import ConductorError, ErrorReason, from_grpc_error

from servers.app import Platform
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("var"), database_url=module_database_url, token_leeway=0
    ) as running:
        yield running


@dataclass
class Tenant:
    """One tenant's people, each with a channel-bound stub and a token minter."""

    id: uuid.UUID
    stub: Any
    minter: Minter

    def who(self, subject: str, scopes: list[str]) -> tuple[tuple[str, str]]:
        return self.minter.metadata(scopes, tenant=self.id, subject=subject)

    async def call(self, method: str, request: Any, metadata: Any) -> Any:
        try:
            return await getattr(self.stub, method)(request, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise from_grpc_error(error) from None


@pytest_asyncio.fixture(loop_scope="module")
async def tenant(platform: Platform) -> AsyncIterator[Tenant]:
    """A fresh tenant per test, so tests never see each other's rows."""
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        yield Tenant(
            uuid.uuid4(),
            access_service_pb2_grpc.AccessServiceStub(channel),
            Minter(platform.settings),
        )


ALICE = ["catalog.read"]
BOB_ADMIN = ["admin.write"]
CAROL_ADMIN = ["admin.write"]


def _at(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def _request(
    tenant: Tenant, scope: list[str], *, minutes: float = 10, reason: str = "on call"
) -> pb.AccessRequest:
    response: pb.RequestAccessResponse = await tenant.call(
        "RequestAccess",
        pb.RequestAccessRequest(
            scope=scope,
            expires_at=_at(datetime.now(UTC) + timedelta(minutes=minutes)),
            reason=reason,
        ),
        tenant.who("alice", ALICE),
    )
    return response.access_request


async def _refused(awaitable: Any) -> ConductorError:
    with pytest.raises(ConductorError) as raised:
        await awaitable
    return raised.value


async def test_request_approve_claim_use_and_revoke(tenant: Tenant) -> None:
    request = await _request(tenant, ["audit.read"])
    assert request.status == pb.ACCESS_REQUEST_STATUS_PENDING
    assert request.requester == "alice"
    alice = tenant.who("alice", ALICE)
    # Without the grant, alice may not read the audit log.
    denied = await _refused(tenant.call("ListAuditEvents", pb.ListAuditEventsRequest(), alice))
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED

    approved = await tenant.call(
        "ApproveAccess", pb.ApproveAccessRequest(id=request.id), tenant.who("bob", BOB_ADMIN)
    )
    grant = approved.grant
    assert approved.access_request.status == pb.ACCESS_REQUEST_STATUS_APPROVED
    assert grant.status == pb.GRANT_STATUS_ACTIVE
    assert grant.ends_at.seconds <= request.expires_at.seconds

    # Only the requester collects the token; approvers never see it.
    stranger = await _refused(
        tenant.call(
            "ClaimGrant", pb.ClaimGrantRequest(grant_id=grant.id), tenant.who("bob", BOB_ADMIN)
        )
    )
    assert stranger.code is grpc.StatusCode.NOT_FOUND
    claimed = await tenant.call("ClaimGrant", pb.ClaimGrantRequest(grant_id=grant.id), alice)
    claims = jwt.decode(claimed.token, options={"verify_signature": False})
    assert claims["exp"] == grant.ends_at.seconds
    assert claims["jit"] is True
    assert claims["scopes"] == ["audit.read"]
    assert claims["tenant"] == str(tenant.id)
    assert claims["sub"] == "alice"
    assert claims["jti"] == grant.jti
    jit = (("authorization", f"Bearer {claimed.token}"),)

    events = await tenant.call("ListAuditEvents", pb.ListAuditEventsRequest(), jit)
    actions = [pb.AuditAction.Name(event.action) for event in events.events]
    assert actions == [
        "AUDIT_ACTION_REQUEST",
        "AUDIT_ACTION_REVIEW",
        "AUDIT_ACTION_APPROVE",
        "AUDIT_ACTION_MINT",
        "AUDIT_ACTION_CLAIM",
    ]

    revoked = await tenant.call("RevokeGrant", pb.RevokeGrantRequest(grant_id=grant.id), alice)
    assert revoked.grant.status == pb.GRANT_STATUS_REVOKED
    refused = await _refused(tenant.call("ListAuditEvents", pb.ListAuditEventsRequest(), jit))
    assert refused.reason == ErrorReason.ERROR_REASON_TOKEN_REVOKED
    verified = await tenant.call(
        "VerifyAuditChain", pb.VerifyAuditChainRequest(), tenant.who("auditor", ["audit.read"])
    )
    assert verified.valid
    assert verified.events_checked == 6


async def test_a_jit_token_dies_with_its_grant_and_expiry_is_recorded(tenant: Tenant) -> None:
    request = await _request(tenant, ["audit.read"])
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    approved = await tenant.call(
        "ApproveAccess",
        pb.ApproveAccessRequest(id=request.id, grant_ends_at=_at(ends)),
        tenant.who("bob", BOB_ADMIN),
    )
    assert approved.grant.ends_at.seconds == int(ends.timestamp())
    alice = tenant.who("alice", ALICE)
    claimed = await tenant.call(
        "ClaimGrant", pb.ClaimGrantRequest(grant_id=approved.grant.id), alice
    )
    jit = (("authorization", f"Bearer {claimed.token}"),)
    await tenant.call("VerifyAuditChain", pb.VerifyAuditChainRequest(), jit)
    await asyncio.sleep(max(0.0, ends.timestamp() - time.time()) + 0.2)
    expired = await _refused(tenant.call("VerifyAuditChain", pb.VerifyAuditChainRequest(), jit))
    assert expired.reason == ErrorReason.ERROR_REASON_TOKEN_EXPIRED
    auditor = tenant.who("auditor", ["audit.read"])
    for _ in range(50):  # the expiry job runs every second
        grants = await tenant.call(
            "ListGrants", pb.ListGrantsRequest(), tenant.who("bob", BOB_ADMIN)
        )
        if grants.grants[0].status == pb.GRANT_STATUS_EXPIRED:
            break
        await asyncio.sleep(0.1)
    assert grants.grants[0].status == pb.GRANT_STATUS_EXPIRED
    events = await tenant.call(
        "ListAuditEvents",
        pb.ListAuditEventsRequest(resource_id=approved.grant.id),
        auditor,
    )
    assert [pb.AuditAction.Name(e.action) for e in events.events] == [
        "AUDIT_ACTION_MINT",
        "AUDIT_ACTION_CLAIM",
        "AUDIT_ACTION_EXPIRE",
    ]


async def test_requesters_never_approve_their_own_request(tenant: Tenant) -> None:
    request = await _request(tenant, ["catalog.write"], reason="deploy")
    own = await _refused(
        tenant.call(
            "ApproveAccess",
            pb.ApproveAccessRequest(id=request.id),
            tenant.who("alice", ["admin.write", *ALICE]),
        )
    )
    assert own.code is grpc.StatusCode.PERMISSION_DENIED
    assert own.reason == ErrorReason.ERROR_REASON_SELF_APPROVAL


async def test_a_threshold_needs_distinct_approvers(tenant: Tenant) -> None:
    request = await _request(tenant, ["billing.write"], reason="month end")
    assert request.approvals_required == 2
    first = await tenant.call(
        "ApproveAccess", pb.ApproveAccessRequest(id=request.id), tenant.who("bob", BOB_ADMIN)
    )
    assert not first.HasField("grant")
    assert first.access_request.status == pb.ACCESS_REQUEST_STATUS_PENDING
    again = await _refused(
        tenant.call(
            "ApproveAccess", pb.ApproveAccessRequest(id=request.id), tenant.who("bob", BOB_ADMIN)
        )
    )
    assert again.reason == ErrorReason.ERROR_REASON_ALREADY_REVIEWED
    second = await tenant.call(
        "ApproveAccess", pb.ApproveAccessRequest(id=request.id), tenant.who("carol", CAROL_ADMIN)
    )
    assert second.HasField("grant")
    # billing.write grants last at most an hour, whatever was asked for.
    assert second.grant.ends_at.seconds - second.grant.starts_at.seconds <= 3600


async def test_approvers_may_shorten_never_lengthen(tenant: Tenant) -> None:
    request = await _request(tenant, ["catalog.read", "rag.read"], minutes=30)
    later = datetime.now(UTC) + timedelta(hours=2)
    lengthened = await _refused(
        tenant.call(
            "ApproveAccess",
            pb.ApproveAccessRequest(id=request.id, grant_ends_at=_at(later)),
            tenant.who("bob", BOB_ADMIN),
        )
    )
    assert lengthened.reason == ErrorReason.ERROR_REASON_GRANT_END_INVALID
    shorter = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    approved = await tenant.call(
        "ApproveAccess",
        pb.ApproveAccessRequest(id=request.id, grant_ends_at=_at(shorter)),
        tenant.who("bob", BOB_ADMIN),
    )
    assert approved.grant.ends_at.seconds == int(shorter.timestamp())


async def test_the_policy_decides_what_may_be_requested(tenant: Tenant) -> None:
    admin = await _refused(_request(tenant, ["admin.write"]))
    assert admin.reason == ErrorReason.ERROR_REASON_SCOPE_NOT_REQUESTABLE
    unreasoned = await _refused(_request(tenant, ["audit.read"], reason=""))
    assert unreasoned.code is grpc.StatusCode.INVALID_ARGUMENT
    assert unreasoned.reason == ErrorReason.ERROR_REASON_REASON_REQUIRED
    past = await _refused(_request(tenant, ["catalog.read"], minutes=-1))
    assert past.metadata == {"field": "expires_at"}


async def test_a_denied_request_stays_denied(tenant: Tenant) -> None:
    request = await _request(tenant, ["catalog.read"])
    denied = await tenant.call(
        "DenyAccess",
        pb.DenyAccessRequest(id=request.id, comment="not now"),
        tenant.who("bob", BOB_ADMIN),
    )
    assert denied.access_request.status == pb.ACCESS_REQUEST_STATUS_DENIED
    assert [review.comment for review in denied.access_request.reviews] == ["not now"]
    late = await _refused(
        tenant.call(
            "ApproveAccess",
            pb.ApproveAccessRequest(id=request.id),
            tenant.who("carol", CAROL_ADMIN),
        )
    )
    assert late.reason == ErrorReason.ERROR_REASON_REQUEST_NOT_PENDING


async def test_who_sees_what(tenant: Tenant, platform: Platform) -> None:
    request = await _request(tenant, ["catalog.read"])
    alice, bob = tenant.who("alice", ALICE), tenant.who("bob", BOB_ADMIN)
    dave = tenant.who("dave", ["catalog.read"])
    assert (
        await tenant.call("GetAccessRequest", pb.GetAccessRequestRequest(id=request.id), alice)
    ).access_request.id == request.id
    assert (
        await tenant.call("GetAccessRequest", pb.GetAccessRequestRequest(id=request.id), bob)
    ).access_request.id == request.id
    hidden = await _refused(
        tenant.call("GetAccessRequest", pb.GetAccessRequestRequest(id=request.id), dave)
    )
    assert hidden.code is grpc.StatusCode.NOT_FOUND
    # Another tenant's approver cannot reach the request at all.
    other = Tenant(uuid.uuid4(), tenant.stub, tenant.minter)
    foreign = await _refused(
        other.call(
            "ApproveAccess", pb.ApproveAccessRequest(id=request.id), other.who("eve", BOB_ADMIN)
        )
    )
    assert foreign.code is grpc.StatusCode.NOT_FOUND
    listed = await tenant.call("ListAccessRequests", pb.ListAccessRequestsRequest(), bob)
    assert [item.id for item in listed.access_requests] == [request.id]
    nothing = await other.call(
        "ListAccessRequests", pb.ListAccessRequestsRequest(), other.who("eve", BOB_ADMIN)
    )
    assert list(nothing.access_requests) == []


async def test_lists_page_and_refuse_foreign_tokens(tenant: Tenant) -> None:
    for _ in range(5):
        await _request(tenant, ["catalog.read"])
    bob = tenant.who("bob", BOB_ADMIN)
    seen, token = [], ""
    while True:
        page = await tenant.call(
            "ListAccessRequests",
            pb.ListAccessRequestsRequest(page=PageRequest(page_size=2, page_token=token)),
            bob,
        )
        seen += [item.id for item in page.access_requests]
        token = page.page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    first = await tenant.call(
        "ListAccessRequests", pb.ListAccessRequestsRequest(page=PageRequest(page_size=2)), bob
    )
    other_query = await _refused(
        tenant.call(
            "ListAccessRequests",
            pb.ListAccessRequestsRequest(
                requester="zed",
                page=PageRequest(page_size=2, page_token=first.page.next_page_token),
            ),
            bob,
        )
    )
    assert other_query.reason == ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN


async def test_the_seed_flow_through_graphql(tenant: Tenant, platform: Platform) -> None:
    async def graphql(query: str, variables: dict[str, Any], metadata: Any) -> dict[str, Any]:
        headers = {"authorization": metadata[0][1]}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    expires = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    created = await graphql(
        "mutation($s: [String!]!, $e: DateTime!, $r: String) "
        "{ requestAccess(scope: $s, expiresAt: $e, reason: $r) }",
        {"s": ["audit.read"], "e": expires, "r": "incident"},
        tenant.who("alice", ALICE),
    )
    request_id = created["requestAccess"]
    bob = tenant.who("bob", BOB_ADMIN)
    listed = await graphql("{ accessRequests { id requester scope status expiresAt } }", {}, bob)
    assert listed["accessRequests"][0]["id"] == request_id
    assert listed["accessRequests"][0]["status"] == "PENDING"
    approved = await graphql(
        "mutation($id: ID!) { approveAccess(id: $id) }", {"id": request_id}, bob
    )
    assert approved == {"approveAccess": True}
    grants = await graphql("{ grants { grants { id status } } }", {}, tenant.who("alice", ALICE))
    grant_id = grants["grants"]["grants"][0]["id"]
    claimed = await graphql(
        "mutation($g: ID!) { claimGrant(grantId: $g) { token } }",
        {"g": grant_id},
        tenant.who("alice", ALICE),
    )
    jit = (("authorization", f"Bearer {claimed['claimGrant']['token']}"),)
    chain = await graphql("{ verifyAuditChain { valid eventsChecked } }", {}, jit)
    assert chain["verifyAuditChain"]["valid"] is True
    await graphql(
        "mutation($g: ID!) { revokeGrant(grantId: $g) { grant { status } } }",
        {"g": grant_id},
        tenant.who("alice", ALICE),
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        refused = await http.post(
            "/graphql",
            json={"query": "{ verifyAuditChain { valid } }"},
            headers={"authorization": jit[0][1]},
        )
    assert refused.json()["errors"][0]["extensions"]["reason"] == "ERROR_REASON_TOKEN_REVOKED"


async def test_metrics_report_grant_time_and_revocations(
    platform: Platform, tenant: Tenant
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        text = (await http.get("/metrics")).text
    for family in (
        "access_grant_decision_seconds_bucket",
        "access_revocations_total",
        "access_expiries_total",
        "access_grants_active",
        "access_grants_overdue",
    ):
        assert family in text, family


async def test_a_request_for_thousands_of_scopes_is_refused_at_once(
    platform: Platform, tenant: Tenant
) -> None:
    """3,000 scopes held the event loop 3.7 s in the policy (10,000: 21 s)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        # typeshed's HealthStub declares no methods.
        health: Any = health_pb2_grpc.HealthStub(channel)
        request = pb.RequestAccessRequest(
            scope=[f"scope.{index}" for index in range(3000)],
            expires_at=_at(datetime.now(UTC) + timedelta(minutes=10)),
        )
        with pytest.raises(ConductorError) as refused:
            await tenant.call("RequestAccess", request, tenant.who("alice", ALICE))
        assert (refused.value.code, refused.value.metadata["field"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "scope",
        )
        # The most a request may ask for is evaluated off the event loop: health answers meanwhile.
        most = pb.RequestAccessRequest(
            scope=[f"scope{index}.read" for index in range(16)],
            expires_at=_at(datetime.now(UTC) + timedelta(minutes=10)),
            reason="audit",
        )
        asking = asyncio.ensure_future(
            tenant.call("RequestAccess", most, tenant.who("alice", ALICE))
        )
        answered = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answered.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(ConductorError) as not_requestable:
            await asking
        assert not_requestable.value.reason == ErrorReason.ERROR_REASON_SCOPE_NOT_REQUESTABLE
