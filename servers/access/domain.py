"""Access rules that need neither gRPC nor SQL: grant ends, the audit hash chain.

>>> from datetime import UTC, datetime, timedelta
>>> approved = datetime(2026, 5, 27, 9, 0, 0, 500_000, tzinfo=UTC)
>>> grant_end(approved, approved + timedelta(hours=8), 3600, []).isoformat()
'2026-05-27T10:00:00+00:00'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: `previous_hash` of a tenant's first audit event.
#: Policy entrypoints the workflow queries (interceptors/policies/access.rego).
REQUEST_DECISION = "intelgraph/access/request_decision"
REVIEW_DECISION = "intelgraph/access/review_decision"

GENESIS = ""


def whole_seconds(moment: datetime) -> datetime:
    """`moment` without its fraction of a second (JWT times are whole seconds)."""
    return moment.replace(microsecond=0)


def grant_end(
    approved_at: datetime,
    requested_end: datetime,
    max_duration_s: int,
    shortened_ends: Iterable[datetime | None],
) -> datetime:
    """When a grant approved at `approved_at` ends.

    The earliest of what the requester asked for, the policy's maximum from
    approval, and every approver's shortened end; in whole seconds, so that
    the JIT token's `exp` equals it exactly.
    """
    candidates = [requested_end, approved_at + timedelta(seconds=max_duration_s)]
    candidates += [end for end in shortened_ends if end is not None]
    return whole_seconds(min(candidates))


@dataclass(frozen=True)
class AuditFacts:
    """The hashed content of one audit event."""

    tenant_id: str
    sequence: int
    action: str
    actor: str
    resource_id: str
    occurred_at: datetime
    attributes: Mapping[str, str]
    previous_hash: str


def audit_hash(facts: AuditFacts) -> str:
    """The event's hash: SHA-256 over a canonical JSON form, the previous hash included."""
    canonical = json.dumps(
        {
            "tenant": facts.tenant_id,
            "sequence": facts.sequence,
            "action": facts.action,
            "actor": facts.actor,
            "resource": facts.resource_id,
            "at": facts.occurred_at.isoformat(timespec="microseconds"),
            "attributes": dict(facts.attributes),
            "previous": facts.previous_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """The result of verifying a tenant's audit chain."""

    valid: bool
    events_checked: int
    first_invalid_sequence: int = 0
    problem: str = ""


def verify_chain(events: Sequence[tuple[AuditFacts, str]]) -> ChainCheck:
    """Check (facts, stored hash) pairs in sequence order: hashes, links, no gaps from 1."""
    previous = GENESIS
    for expected_sequence, (facts, stored_hash) in enumerate(events, start=1):
        if facts.sequence != expected_sequence:
            return ChainCheck(False, expected_sequence - 1, expected_sequence, "missing sequence")
        if facts.previous_hash != previous:
            return ChainCheck(False, expected_sequence - 1, facts.sequence, "broken link")
        if audit_hash(facts) != stored_hash:
            return ChainCheck(False, expected_sequence - 1, facts.sequence, "hash mismatch")
        previous = stored_hash
    return ChainCheck(True, len(events))
