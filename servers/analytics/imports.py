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
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidArgument, quoted
from servers.analytics.store import (
    EntityRow,
    GraphRevisionRow,
    RelationshipRow,
    StagedEntityRow,
    StagedRelationshipRow,
)
from servers.db import ALL_TENANTS, Database, copy_rows, utc_now

#: Rows per INSERT statement when staging.
CHUNK = 5000


@dataclass(frozen=True)
class Imported:
    """What an import merged, and the graph revision it made."""

    entities: int
    relationships: int
    revision: int


def _dialect(session: AsyncSession) -> Any:
    """The dialect module whose `insert` has ON CONFLICT (postgresql or sqlite)."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def _upsert(session: AsyncSession, model: Any, key: Iterable[str], columns: Iterable[str]) -> Any:
    statement = _dialect(session).insert(model)
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={column: getattr(statement.excluded, column) for column in columns},
    )


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
        key = ("tenant_id", "import_id", "id")
        async with self._database.tenant_session(self._tenant) as session:
            for start in range(0, len(entities), CHUNK):
                await session.execute(
                    _upsert(session, StagedEntityRow, key, ("type", "label", "staged_at")),
                    entities[start : start + CHUNK],
                )
            columns = ("source_id", "target_id", "type", "weight", "staged_at")
            for start in range(0, len(relationships), CHUNK):
                await session.execute(
                    _upsert(session, StagedRelationshipRow, key, columns),
                    relationships[start : start + CHUNK],
                )

    async def commit(self) -> Imported:
        """Merge the staged rows into the graph and bump its revision, all at once.

        Raises:
            InvalidArgument: A staged relationship names an entity that neither
                the graph nor the import has.
        """
        async with self._database.tenant_session(self._tenant) as session:
            await self._check_endpoints(session)
            entities = await self._count(session, StagedEntityRow)
            relationships = await self._count(session, StagedRelationshipRow)
            await self._merge(session)
            row = await session.get(GraphRevisionRow, self._tenant, with_for_update=True)
            if row is None:
                row = GraphRevisionRow(
                    tenant_id=self._tenant, revision=0, entities=0, relationships=0
                )
                session.add(row)
            row.revision += 1
            row.updated_at = self._clock()
            row.entities = int(
                await session.scalar(select(func.count()).select_from(EntityRow)) or 0
            )
            row.relationships = int(
                await session.scalar(select(func.count()).select_from(RelationshipRow)) or 0
            )
            await self._clear(session)
            await session.flush()
            return Imported(entities, relationships, row.revision)

    async def discard(self) -> None:
        """Delete whatever this import staged (nothing once it has committed)."""
        async with self._database.tenant_session(self._tenant) as session:
            await self._clear(session)

    async def _count(self, session: AsyncSession, model: Any) -> int:
        query = select(func.count()).select_from(model).where(model.import_id == self.id)
        return int(await session.scalar(query) or 0)

    async def _clear(self, session: AsyncSession) -> None:
        for model in (StagedRelationshipRow, StagedEntityRow):
            await session.execute(delete(model).where(model.import_id == self.id))

    async def _check_endpoints(self, session: AsyncSession) -> None:
        staged = StagedRelationshipRow
        for endpoint in (staged.source_id, staged.target_id):
            unknown = _unknown(endpoint, self.id)
            example = await session.scalar(
                select(endpoint).where(staged.import_id == self.id, unknown).limit(1)
            )
            if example is None:
                continue
            missing = await session.scalar(
                select(func.count(endpoint.distinct())).where(staged.import_id == self.id, unknown)
            )
            raise InvalidArgument(
                f"relationships name {missing} unknown entities (as {endpoint.key}), "
                f"e.g. {quoted(example)}",
                field="relationships",
                metadata={"unknown_entity": example},
            )

    async def _merge(self, session: AsyncSession) -> None:
        entities = select(
            StagedEntityRow.tenant_id,
            StagedEntityRow.id,
            StagedEntityRow.type,
            StagedEntityRow.label,
        ).where(StagedEntityRow.import_id == self.id)
        entity_copy = copy_rows(
            _dialect(session).insert(EntityRow),
            ("tenant_id", "id", "type", "label"),
            entities,
            self._tenant,
        )
        await session.execute(
            entity_copy.on_conflict_do_update(
                index_elements=["tenant_id", "id"],
                set_={"type": entity_copy.excluded.type, "label": entity_copy.excluded.label},
            )
        )
        staged = StagedRelationshipRow
        relationships = select(
            staged.tenant_id,
            staged.id,
            staged.source_id,
            staged.target_id,
            staged.type,
            staged.weight,
        ).where(staged.import_id == self.id)
        columns = ("source_id", "target_id", "type", "weight")
        relationship_copy = copy_rows(
            _dialect(session).insert(RelationshipRow),
            ("tenant_id", "id", *columns),
            relationships,
            self._tenant,
        )
        await session.execute(
            relationship_copy.on_conflict_do_update(
                index_elements=["tenant_id", "id"],
                set_={column: getattr(relationship_copy.excluded, column) for column in columns},
            )
        )


def _unknown(endpoint: Any, import_id: uuid.UUID) -> ColumnElement[bool]:
    """`endpoint` names no entity of the graph and none of the import."""
    stored = exists().where(EntityRow.id == endpoint)
    imported = exists().where(
        StagedEntityRow.import_id == import_id, StagedEntityRow.id == endpoint
    )
    return ~stored & ~imported


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
    removed = 0
    async with database.platform_session() as session:
        for model in (StagedRelationshipRow, StagedEntityRow):
            result: Any = await session.execute(
                delete(model)
                .where(model.staged_at < cutoff)
                .execution_options(**{ALL_TENANTS: True})
            )
            removed += int(result.rowcount or 0)
    return removed
