"""Tenant graphs: typed, weighted entities and relationships, and each tenant's graph revision.

The tables, and every query of them: the graph's size, the reads a snapshot is built from, and
the staging, checking, merging and sweeping of imports.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Float,
    Row,
    String,
    Text,
    delete,
    exists,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.errors import InvalidArgument, quoted
from servers.db import ALL_TENANTS, Base, Database, TenantScoped, copy_rows, insert


class EntityRow(TenantScoped, Base):
    """A node; `id` is the caller's persisted id, unique within the tenant."""

    __tablename__ = "graph_entities"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text, default="")


class RelationshipRow(TenantScoped, Base):
    """A directed, weighted edge between two entities of the tenant."""

    __tablename__ = "graph_relationships"
    __table_args__ = (CheckConstraint("weight > 0", name="weight_positive"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(128))
    target_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    weight: Mapped[float] = mapped_column(Float)


class GraphRevisionRow(TenantScoped, Base):
    """The tenant's graph revision: bumped by every import, keys the in-memory projections."""

    __tablename__ = "graph_revisions"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    #: Sizes at this revision, so a run can be priced without touching the graph.
    entities: Mapped[int] = mapped_column(BigInteger)
    relationships: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class StagedEntityRow(TenantScoped, Base):
    """An entity of an import in progress; merged into `graph_entities` when the import commits."""

    __tablename__ = "graph_staged_entities"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text, default="")
    staged_at: Mapped[datetime]


class StagedRelationshipRow(TenantScoped, Base):
    """A relationship of an import in progress (its endpoints are checked when it commits)."""

    __tablename__ = "graph_staged_relationships"
    __table_args__ = (CheckConstraint("weight > 0", name="weight_positive"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(128))
    target_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    weight: Mapped[float] = mapped_column(Float)
    staged_at: Mapped[datetime]


# -- the graph ---------------------------------------------------------------------------------


async def graph_size(session: AsyncSession, tenant: uuid.UUID) -> tuple[int, int, int] | None:
    """The tenant's (revision, entities, relationships), or None before its first import."""
    row = await session.get(GraphRevisionRow, tenant)
    if row is None:
        return None
    return row.revision, row.entities, row.relationships


@asynccontextmanager
async def snapshot_session(database: Database, tenant: uuid.UUID) -> AsyncIterator[AsyncSession]:
    """A read-only tenant session whose reads all see one snapshot of the graph."""
    async with database.tenant_session(tenant, readonly=True) as session:
        if session.get_bind().dialect.name == "postgresql":  # one snapshot for every read
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


async def revision(session: AsyncSession) -> int:
    """The session tenant's graph revision (0 before its first import)."""
    return int(await session.scalar(select(GraphRevisionRow.revision)) or 0)


async def entity_ids(session: AsyncSession, batch: int) -> AsyncIterator[Sequence[str]]:
    """The session tenant's entity ids, streamed `batch` at a time."""
    result = await session.stream_scalars(select(EntityRow.id).execution_options(yield_per=batch))
    async for part in result.partitions():
        yield part


async def relationship_edges(
    session: AsyncSession, batch: int
) -> AsyncIterator[Sequence[Row[str, str, float]]]:
    """The session tenant's (source_id, target_id, weight), streamed `batch` at a time."""
    rows = await session.stream(
        select(
            RelationshipRow.source_id, RelationshipRow.target_id, RelationshipRow.weight
        ).execution_options(yield_per=batch)
    )
    async for part in rows.partitions():
        yield part


# -- imports -----------------------------------------------------------------------------------


def _upsert(session: AsyncSession, model: Any, key: Iterable[str], columns: Iterable[str]) -> Any:
    statement = insert(session, model)
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={column: getattr(statement.excluded, column) for column in columns},
    )


async def stage(
    session: AsyncSession,
    entities: Sequence[dict[str, Any]],
    relationships: Sequence[dict[str, Any]],
    chunk: int,
) -> None:
    """Upsert staged rows by (tenant, import, id), `chunk` rows per statement."""
    key = ("tenant_id", "import_id", "id")
    for start in range(0, len(entities), chunk):
        await session.execute(
            _upsert(session, StagedEntityRow, key, ("type", "label", "staged_at")),
            entities[start : start + chunk],
        )
    columns = ("source_id", "target_id", "type", "weight", "staged_at")
    for start in range(0, len(relationships), chunk):
        await session.execute(
            _upsert(session, StagedRelationshipRow, key, columns),
            relationships[start : start + chunk],
        )


