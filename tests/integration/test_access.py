"""Access requests and JIT grants through the SDK and GraphQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import jwt
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import ConductorError, ErrorReason
from intelgraph.sdk import access as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncAccessClient

from servers.app import Platform
from tests.support.clients import SdkClients
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
    """One tenant's people: each person, with given scopes, calls through an SDK client."""

    id: uuid.UUID
    minter: Minter
    #: The clients: one per person and scopes, all closed after the test.
    clients: SdkClients

    def token(self, subject: str, scopes: list[str]) -> str:
        """A fresh token of `subject` holding `scopes` in this tenant."""
        return self.minter(scopes, tenant=self.id, subject=subject)

    def as_(self, subject: str, scopes: list[str]) -> AsyncAccessClient:
        """AccessService as `subject` holding `scopes` (one token and client for each pair)."""
        key = (self.id, subject, *scopes)
        return self.clients.keyed(key, lambda: self.token(subject, scopes)).access

    def bearing(self, token: str) -> AsyncAccessClient:
        """AccessService as the holder of `token`, such as a claimed JIT token."""
        return self.clients.bearing(token).access

    def another(self) -> Tenant:
        """A second tenant, its clients closed with this one's."""
        return Tenant(uuid.uuid4(), self.minter, self.clients)


@pytest_asyncio.fixture(loop_scope="module")
async def tenant(platform: Platform) -> AsyncIterator[Tenant]:
    """A fresh tenant per test, so tests never see each other's rows."""
    async with contextlib.AsyncExitStack() as closing:
        clients = SdkClients(platform.grpc_target, closing)
        yield Tenant(uuid.uuid4(), Minter(platform.settings), clients)


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
    response = await tenant.as_("alice", ALICE).request_access(
        scope=scope,
        expires_at=_at(datetime.now(UTC) + timedelta(minutes=minutes)),
        reason=reason,
    )
    return response.access_request


async def _refused(awaitable: Awaitable[object]) -> ConductorError:
    with pytest.raises(ConductorError) as raised:
        await awaitable
    return raised.value


async def test_request_approve_claim_use_and_revoke(tenant: Tenant) -> None:
    request = await _request(tenant, ["audit.read"])
    assert request.status == pb.ACCESS_REQUEST_STATUS_PENDING
    assert request.requester == "alice"
    alice, bob = tenant.as_("alice", ALICE), tenant.as_("bob", BOB_ADMIN)
    # Without the grant, alice may not read the audit log.
    denied = await _refused(alice.list_audit_events())
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED

    approved = await bob.approve_access(id=request.id)
    grant = approved.grant
    assert approved.access_request.status == pb.ACCESS_REQUEST_STATUS_APPROVED
    assert grant.status == pb.GRANT_STATUS_ACTIVE
    assert grant.ends_at.seconds <= request.expires_at.seconds

    # Only the requester collects the token; approvers never see it.
    stranger = await _refused(bob.claim_grant(grant_id=grant.id))
    assert stranger.code is grpc.StatusCode.NOT_FOUND
    claimed = await alice.claim_grant(grant_id=grant.id)
    claims = jwt.decode(claimed.token, options={"verify_signature": False})
    assert claims["exp"] == grant.ends_at.seconds
    assert claims["jit"] is True
    assert claims["scopes"] == ["audit.read"]
    assert claims["tenant"] == str(tenant.id)
    assert claims["sub"] == "alice"
    assert claims["jti"] == grant.jti
    jit = tenant.bearing(claimed.token)

    events = await jit.list_audit_events()
    actions = [pb.AuditAction.Name(event.action) for event in events.events]
    assert actions == [
        "AUDIT_ACTION_REQUEST",
        "AUDIT_ACTION_REVIEW",
        "AUDIT_ACTION_APPROVE",
        "AUDIT_ACTION_MINT",
        "AUDIT_ACTION_CLAIM",
    ]

    revoked = await alice.revoke_grant(grant_id=grant.id)
    assert revoked.grant.status == pb.GRANT_STATUS_REVOKED
    refused = await _refused(jit.list_audit_events())
    assert refused.reason == ErrorReason.ERROR_REASON_TOKEN_REVOKED
    verified = await tenant.as_("auditor", ["audit.read"]).verify_audit_chain()
    assert verified.valid
    assert verified.events_checked == 6


