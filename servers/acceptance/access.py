"""The Access/JIT lane's acceptance pack: approvals logged, tokens refused, least privilege.

Everything goes through the SDK (its JIT helper included) and GraphQL, as
people and services would: a requester asks for a scope, an approver (another
subject, holding `admin.write`) approves, the requester claims the JIT token and
uses it; grants are revoked or run out; the audit log is read back through
`ListAuditEvents` and its hash chain recomputed here, from the exported events
alone, as well as by `VerifyAuditChain`.

The shortest grant the API allows lasts whole seconds (a grant's end is cut to
the second, and must lie after its start); the lane asks for one ending four to
five seconds ahead, time enough to claim its token and use it first. The token
must be refused from its end on (a just-in-time token owes no clock-skew leeway:
the platform minted it from the grant's end), within a second; the wait runs
while the other criteria are checked.

The chain is recomputed from the exported events with the canonical form the
platform hashes (ADR 0007 names it, `servers/access/domain.py` defines it;
`audit_hash` below restates it): SHA-256 over the JSON of the tenant, sequence,
action (lower case), actor, resource, time (ISO 8601, microseconds, UTC
offset), attributes and previous hash, keys sorted, without spaces.

>>> chain_problems([], "00000000-0000-0000-0000-000000000000")
[]
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    ConductorError,
    JitGrant,
    bearer_token,
    request_jit_async,
)
from intelgraph.sdk import access as pb
from intelgraph.sdk.services import AsyncServiceClients

from servers.acceptance.checks import Context, Criterion, percentile

LANE = "access"

#: The criteria, as the acceptance pack states them.
LOGGED = "approvals logged"
REFUSED = "tokens refused after expiry and revocation"
LEAST_PRIVILEGE = "least privilege enforced"
CRITERIA = (LOGGED, REFUSED, LEAST_PRIVILEGE)
#: What must hold for each criterion, as the results table shows it.
THRESHOLDS = {
    LOGGED: "request, approval, grant, revocation and expiry events; chain verified",
    REFUSED: "revoked: refused ≤ 1000 ms; expired: refused ≤ 1 s after the grant's end",
    LEAST_PRIVILEGE: "PERMISSION_DENIED without the scope; JIT scope exact; tenants isolated",
}

#: Who does what in the lane's tenant.
REQUESTER = "acceptance-requester"
APPROVER = "acceptance-approver"
AUDITOR = "acceptance-auditor"
APPROVER_SCOPES = ("admin.write",)
AUDITOR_SCOPES = ("audit.read",)
#: The scope requested just in time: its RPCs are the Access service's own.
GRANTED = ("audit.read",)
REASON = "acceptance: JIT pack"

#: Whole seconds ahead the short grant ends (see `_shortest_grant`).
SHORT_GRANT_S = 5
#: How soon a revoked token must be refused (ADR 0007: on every replica within a second).
REVOCATION_BOUND_MS = 1000.0
#: How late after its grant's end a JIT token may still be accepted (polling, clocks).
EXPIRY_SLACK_S = 1.0
#: Revocations timed per run.
REVOCATIONS_QUICK, REVOCATIONS_FULL = 2, 10
#: Seconds between two probes of a token expected to be refused soon.
REVOKED_POLL_S, EXPIRED_POLL_S = 0.005, 0.05
#: Seconds the expiry job may take to record an ended grant (it runs every second).
EXPIRY_RECORDED_WAIT_S = 5.0

#: One RPC per scope, and the permission each needs (least privilege, docs/permissions.md).
ScopeProbe = Callable[[AsyncServiceClients], Awaitable[object]]
SCOPE_PROBES: dict[str, ScopeProbe] = {
    "audit.read": lambda c: c.access.list_audit_events(),
    "admin.write": lambda c: c.access.list_access_requests(),
    "platform.admin": lambda c: c.access.list_switches(),
    "catalog.read": lambda c: c.catalog.list_entities(),
    "rag.read": lambda c: c.rag.list_documents(),
    "billing.read": lambda c: c.billing.get_price_book(),
    "analytics.read": lambda c: c.analytics.list_packs(),
    "edge.read": lambda c: c.edge.get_cache_stats(),
}

T = TypeVar("T")


# -- The audit chain, recomputed from exported events -----------------------------------------


@dataclass(frozen=True)
class ExportedEvent:
    """An audit event as `ListAuditEvents` exports it, ready to be hashed again."""

    sequence: int
    action: str
    actor: str
    resource_id: str
    occurred_at: datetime
    attributes: Mapping[str, str]
    previous_hash: str
    hash: str

    @classmethod
    def of(cls, event: pb.AuditEvent) -> ExportedEvent:
        """The exported form of an event message."""
        return cls(
            sequence=event.sequence,
            action=pb.AuditAction.Name(event.action).removeprefix("AUDIT_ACTION_").lower(),
            actor=event.actor,
            resource_id=event.resource_id,
            occurred_at=event.occurred_at.ToDatetime(tzinfo=UTC),
            attributes=dict(event.attributes),
            previous_hash=event.previous_hash,
            hash=event.hash,
        )

    def as_json(self) -> dict[str, Any]:
        """The event as JSON data (the raw results)."""
        return {
            "sequence": self.sequence,
            "action": self.action,
            "actor": self.actor,
            "resource_id": self.resource_id,
            "occurred_at": self.occurred_at.isoformat(timespec="microseconds"),
            "attributes": dict(sorted(self.attributes.items())),
            "previous_hash": self.previous_hash,
            "hash": self.hash,
        }


def audit_hash(tenant: str, event: ExportedEvent) -> str:
    """An event's hash: SHA-256 over its canonical JSON form, the previous hash included."""
    canonical = json.dumps(
        {
            "tenant": tenant,
            "sequence": event.sequence,
            "action": event.action,
            "actor": event.actor,
            "resource": event.resource_id,
            "at": event.occurred_at.isoformat(timespec="microseconds"),
            "attributes": dict(event.attributes),
            "previous": event.previous_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_problems(events: Sequence[ExportedEvent], tenant: str) -> list[str]:
    """What breaks a tenant's whole exported chain: gaps, broken links, wrong hashes."""
    problems: list[str] = []
    previous = ""
    for expected, event in enumerate(events, start=1):
        if event.sequence != expected:
            problems.append(f"event {expected} is missing (found {event.sequence})")
            break
        if event.previous_hash != previous:
            problems.append(f"event {event.sequence} does not link to the one before")
        if audit_hash(tenant, event) != event.hash:
            problems.append(f"event {event.sequence}'s hash is not that of its content")
        previous = event.hash
    return problems


@dataclass(frozen=True)
class Expected:
    """An audit event a flow must have left: what, by whom, about what."""

    action: str
    actor: str
    resource_id: str


def missing_events(events: Sequence[ExportedEvent], expected: Sequence[Expected]) -> list[str]:
    """The expected events the log lacks (by action, actor and resource), as sentences."""
    found = {(e.action, e.actor, e.resource_id) for e in events}
    return [
        f"no {want.action} event by {want.actor} about {want.resource_id}"
        for want in expected
        if (want.action, want.actor, want.resource_id) not in found
    ]


def untimely_events(
    events: Sequence[ExportedEvent], started: datetime, ended: datetime
) -> list[str]:
    """Events whose times fall outside the run."""
    return [
        f"event {event.sequence} is dated {event.occurred_at.isoformat()}"
        for event in events
        if not started <= event.occurred_at <= ended
    ]


def out_of_order(events: Sequence[ExportedEvent]) -> list[str]:
    """Events dated before the one they follow in the chain (a step's time is when it began).

    Not a failure: appends are serialized, but each step dates its events when
    it starts, so a step that waited for the tenant's chain lands after one
    that began later.
    """
    return [
        f"event {event.sequence} ({event.action}) is dated "
        f"{(before.occurred_at - event.occurred_at).total_seconds() * 1000:.0f} ms before "
        f"event {before.sequence} ({before.action})"
        for before, event in itertools.pairwise(events)
        if event.occurred_at < before.occurred_at
    ]


# -- Refusals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """How a call was answered: allowed, or refused with a status and reason."""

    allowed: bool
    code: str = ""
    reason: str = ""

    @classmethod
    def of(cls, error: ConductorError) -> Refusal:
        """The refusal an SDK error carries."""
        return cls(False, error.code.name, error.reason.name)


async def answered(call: Awaitable[object]) -> Refusal:
    """How the platform answered `call`."""
    try:
        await call
    except ConductorError as error:
        return Refusal.of(error)
    return Refusal(allowed=True)


def refused_as(refusal: Refusal, code: grpc.StatusCode, reason: str = "") -> bool:
    """Whether `refusal` refused with `code` (and `reason`, when given)."""
    return not refusal.allowed and refusal.code == code.name and reason in {"", refusal.reason}


# -- The lane ---------------------------------------------------------------------------------


@dataclass
class Flow:
    """One request → approval → claim, as the requester and the audit log see it."""

    request_id: str
    grant: JitGrant
    expected: list[Expected] = field(default_factory=list)


@dataclass
class Expiry:
    """What probing a short-lived grant's token found around its end."""

    grant_id: str
    ends_at: datetime
    used_before_end: Refusal
    last_accepted_s: float | None = None
    refused_after_s: float | None = None
    refusal: Refusal | None = None
    probes: int = 0


@dataclass(frozen=True)
class Revocation:
    """A JIT token revoked while in use: how it was answered before and after."""

    flow: Flow
    before: Refusal
    elapsed_ms: float
    refusal: Refusal
    graphql_reason: str

    def as_json(self) -> dict[str, Any]:
        """The revocation as JSON data (the raw results)."""
        return {
            "grant_id": self.flow.grant.grant.id,
            "accepted_before": self.before.allowed,
            "refused_after_ms": round(self.elapsed_ms, 1),
            "code": self.refusal.code,
            "reason": self.refusal.reason,
            "graphql_reason": self.graphql_reason,
        }


def _at(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def run(context: Context) -> None:
    """Check the Access/JIT lane's criteria against the deployment."""
    started = datetime.now(UTC) - timedelta(seconds=1)
    tenant = context.tenant()
    context.showcase["approvals"] = tenant  # the console page the evidence bundle shows
    async with (
        context.client(tenant, (), subject=REQUESTER) as requester,
        context.client(tenant, APPROVER_SCOPES, subject=APPROVER) as approver,
        context.client(tenant, AUDITOR_SCOPES, subject=AUDITOR) as auditor,
    ):
        # The short grant first: its expiry is waited for while the rest is checked.
        short = await _flow(requester, approver, lasting=_shortest_grant())
        expiry = asyncio.create_task(_probe_expiry(context, short.grant))
        revoked = await _guarded(context, REFUSED, _revocations(context, requester, approver))
        privileged = await _guarded(
            context, LEAST_PRIVILEGE, _least_privilege(context, tenant, requester, approver)
        )
        ended = await expiry
        flows = [revocation.flow for revocation in revoked or []]
        flows += [short, *([privileged] if privileged is not None else [])]
        if revoked is not None:
            _judge_refusals(context, revoked, ended)
        short.expected.append(Expected("expire", "system", short.grant.grant.id))
        await _recorded_expired(approver, short.grant.grant.id, ended.ends_at)
        await _guarded(context, LOGGED, _logged(context, tenant, auditor, flows, started))
    # Recorded as they finished; listed in the order the pack states them.
    context.checks.sort(
        key=lambda check: CRITERIA.index(check.name) if check.name in CRITERIA else 0
    )


async def _guarded(context: Context, name: str, check: Coroutine[Any, Any, T]) -> T | None:
    """Run one criterion's check; an error in it is that criterion's failure, not the lane's."""
    return await context.guarded(Criterion(name, THRESHOLDS[name]), check)


def _shortest_grant() -> timedelta:
    """How long to ask for so the grant ends at a whole second, four to five seconds ahead.

    Grants end on whole seconds after the second they start in; the seconds
    before the end leave time to approve, claim and use the token on a busy
    machine (the wait for the end runs beside the other checks).
    """
    now = datetime.now(UTC)
    return now.replace(microsecond=0) + timedelta(seconds=SHORT_GRANT_S) - now


async def _flow(requester: AsyncClient, approver: AsyncClient, *, lasting: timedelta) -> Flow:
    """Request `GRANTED` for `lasting` (the SDK's JIT helper), approved by the approver."""
    approved: list[str] = []

    async def approve(request: pb.AccessRequest) -> None:
        await approver.access.approve_access(id=request.id, comment="acceptance: approved")
        approved.append(request.id)

    grant = await request_jit_async(
        requester, list(GRANTED), lasting=lasting, reason=REASON, poll_s=0.02, on_pending=approve
    )
    request_id, grant_id = grant.grant.access_request_id, grant.grant.id
    flow = Flow(request_id, grant)
    flow.expected += [
        Expected("request", REQUESTER, request_id),
        Expected("review", APPROVER, request_id),
        Expected("approve", APPROVER, request_id),
        Expected("mint", "system", grant_id),
        Expected("claim", REQUESTER, grant_id),
    ]
    if approved != [request_id]:
        raise RuntimeError("the JIT helper did not wait for the approver's approval")
    return flow


def _jit_client(context: Context, grant: JitGrant) -> AsyncClient:
    """A client bearing a JIT token as it is (the SDK's token source stops at the end itself)."""
    return AsyncClient(context.grpc_target, INSECURE, token=bearer_token(grant.token), retry=None)


async def _probe_expiry(context: Context, grant: JitGrant) -> Expiry:
    """Use a short grant's token before its end, then probe it until it is refused."""
    ends_at = grant.ends_at
    async with _jit_client(context, grant) as jit:
        used = await answered(jit.access.list_audit_events())
        found = Expiry(grant.grant.id, ends_at, used)
        give_up = ends_at.timestamp() + EXPIRY_SLACK_S + 2.0
        await asyncio.sleep(max(0.0, ends_at.timestamp() - time.time() - 0.2))
        while time.time() < give_up:
            probed_at = time.time()
            outcome = await answered(jit.access.list_audit_events())
            found.probes += 1
            if not outcome.allowed:
                found.refused_after_s = probed_at - ends_at.timestamp()
                found.refusal = outcome
                break
            found.last_accepted_s = probed_at - ends_at.timestamp()
            await asyncio.sleep(EXPIRED_POLL_S)
    return found


async def _revocations(
    context: Context, requester: AsyncClient, approver: AsyncClient
) -> list[Revocation]:
    """JIT tokens that work, revoked by the approver: how soon is each refused?"""
    timed: list[Revocation] = []
    for _ in range(REVOCATIONS_QUICK if context.quick else REVOCATIONS_FULL):
        flow = await _flow(requester, approver, lasting=timedelta(minutes=10))
        async with _jit_client(context, flow.grant) as jit:
            before = await answered(jit.access.list_audit_events())
            await approver.access.revoke_grant(grant_id=flow.grant.grant.id, reason=REASON)
            revoked_at = time.perf_counter()
            refusal = Refusal(allowed=True)
            while time.perf_counter() - revoked_at < REVOCATION_BOUND_MS / 1000 * 3:
                refusal = await answered(jit.access.list_audit_events())
                if not refusal.allowed:
                    break
                await asyncio.sleep(REVOKED_POLL_S)
            elapsed_ms = (time.perf_counter() - revoked_at) * 1000
        _, body, _ = await context.graphql(flow.grant.token, "{ verifyAuditChain { valid } }")
        errors = body.get("errors") or [{}]
        graphql_reason = str(errors[0].get("extensions", {}).get("reason", "")) or "accepted"
        flow.expected.append(Expected("revoke", APPROVER, flow.grant.grant.id))
        timed.append(Revocation(flow, before, elapsed_ms, refusal, graphql_reason))
    return timed


def _judge_refusals(context: Context, revoked: list[Revocation], expiry: Expiry) -> None:
    """Record the refusal criterion from the timed revocations and the expiry probe."""
    problems: list[str] = []
    for revocation in revoked:
        grant = revocation.flow.grant.grant.id
        refusal = revocation.refusal
        if not revocation.before.allowed:
            problems.append(
                f"grant {grant}'s token was refused before revocation ({revocation.before.code})"
            )
        if not refused_as(refusal, grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_TOKEN_REVOKED"):
            problems.append(f"grant {grant}'s revoked token: {refusal.code or 'accepted'}")
        elif revocation.elapsed_ms > REVOCATION_BOUND_MS:
            problems.append(
                f"grant {grant}'s token refused {revocation.elapsed_ms:.0f} ms after revocation"
            )
        if revocation.graphql_reason != "ERROR_REASON_TOKEN_REVOKED":
            problems.append(
                f"grant {grant}'s revoked token over GraphQL: {revocation.graphql_reason}"
            )
    if not expiry.used_before_end.allowed:
        problems.append(
            f"the short grant's token was refused before its end ({expiry.used_before_end.code})"
        )
    bound_s = EXPIRY_SLACK_S
    if expiry.refusal is None or expiry.refused_after_s is None:
        problems.append(
            f"the short grant's token was still accepted {bound_s + 2:.0f} s after its end"
        )
    elif not refused_as(
        expiry.refusal, grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_TOKEN_EXPIRED"
    ):
        problems.append(f"the expired token: {expiry.refusal.code} {expiry.refusal.reason}")
    elif expiry.refused_after_s > bound_s:
        problems.append(
            f"the expired token was refused {expiry.refused_after_s:.1f} s after its end"
        )
    revocation_ms = [revocation.elapsed_ms for revocation in revoked]
    worst = max(revocation_ms, default=0.0)
    expired_ms = (expiry.refused_after_s or 0.0) * 1000
    context.raw(
        "refusals",
        {
            "revocations": [revocation.as_json() for revocation in revoked],
            "expiry": {
                "grant_id": expiry.grant_id,
                "grant_ends_at": expiry.ends_at.isoformat(),
                "accepted_before_end": expiry.used_before_end.allowed,
                "last_accepted_after_end_ms": _ms(expiry.last_accepted_s),
                "refused_after_end_ms": _ms(expiry.refused_after_s),
                "code": expiry.refusal.code if expiry.refusal else "",
                "reason": expiry.refusal.reason if expiry.refusal else "",
                "probes": expiry.probes,
            },
        },
    )
    context.check(
        REFUSED,
        threshold=(
            f"revoked: refused ≤ {REVOCATION_BOUND_MS:.0f} ms; expired: refused ≤ "
            f"{EXPIRY_SLACK_S:g} s after the grant's end; UNAUTHENTICATED"
        ),
        measured=(
            f"revoked: refused after {worst:.0f} ms (worst of {len(revocation_ms)}, p50 "
            f"{percentile(revocation_ms, 0.5):.0f} ms); expired: refused {expired_ms:.0f} ms "
            "after the grant's end"
        ),
        passed=not problems and bool(revoked),
        value=worst,
        detail="; ".join(problems)[:500]
        or (
            "UNAUTHENTICATED with TOKEN_REVOKED (gRPC and GraphQL) / TOKEN_EXPIRED; the shortest "
            f"grant asked for ended {expiry.ends_at.isoformat()}; its token was last accepted "
            f"{abs(expiry.last_accepted_s or 0.0) * 1000:.0f} ms "
            f"{'after' if (expiry.last_accepted_s or 0.0) > 0 else 'before'} that end and "
            f"refused {_ms(expiry.refused_after_s)} ms after it"
        ),
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def _least_privilege(
    context: Context, tenant: uuid.UUID, requester: AsyncClient, approver: AsyncClient
) -> Flow:
    """Scopes allow exactly their RPCs; a JIT token carries only its grant; tenants are apart."""
    problems: list[str] = []
    probes: list[dict[str, Any]] = []
    for scope, probe in SCOPE_PROBES.items():
        others = [other for other in SCOPE_PROBES if other != scope]
        async with context.client(tenant, others, subject="acceptance-least") as without:
            refusal = await answered(probe(without))
        async with context.client(tenant, [scope], subject="acceptance-least") as holding:
            allowed = await answered(probe(holding))
        if not refused_as(refusal, grpc.StatusCode.PERMISSION_DENIED):
            problems.append(f"without {scope}: {refusal.code or 'allowed'}")
        if not allowed.allowed:
            problems.append(f"with {scope}: refused {allowed.code}")
        probes.append(
            {"scope": scope, "without": refusal.code or "allowed", "with": allowed.allowed}
        )

    jit_flow = await _flow(requester, approver, lasting=timedelta(minutes=10))
    jit_calls: dict[str, Refusal] = {}
    async with _jit_client(context, jit_flow.grant) as jit:
        for scope, probe in SCOPE_PROBES.items():
            jit_calls[scope] = await answered(probe(jit))
        jit_calls["VerifyAuditChain"] = await answered(jit.access.verify_audit_chain())
        status, body, _ = await context.graphql(jit_flow.grant.token, "{ caller { scopes jit } }")
    caller = (body.get("data") or {}).get("caller") or {}
    for name, outcome in jit_calls.items():
        wanted = name in GRANTED or name == "VerifyAuditChain"
        if wanted and not outcome.allowed:
            problems.append(f"the JIT token was refused {name}'s RPC ({outcome.code})")
        if not wanted and not refused_as(outcome, grpc.StatusCode.PERMISSION_DENIED):
            problems.append(f"the JIT token was not refused {name}'s RPC")
    if status != 200 or caller != {"scopes": list(GRANTED), "jit": True}:
        problems.append(f"GraphQL caller of the JIT token: {caller or status}")

    isolation = await _tenants_apart(context, requester, approver, jit_flow)
    problems += isolation.pop("problems")
    context.raw(
        "least_privilege",
        {
            "scopes": probes,
            "jit": {
                "granted": list(GRANTED),
                "calls": {name: o.code or "allowed" for name, o in jit_calls.items()},
                "graphql_caller": caller,
            },
            "other_tenant": isolation,
        },
    )
    context.check(
        LEAST_PRIVILEGE,
        threshold=THRESHOLDS[LEAST_PRIVILEGE],
        measured=(
            f"{sum(p['without'] == 'PERMISSION_DENIED' for p in probes)}/{len(probes)} scopes "
            f"refused without, allowed with; JIT token allowed {len(GRANTED) + 1}, refused "
            f"{len(jit_calls) - len(GRANTED) - 1} RPCs; other tenant saw "
            f"{isolation['seen']} of this tenant's records"
        ),
        passed=not problems,
        value=float(len(problems)),
        detail="; ".join(problems)[:500]
        or f"probes: {', '.join(SCOPE_PROBES)}; the JIT grant: {', '.join(GRANTED)}",
    )
    return jit_flow


async def _tenants_apart(
    context: Context, requester: AsyncClient, approver: AsyncClient, flow: Flow
) -> dict[str, Any]:
    """Another tenant's approver, requester and auditor: what of this tenant do they reach?"""
    pending = await requester.access.request_access(
        scope=list(GRANTED),
        expires_at=_at(datetime.now(UTC) + timedelta(minutes=10)),
        reason=REASON,
    )
    mine = {flow.request_id, pending.access_request.id}
    other = context.tenant()
    seen: list[str] = []
    calls: dict[str, str] = {}
    async with (
        context.client(other, APPROVER_SCOPES, subject=APPROVER) as their_approver,
        context.client(other, (), subject=REQUESTER) as their_requester,
        context.client(other, AUDITOR_SCOPES, subject=AUDITOR) as their_auditor,
    ):
        listed = await their_approver.access.list_access_requests()
        seen += [r.id for r in listed.access_requests if r.id in mine]
        grants = await their_approver.access.list_grants()
        seen += [g.id for g in grants.grants if g.id == flow.grant.grant.id]
        events = await their_auditor.access.list_audit_events()
        seen += [e.id for e in events.events if e.resource_id in {*mine, flow.grant.grant.id}]
        request_id, grant_id = flow.request_id, flow.grant.grant.id
        attempts: dict[str, Callable[[], Awaitable[object]]] = {
            "GetAccessRequest (approver)": lambda: their_approver.access.get_access_request(
                id=request_id
            ),
            "GetAccessRequest (same subject)": lambda: their_requester.access.get_access_request(
                id=request_id
            ),
            "ApproveAccess": lambda: their_approver.access.approve_access(
                id=pending.access_request.id
            ),
            "ClaimGrant (same subject)": lambda: their_requester.access.claim_grant(
                grant_id=grant_id
            ),
            "RevokeGrant (approver)": lambda: their_approver.access.revoke_grant(grant_id=grant_id),
        }
        for name, attempt in attempts.items():
            calls[name] = (await answered(attempt())).code or "allowed"
    status, body, _ = await context.graphql(
        context.token(other, APPROVER_SCOPES, subject=APPROVER), "{ accessRequests { id } }"
    )
    graphql_ids = [r["id"] for r in (body.get("data") or {}).get("accessRequests") or []]
    seen += [found for found in graphql_ids if found in mine]
    problems = (
        [f"the other tenant reached this tenant's records: {sorted(set(seen))}"] if seen else []
    )
    problems += [
        f"the other tenant's {name}: {code}" for name, code in calls.items() if code != "NOT_FOUND"
    ]
    if status != 200:
        problems.append(f"GraphQL accessRequests of the other tenant: HTTP {status}")
    # Leave nothing pending behind: the request is denied by its own tenant's approver.
    await approver.access.deny_access(id=pending.access_request.id, comment="acceptance: done")
    return {
        "seen": len(seen),
        "calls": calls,
        "graphql_ids": len(graphql_ids),
        "problems": problems,
    }


async def _recorded_expired(approver: AsyncClient, grant_id: str, ends_at: datetime) -> None:
    """Wait (a bounded while) for the expiry job to record an ended grant as expired."""
    give_up = max(time.time(), ends_at.timestamp()) + EXPIRY_RECORDED_WAIT_S
    while time.time() < give_up:
        grants = await approver.access.list_grants(status=pb.GRANT_STATUS_EXPIRED)
        if any(grant.id == grant_id for grant in grants.grants):
            return
        await asyncio.sleep(0.1)


async def _logged(
    context: Context,
    tenant: uuid.UUID,
    auditor: AsyncClient,
    flows: Sequence[Flow],
    started: datetime,
) -> None:
    """The audit log holds every step with its actor and time, and its chain verifies."""
    exported = [ExportedEvent.of(event) async for event in auditor.access.iter_audit_events()]
    ended = datetime.now(UTC) + timedelta(seconds=1)
    verdict = await auditor.access.verify_audit_chain()
    status, body, _ = await context.graphql(
        context.token(tenant, AUDITOR_SCOPES, subject=AUDITOR),
        "{ verifyAuditChain { valid eventsChecked } auditEvents { events { sequence hash } } }",
    )
    data = body.get("data") or {}
    problems = chain_problems(exported, str(tenant))
    problems += missing_events(exported, [want for flow in flows for want in flow.expected])
    problems += untimely_events(exported, started, ended)
    reordered = out_of_order(exported)
    if not verdict.valid or verdict.events_checked != len(exported):
        problems.append(
            f"VerifyAuditChain: valid={verdict.valid}, {verdict.events_checked} events checked "
            f"of {len(exported)} exported ({verdict.problem})"
        )
    graphql_chain = data.get("verifyAuditChain") or {}
    graphql_events = (data.get("auditEvents") or {}).get("events") or []
    hashes = {event.sequence: event.hash for event in exported}
    if status != 200 or not graphql_chain.get("valid"):
        problems.append(f"GraphQL verifyAuditChain: {graphql_chain or status}")
    if not graphql_events or any(
        hashes.get(int(event["sequence"])) != event["hash"] for event in graphql_events
    ):
        problems.append("GraphQL auditEvents differ from ListAuditEvents")
    counts: dict[str, int] = {}
    for event in exported:
        counts[event.action] = counts.get(event.action, 0) + 1
    context.raw(
        "audit",
        {
            "tenant_id": str(tenant),
            "exported_via": "AccessService/ListAuditEvents (all pages)",
            "events": [event.as_json() for event in exported],
            "flows": [
                {"request_id": flow.request_id, "grant_id": flow.grant.grant.id} for flow in flows
            ],
            "dated_before_the_event_they_follow": reordered,
            "chain": {
                "recomputed_offline": not chain_problems(exported, str(tenant)),
                "verify_audit_chain": {
                    "valid": verdict.valid,
                    "events_checked": verdict.events_checked,
                    "problem": verdict.problem,
                },
                "graphql_verify_audit_chain": graphql_chain,
            },
        },
    )
    summary = ", ".join(f"{count} {action}" for action, count in sorted(counts.items()))
    context.check(
        LOGGED,
        threshold=THRESHOLDS[LOGGED],
        measured=(
            f"{len(exported)} events ({summary}); chain "
            f"{'verified' if not problems else 'NOT verified'} offline and by VerifyAuditChain"
        ),
        passed=not problems and bool(exported),
        value=float(len(exported)),
        detail="; ".join(problems)[:500]
        or (
            f"{len(flows)} JIT flows; every event with its actor and a time within the run"
            + (f"; {len(reordered)} dated before the event they follow" if reordered else "")
        ),
    )