async def staged_counts(session: AsyncSession, import_id: uuid.UUID) -> tuple[int, int]:
    """How many entities and relationships the import staged."""
    counts = []
    for model in (StagedEntityRow, StagedRelationshipRow):
        query = select(func.count()).select_from(model).where(model.import_id == import_id)
        counts.append(int(await session.scalar(query) or 0))
    return counts[0], counts[1]


async def clear_staged(session: AsyncSession, import_id: uuid.UUID) -> None:
    """Delete whatever the import staged."""
    for model in (StagedRelationshipRow, StagedEntityRow):
        await session.execute(delete(model).where(model.import_id == import_id))


def _unknown(endpoint: Any, import_id: uuid.UUID) -> ColumnElement[bool]:
    """`endpoint` names no entity of the graph and none of the import."""
    stored = exists().where(EntityRow.id == endpoint)
    imported = exists().where(
        StagedEntityRow.import_id == import_id, StagedEntityRow.id == endpoint
    )
    return ~stored & ~imported


async def check_endpoints(session: AsyncSession, import_id: uuid.UUID) -> None:
    """Every staged relationship names an entity of the graph or of the import.

    Raises:
        InvalidArgument: One does not (with how many are unknown, and an example).
    """
    staged = StagedRelationshipRow
    for endpoint in (staged.source_id, staged.target_id):
        unknown = _unknown(endpoint, import_id)
        example = await session.scalar(
            select(endpoint).where(staged.import_id == import_id, unknown).limit(1)
        )
        if example is None:
            continue
        missing = await session.scalar(
            select(func.count(endpoint.distinct())).where(staged.import_id == import_id, unknown)
        )
        raise InvalidArgument(
            f"relationships name {missing} unknown entities (as {endpoint.key}), "
            f"e.g. {quoted(example)}",
            field="relationships",
            metadata={"unknown_entity": example},
        )


async def merge_staged(session: AsyncSession, tenant: uuid.UUID, import_id: uuid.UUID) -> None:
    """Upsert the import's staged rows into the graph by id (the staged row wins)."""
    entities = select(
        StagedEntityRow.tenant_id,
        StagedEntityRow.id,
        StagedEntityRow.type,
        StagedEntityRow.label,
    ).where(StagedEntityRow.import_id == import_id)
    entity_copy = copy_rows(
        insert(session, EntityRow), ("tenant_id", "id", "type", "label"), entities, tenant
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
    ).where(staged.import_id == import_id)
    columns = ("source_id", "target_id", "type", "weight")
    relationship_copy = copy_rows(
        insert(session, RelationshipRow), ("tenant_id", "id", *columns), relationships, tenant
    )
    await session.execute(
        relationship_copy.on_conflict_do_update(
            index_elements=["tenant_id", "id"],
            set_={column: getattr(relationship_copy.excluded, column) for column in columns},
        )
    )


async def bump_revision(session: AsyncSession, tenant: uuid.UUID, now: datetime) -> int:
    """Advance the tenant's graph revision (row locked), record the graph's sizes; the new one."""
    row = await session.get(GraphRevisionRow, tenant, with_for_update=True)
    if row is None:
        row = GraphRevisionRow(tenant_id=tenant, revision=0, entities=0, relationships=0)
        session.add(row)
    row.revision += 1
    row.updated_at = now
    row.entities = int(await session.scalar(select(func.count()).select_from(EntityRow)) or 0)
    row.relationships = int(
        await session.scalar(select(func.count()).select_from(RelationshipRow)) or 0
    )
    return row.revision


async def sweep_staged(session: AsyncSession, cutoff: datetime) -> int:
    """Delete every tenant's staged rows older than `cutoff` (a platform session); how many."""
    removed = 0
    for model in (StagedRelationshipRow, StagedEntityRow):
        result: Any = await session.execute(
            delete(model).where(model.staged_at < cutoff).execution_options(**{ALL_TENANTS: True})
        )
        removed += int(result.rowcount or 0)
    return removed