async def test_a_jit_token_dies_with_its_grant_and_expiry_is_recorded(tenant: Tenant) -> None:
    request = await _request(tenant, ["audit.read"])
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    bob = tenant.as_("bob", BOB_ADMIN)
    approved = await bob.approve_access(id=request.id, grant_ends_at=_at(ends))
    assert approved.grant.ends_at.seconds == int(ends.timestamp())
    claimed = await tenant.as_("alice", ALICE).claim_grant(grant_id=approved.grant.id)
    jit = tenant.bearing(claimed.token)
    await jit.verify_audit_chain()
    await asyncio.sleep(max(0.0, ends.timestamp() - time.time()) + 0.2)
    expired = await _refused(jit.verify_audit_chain())
    assert expired.reason == ErrorReason.ERROR_REASON_TOKEN_EXPIRED
    for _ in range(50):  # the expiry job runs every second
        grants = await bob.list_grants()
        if grants.grants[0].status == pb.GRANT_STATUS_EXPIRED:
            break
        await asyncio.sleep(0.1)
    assert grants.grants[0].status == pb.GRANT_STATUS_EXPIRED
    events = await tenant.as_("auditor", ["audit.read"]).list_audit_events(
        resource_id=approved.grant.id
    )
    assert [pb.AuditAction.Name(e.action) for e in events.events] == [
        "AUDIT_ACTION_MINT",
        "AUDIT_ACTION_CLAIM",
        "AUDIT_ACTION_EXPIRE",
    ]


async def test_requesters_never_approve_their_own_request(tenant: Tenant) -> None:
    request = await _request(tenant, ["catalog.write"], reason="deploy")
    own = await _refused(tenant.as_("alice", ["admin.write", *ALICE]).approve_access(id=request.id))
    assert own.code is grpc.StatusCode.PERMISSION_DENIED
    assert own.reason == ErrorReason.ERROR_REASON_SELF_APPROVAL


async def test_a_threshold_needs_distinct_approvers(tenant: Tenant) -> None:
    request = await _request(tenant, ["billing.write"], reason="month end")
    assert request.approvals_required == 2
    bob = tenant.as_("bob", BOB_ADMIN)
    first = await bob.approve_access(id=request.id)
    assert not first.HasField("grant")
    assert first.access_request.status == pb.ACCESS_REQUEST_STATUS_PENDING
    again = await _refused(bob.approve_access(id=request.id))
    assert again.reason == ErrorReason.ERROR_REASON_ALREADY_REVIEWED
    second = await tenant.as_("carol", CAROL_ADMIN).approve_access(id=request.id)
    assert second.HasField("grant")
    # billing.write grants last at most an hour, whatever was asked for.
    assert second.grant.ends_at.seconds - second.grant.starts_at.seconds <= 3600


async def test_approvers_may_shorten_never_lengthen(tenant: Tenant) -> None:
    request = await _request(tenant, ["catalog.read", "rag.read"], minutes=30)
    bob = tenant.as_("bob", BOB_ADMIN)
    later = datetime.now(UTC) + timedelta(hours=2)
    lengthened = await _refused(bob.approve_access(id=request.id, grant_ends_at=_at(later)))
    assert lengthened.reason == ErrorReason.ERROR_REASON_GRANT_END_INVALID
    shorter = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    approved = await bob.approve_access(id=request.id, grant_ends_at=_at(shorter))
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
    denied = await tenant.as_("bob", BOB_ADMIN).deny_access(id=request.id, comment="not now")
    assert denied.access_request.status == pb.ACCESS_REQUEST_STATUS_DENIED
    assert [review.comment for review in denied.access_request.reviews] == ["not now"]
    late = await _refused(tenant.as_("carol", CAROL_ADMIN).approve_access(id=request.id))
    assert late.reason == ErrorReason.ERROR_REASON_REQUEST_NOT_PENDING


