"""Graph imports: staged batch by batch, merged into the tenant's graph in one transaction.

An ImportGraph stream arrives at the client's pace. Each batch is written to
the staging tables in a short transaction of its own, so no transaction (and
no pooled connection) is held while the server waits for the client. When
the stream ends, one transaction checks that every staged relationship names
an entity of the graph or of the import, merges the staged rows into the
graph (upserts by id: the last write of an id wins), bumps the graph revision
and clears the staging: the import appears whole or not at all. A stream that
fails or is cut off has its staged rows deleted at once; rows a crashed
process left behind are swept by `sweep_abandoned`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import InvalidArgument
from servers.analytics import store
from servers.analytics.store import results
from servers.db import Database, utc_now

#: Rows per INSERT statement when staging: a batch of 5,000 in one statement held the
#: event loop ~100 ms preparing its parameters; in fifths, other calls run in between.
CHUNK = 1000


@dataclass(frozen=True)
class Imported:
    """What an import merged, and the graph revision it made."""

    entities: int
    relationships: int
    revision: int


def _entity_rows(batch: Any, tenant: uuid.UUID, import_id: uuid.UUID, now: datetime) -> list[Any]:
    rows = []
    for index, entity in enumerate(batch.entities):
        if not entity.id:
            raise InvalidArgument("every entity needs an id", field=f"entities[{index}].id")
        rows.append(
            {
                "tenant_id": tenant,
                "import_id": import_id,
                "id": entity.id,
                "type": entity.type,
                "label": entity.label,
                "staged_at": now,
            }
        )
    return rows


def _relationship_rows(
    batch: Any, tenant: uuid.UUID, import_id: uuid.UUID, now: datetime
) -> list[Any]:
    rows = []
    for index, relationship in enumerate(batch.relationships):
        if not (relationship.id and relationship.source_id and relationship.target_id):
            raise InvalidArgument(
                "every relationship needs an id, a source_id and a target_id",
                field=f"relationships[{index}]",
            )
        rows.append(
            {
                "tenant_id": tenant,
                "import_id": import_id,
                "id": relationship.id,
                "source_id": relationship.source_id,
                "target_id": relationship.target_id,
                "type": relationship.type,
                "weight": relationship.weight,
                "staged_at": now,
            }
        )
    return rows


class GraphImport:
    """One import of one tenant: stage batches, then commit (or discard) them all.

    Args:
        database: The store.
        tenant: Whose graph.
        clock: The current time (staged rows are stamped, for the sweep).
    """

    def __init__(
        self, database: Database, tenant: uuid.UUID, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.id = uuid.uuid4()
        self._database = database
        self._tenant = tenant
        self._clock = clock

    async def stage(self, batch: Any) -> None:
        """Write one batch to the staging tables, in a transaction of its own.

        Raises:
            InvalidArgument: An id is empty (weights are held to their bounds by the contract).
        """
        now = self._clock()
        entities = _entity_rows(batch, self._tenant, self.id, now)
        relationships = _relationship_rows(batch, self._tenant, self.id, now)
        async with self._database.tenant_session(self._tenant) as session:
            await store.stage(session, entities, relationships, CHUNK)

    async def commit(self) -> Imported:
        """Merge the staged rows into the graph and bump its revision, all at once.

        Raises:
            InvalidArgument: A staged relationship names an entity that neither
                the graph nor the import has.
        """
        async with self._database.tenant_session(self._tenant) as session:
            await store.check_endpoints(session, self.id)
            entities, relationships = await store.staged_counts(session, self.id)
            await store.merge_staged(session, self._tenant, self.id)
            now = self._clock()
            revision = await store.bump_revision(session, self._tenant, now)
            await results.request(session, revision, relationships, now)
            await store.clear_staged(session, self.id)
            await session.flush()
            return Imported(entities, relationships, revision)

    async def discard(self) -> None:
        """Delete whatever this import staged (nothing once it has committed)."""
        async with self._database.tenant_session(self._tenant) as session:
            await store.clear_staged(session, self.id)


async def import_graph(
    database: Database, tenant: uuid.UUID, batches: AsyncIterator[Any]
) -> Imported:
    """Stage every batch of `batches`, then commit them as one new graph revision.

    Whatever happens (a refused batch, a stream cut off, a cancelled call), the
    staged rows are gone when this returns or raises.
    """
    staging = GraphImport(database, tenant)
    try:
        async for batch in batches:
            await staging.stage(batch)
        return await staging.commit()
    finally:
        # Shielded: a cancelled call still cleans up after itself.
        await asyncio.shield(staging.discard())


async def sweep_abandoned(database: Database, older_than: timedelta) -> int:
    """Delete staged rows older than `older_than` (imports a crashed process left); how many."""
    cutoff = utc_now() - older_than
    async with database.platform_session() as session:
        return await store.sweep_staged(session, cutoff)
