"""The Access/JIT acceptance lane against an in-process platform; and its judgments failing."""

from __future__ import annotations

import dataclasses
import doctest
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from intelgraph.sdk import JitGrant
from intelgraph.sdk import access as pb

from servers.acceptance import Context, access
from servers.access.domain import AuditFacts
from servers.access.domain import audit_hash as platform_audit_hash
from tests.support.acceptance import failures, run_lane
from tests.support.serving import serving

CHECKS = [access.LOGGED, access.REFUSED, access.LEAST_PRIVILEGE]
RAW = ("audit", "refusals", "least_privilege")
#: A JSON Web Token: a header and claims (base64url JSON objects) and a signature.
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


async def test_the_lane_passes_and_writes_its_raw_results(tmp_path: Path) -> None:
    # The default leeway (10 s): a just-in-time token owes none, ending with its grant.
    async with serving(tmp_path / "var") as platform:
        checks = await run_lane(platform, "access", tmp_path / "out")
    assert failures(checks) == []
    assert [check.name for check in checks] == CHECKS
    raw = tmp_path / "out" / "raw" / "access"
    found = {name: json.loads((raw / f"{name}.json").read_text()) for name in RAW}
    actions = {event["action"] for event in found["audit"]["events"]}
    assert actions >= {"request", "review", "approve", "mint", "claim", "revoke", "expire"}
    assert found["audit"]["chain"]["recomputed_offline"] is True
    assert found["audit"]["chain"]["verify_audit_chain"]["valid"] is True
    expiry = found["refusals"]["expiry"]
    assert expiry["reason"] == "ERROR_REASON_TOKEN_EXPIRED"
    assert expiry["refused_after_end_ms"] <= access.EXPIRY_SLACK_S * 1000
    assert all(
        r["reason"] == "ERROR_REASON_TOKEN_REVOKED" for r in found["refusals"]["revocations"]
    )
    assert found["least_privilege"]["other_tenant"]["seen"] == 0
    written = "".join((raw / f"{name}.json").read_text() for name in RAW)
    assert not JWT.search(written)  # no bearer token in the raw results


# -- each judgment can fail ------------------------------------------------------------------

TENANT = "0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e"
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def chain(*actions: tuple[str, str, str]) -> list[access.ExportedEvent]:
    """A valid exported chain of (action, actor, resource) events, a second apart."""
    events: list[access.ExportedEvent] = []
    previous = ""
    for sequence, (action, actor, resource) in enumerate(actions, start=1):
        unhashed = access.ExportedEvent(
            sequence=sequence,
            action=action,
            actor=actor,
            resource_id=resource,
            occurred_at=START + timedelta(seconds=sequence, microseconds=250),
            attributes={"scope": "audit.read"},
            previous_hash=previous,
            hash="",
        )
        previous = access.audit_hash(TENANT, unhashed)
        events.append(dataclasses.replace(unhashed, hash=previous))
    return events


FLOW = (
    ("request", access.REQUESTER, "r1"),
    ("review", access.APPROVER, "r1"),
    ("approve", access.APPROVER, "r1"),
    ("mint", "system", "g1"),
    ("claim", access.REQUESTER, "g1"),
)


def test_the_lane_hashes_events_exactly_as_the_platform_does() -> None:
    for event in chain(*FLOW):
        facts = AuditFacts(
            tenant_id=TENANT,
            sequence=event.sequence,
            action=event.action,
            actor=event.actor,
            resource_id=event.resource_id,
            occurred_at=event.occurred_at,
            attributes=event.attributes,
            previous_hash=event.previous_hash,
        )
        assert access.audit_hash(TENANT, event) == platform_audit_hash(facts) == event.hash


def test_an_edited_or_deleted_event_breaks_the_recomputed_chain() -> None:
    events = chain(*FLOW)
    assert access.chain_problems(events, TENANT) == []
    edited = list(events)
    edited[1] = dataclasses.replace(events[1], actor="mallory")
    assert access.chain_problems(edited, TENANT) == ["event 2's hash is not that of its content"]
    assert access.chain_problems([events[0], *events[2:]], TENANT) == [
        "event 2 is missing (found 3)"
    ]
    assert access.chain_problems(events, str(uuid.uuid4())) != []  # another tenant's chain


def test_missing_and_untimely_events_are_found() -> None:
    events = chain(*FLOW)
    wanted = [access.Expected("revoke", access.APPROVER, "g1")]
    assert access.missing_events(events, wanted) == [
        f"no revoke event by {access.APPROVER} about g1"
    ]
    assert access.untimely_events(events, START, START + timedelta(minutes=1)) == []
    assert access.untimely_events(
        events, START + timedelta(seconds=3), START + timedelta(minutes=1)
    )
    assert access.out_of_order(events) == []
    late = dataclasses.replace(events[2], occurred_at=START)
    assert access.out_of_order([*events[:2], late]) == [
        "event 3 (approve) is dated 2000 ms before event 2 (review)"
    ]


def test_refusals_must_have_the_right_status_and_reason() -> None:
    revoked = access.Refusal(False, "UNAUTHENTICATED", "ERROR_REASON_TOKEN_REVOKED")
    assert access.refused_as(revoked, grpc.StatusCode.UNAUTHENTICATED)
    assert not access.refused_as(revoked, grpc.StatusCode.PERMISSION_DENIED)
    assert not access.refused_as(
        revoked, grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_TOKEN_EXPIRED"
    )
    assert not access.refused_as(access.Refusal(allowed=True), grpc.StatusCode.UNAUTHENTICATED)


def test_a_revoked_token_still_accepted_fails_the_refusal_check(tmp_path: Path) -> None:
    def no_tokens(*_: object, **__: object) -> str:
        raise AssertionError("the judgment mints nothing")

    context = Context("access", "unused:1", "http://unused", no_tokens, tmp_path)
    grant = pb.Grant(id="g1", access_request_id="r1")
    flow = access.Flow("r1", JitGrant(grant, "token"))
    ends = datetime.now(UTC)
    expired = access.Expiry(
        grant_id="g2",
        ends_at=ends,
        used_before_end=access.Refusal(allowed=True),
        refused_after_s=0.2,
        refusal=access.Refusal(False, "UNAUTHENTICATED", "ERROR_REASON_TOKEN_EXPIRED"),
    )
    revoked = access.Refusal(False, "UNAUTHENTICATED", "ERROR_REASON_TOKEN_REVOKED")
    fine = access.Revocation(flow, access.Refusal(allowed=True), 5.0, revoked, revoked.reason)
    access._judge_refusals(context, [fine], expired)
    assert [check.passed for check in context.checks] == [True]

    context.checks.clear()
    accepted = dataclasses.replace(fine, refusal=access.Refusal(allowed=True), elapsed_ms=3000.0)
    access._judge_refusals(context, [accepted], expired)
    (check,) = context.checks
    assert not check.passed
    assert "revoked token: accepted" in check.detail

    context.checks.clear()
    late = dataclasses.replace(fine, elapsed_ms=1500.0, graphql_reason="accepted")
    overdue = dataclasses.replace(expired, refused_after_s=7.0)
    access._judge_refusals(context, [late], overdue)
    (check,) = context.checks
    assert not check.passed
    assert "1500 ms after revocation" in check.detail
    assert "over GraphQL: accepted" in check.detail
    assert "refused 7.0 s after its end" in check.detail


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(access).failed == 0