async def test_who_sees_what(tenant: Tenant, platform: Platform) -> None:
    request = await _request(tenant, ["catalog.read"])
    alice, bob = tenant.as_("alice", ALICE), tenant.as_("bob", BOB_ADMIN)
    dave = tenant.as_("dave", ["catalog.read"])
    assert (await alice.get_access_request(id=request.id)).access_request.id == request.id
    assert (await bob.get_access_request(id=request.id)).access_request.id == request.id
    hidden = await _refused(dave.get_access_request(id=request.id))
    assert hidden.code is grpc.StatusCode.NOT_FOUND
    # Another tenant's approver cannot reach the request at all.
    eve = tenant.another().as_("eve", BOB_ADMIN)
    foreign = await _refused(eve.approve_access(id=request.id))
    assert foreign.code is grpc.StatusCode.NOT_FOUND
    listed = await bob.list_access_requests()
    assert [item.id for item in listed.access_requests] == [request.id]
    nothing = await eve.list_access_requests()
    assert list(nothing.access_requests) == []


async def test_lists_page_and_refuse_foreign_tokens(tenant: Tenant) -> None:
    for _ in range(5):
        await _request(tenant, ["catalog.read"])
    bob = tenant.as_("bob", BOB_ADMIN)
    seen, token = [], ""
    while True:
        page = await bob.list_access_requests(page=PageRequest(page_size=2, page_token=token))
        seen += [item.id for item in page.access_requests]
        token = page.page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    first = await bob.list_access_requests(page=PageRequest(page_size=2))
    other_query = await _refused(
        bob.list_access_requests(
            requester="zed", page=PageRequest(page_size=2, page_token=first.page.next_page_token)
        )
    )
    assert other_query.reason == ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN


async def test_the_seed_flow_through_graphql(tenant: Tenant, platform: Platform) -> None:
    async def graphql(query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"}
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
        tenant.token("alice", ALICE),
    )
    request_id = created["requestAccess"]
    bob = tenant.token("bob", BOB_ADMIN)
    listed = await graphql("{ accessRequests { id requester scope status expiresAt } }", {}, bob)
    assert listed["accessRequests"][0]["id"] == request_id
    assert listed["accessRequests"][0]["status"] == "PENDING"
    approved = await graphql(
        "mutation($id: ID!) { approveAccess(id: $id) }", {"id": request_id}, bob
    )
    assert approved == {"approveAccess": True}
    grants = await graphql("{ grants { grants { id status } } }", {}, tenant.token("alice", ALICE))
    grant_id = grants["grants"]["grants"][0]["id"]
    claimed = await graphql(
        "mutation($g: ID!) { claimGrant(grantId: $g) { token } }",
        {"g": grant_id},
        tenant.token("alice", ALICE),
    )
    jit = claimed["claimGrant"]["token"]
    chain = await graphql("{ verifyAuditChain { valid eventsChecked } }", {}, jit)
    assert chain["verifyAuditChain"]["valid"] is True
    await graphql(
        "mutation($g: ID!) { revokeGrant(grantId: $g) { grant { status } } }",
        {"g": grant_id},
        tenant.token("alice", ALICE),
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        refused = await http.post(
            "/graphql",
            json={"query": "{ verifyAuditChain { valid } }"},
            headers={"authorization": f"Bearer {jit}"},
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

    alice = tenant.as_("alice", ALICE)
    # Health is gRPC's own service, not the platform's: the SDK has no client for it.
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        # typeshed's HealthStub declares no methods.
        health: Any = health_pb2_grpc.HealthStub(channel)
        request = pb.RequestAccessRequest(
            scope=[f"scope.{index}" for index in range(3000)],
            expires_at=_at(datetime.now(UTC) + timedelta(minutes=10)),
        )
        with pytest.raises(ConductorError) as refused:
            await alice.request_access(request)
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
        asking = asyncio.ensure_future(alice.request_access(most))
        answered = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answered.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(ConductorError) as not_requestable:
            await asking
        assert not_requestable.value.reason == ErrorReason.ERROR_REASON_SCOPE_NOT_REQUESTABLE
