"""The tenant's hash-chained audit log: append under a per-tenant lock, verify end to end.

Also the audit use cases: a page of the chain, verifying it, exporting it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from core.pagination import Page
from interceptors.tokens import Principal
from servers.access import store
from servers.access.domain import GENESIS, AuditFacts, ChainCheck, audit_hash, verify_chain
from servers.access.steps import Listed, Step
from servers.access.store import AuditEventRow
from servers.db import Database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


async def append_audit(
    session: AsyncSession,
    *,
    tenant: uuid.UUID,
    action: str,
    actor: str,
    resource_id: str,
    at: datetime,
    attributes: Mapping[str, str] | None = None,
) -> AuditEventRow:
    """Append one event to the tenant's chain, in the caller's transaction.

    Appends to one tenant's chain are serialized (an advisory transaction lock
    on PostgreSQL; SQLite's write lock), so sequences stay gapless and each
    event links to the one before it.
    """
    await store.lock_audit_chain(session, tenant)
    last = await store.last_audit_link(session)
    facts = AuditFacts(
        tenant_id=str(tenant),
        sequence=last.sequence + 1 if last else 1,
        action=action,
        actor=actor,
        resource_id=resource_id,
        occurred_at=at,
        attributes={key: str(value) for key, value in (attributes or {}).items()},
        previous_hash=last.hash if last else GENESIS,
    )
    row = AuditEventRow(
        sequence=facts.sequence,
        action=action,
        actor=actor,
        resource_id=resource_id,
        occurred_at=at,
        attributes=dict(facts.attributes),
        previous_hash=facts.previous_hash,
        hash=audit_hash(facts),
    )
    await store.add(session, row)
    return row


def facts_of(row: AuditEventRow) -> AuditFacts:
    """The hashed content of a stored event."""
    return AuditFacts(
        tenant_id=str(row.tenant_id),
        sequence=row.sequence,
        action=row.action,
        actor=row.actor,
        resource_id=row.resource_id,
        occurred_at=row.occurred_at,
        attributes=row.attributes,
        previous_hash=row.previous_hash,
    )


async def verify_audit_chain(session: AsyncSession) -> ChainCheck:
    """Recompute the session tenant's whole chain."""
    rows = await store.audit_chain(session)
    return verify_chain([(facts_of(row), row.hash) for row in rows])


def export_line(row: AuditEventRow) -> dict[str, object]:
    """One event as a JSON Lines record, with everything needed to re-verify the chain offline."""
    return {
        "tenant_id": str(row.tenant_id),
        "sequence": row.sequence,
        "id": str(row.id),
        "action": row.action,
        "actor": row.actor,
        "resource_id": row.resource_id,
        "occurred_at": row.occurred_at.isoformat(timespec="microseconds"),
        "attributes": row.attributes,
        "previous_hash": row.previous_hash,
        "hash": row.hash,
    }


async def export_audit(database: Database, tenant: uuid.UUID, sink: TextIO) -> int:
    """Write the tenant's whole chain to `sink` as JSON Lines, oldest first; how many events."""
    written = 0
    async with database.tenant_session(tenant, readonly=True) as session:
        async for row in store.stream_audit_chain(session):
            sink.write(json.dumps(export_line(row), sort_keys=True) + "\n")
            written += 1
    return written


def facts_from_line(line: dict[str, object]) -> tuple[AuditFacts, str]:
    """An exported record back as (facts, hash), for `verify_chain`."""
    attributes = line["attributes"]
    assert isinstance(attributes, dict)
    return (
        AuditFacts(
            tenant_id=str(line["tenant_id"]),
            sequence=int(str(line["sequence"])),
            action=str(line["action"]),
            actor=str(line["actor"]),
            resource_id=str(line["resource_id"]),
            occurred_at=datetime.fromisoformat(str(line["occurred_at"])),
            attributes={str(key): str(value) for key, value in attributes.items()},
            previous_hash=str(line["previous_hash"]),
        ),
        str(line["hash"]),
    )


class AuditLog(Step):
    """The audit use cases of the API: a page of the chain, and verifying it."""

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
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = await store.page_of_audit_events(
                session,
                page,
                action=action,
                actor=actor,
                resource_id=resource_id,
                since=since,
                until=until,
            )
        return Listed(rows[: page.size], page.next_token(rows, lambda row: (row.sequence,)))

    async def verify_chain(self, principal: Principal) -> ChainCheck:
        """Recompute the caller's tenant's audit chain."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            return await verify_audit_chain(session)
