"""Catalog storage: the tables and every query of the service, over the caller's session.

An entity is one row; its dependencies and SLOs are JSON on it (they are read
and written with it, under its etag), and two side tables make them queryable:
`catalog_tags` (search by tag) and `catalog_edges` (who depends on whom). An
edge's target is a foreign key that restricts deletion, so an entity others
depend on cannot go, whatever the use case checks first. SLO events are kept
per minute (`catalog_slo_minutes`), a minute's counts replaced when sent again;
windows are sums over minutes. Saved scenarios are keyed by tenant and their
content-addressed id.

The queries are functions taking an `AsyncSession`; the use cases open the
sessions (one transaction per step), and nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Subquery

from core.pagination import Page
from servers.db import ALL_TENANTS, Base, TenantScoped, after_position, new_id
from servers.db import insert as dialect_insert


class EntityRow(TenantScoped, Base):
    """An entity of the catalog: a component, API, resource or system."""

    __tablename__ = "catalog_entities"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        Index("ix_catalog_entities_tenant_id_owner", "tenant_id", "owner"),
        CheckConstraint("kind IN ('component', 'api', 'resource', 'system')", name="kind_known"),
        CheckConstraint(
            "lifecycle IN ('experimental', 'production', 'deprecated')", name="lifecycle_known"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(128), default="")
    lifecycle: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSON)
    links: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    system: Mapped[str] = mapped_column(String(63), default="")
    #: `specs.dependencies_to_json`: targets by name (names never change).
    dependencies: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    #: `specs.slo_to_json` of each SLO.
    slos: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    expected_availability: Mapped[float | None] = mapped_column(Float)
    requests_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    #: Name, title and description in lower case: what a search matches.
    search_text: Mapped[str] = mapped_column(Text)
    #: The linked Billing budget ("" when none); its figures are read from Billing.
    budget_id: Mapped[str] = mapped_column(String(63), default="")
    budget_linked_at: Mapped[datetime | None]
    etag: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TagRow(TenantScoped, Base):
    """A tag of an entity (for search by tag)."""

    __tablename__ = "catalog_tags"
    __table_args__ = (Index("ix_catalog_tags_tenant_id_tag", "tenant_id", "tag"),)

    entity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(63), primary_key=True)


class EdgeRow(TenantScoped, Base):
    """Entity `source_id` depends on `target_id` (in one of its dependencies)."""

    __tablename__ = "catalog_edges"

    source_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog_entities.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class SloMinuteRow(TenantScoped, Base):
    """Good and total events of one SLO in one minute."""

    __tablename__ = "catalog_slo_minutes"
    __table_args__ = (
        CheckConstraint("good >= 0 AND good <= total", name="counts_consistent"),
        Index("ix_catalog_slo_minutes_minute", "minute"),
    )

    entity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True
    )
    slo: Mapped[str] = mapped_column(String(63), primary_key=True)
    #: Minutes since 1970-01-01T00:00Z: slices and days are integer divisions of it.
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    good: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)


class ScenarioRow(TenantScoped, Base):
    """A saved what-if scenario, with the catalog figures it was evaluated on."""

    __tablename__ = "catalog_scenarios"
    __table_args__ = (
        Index("ix_catalog_scenarios_tenant_id_created_at", "tenant_id", "created_at", "id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    #: SHA-256 of the scenario's canonical content (hex).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    overrides: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    #: The catalog figures the scenario was evaluated on.
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    #: The Billing budget of the change it describes ("" when none).
    budget_id: Mapped[str] = mapped_column(String(63), default="")
    budget_linked_at: Mapped[datetime | None]


_DAY_MINUTES = 1440
#: Ids per IN (...) list, rows per batched INSERT.
_IN_BATCH = 250
#: First key of the catalog's advisory locks (the second is the tenant's).
_GRAPH_LOCK_SPACE = 0x0CA7A106


def _columns(row: Base) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


# Entities


async def lock_graph(session: AsyncSession, tenant: uuid.UUID) -> None:
    """Serialize changes to the tenant's dependency graph until the transaction ends.

    Two concurrent updates could each add half of a cycle that neither sees;
    under this lock the second sees the first. An advisory transaction lock on
    PostgreSQL; SQLite's write lock does it there.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {
                "space": _GRAPH_LOCK_SPACE,
                "key": int.from_bytes(tenant.bytes[:4], "big", signed=True),
            },
        )


async def entity(session: AsyncSession, name: str) -> EntityRow | None:
    """The tenant's entity called `name`."""
    return (
        await session.execute(select(EntityRow).where(EntityRow.name == name))
    ).scalar_one_or_none()


async def entities(session: AsyncSession) -> list[EntityRow]:
    """Every entity of the tenant, by name."""
    return list((await session.scalars(select(EntityRow).order_by(EntityRow.name))).all())


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class EntityFilter:
    """What a list of entities is narrowed to; empty fields do not narrow it."""

    kind: str = ""
    owner: str = ""
    tag: str = ""
    lifecycle: str = ""
    system: str = ""
    #: Lower-case words that must each appear in the name, title or description.
    words: tuple[str, ...] = ()


async def page_of_entities(
    session: AsyncSession, page: Page, narrowed: EntityFilter
) -> list[EntityRow]:
    """A page of the tenant's entities by name (size + 1 rows), narrowed by `narrowed`."""
    query = select(EntityRow)
    for column, value in (
        (EntityRow.kind, narrowed.kind),
        (EntityRow.owner, narrowed.owner),
        (EntityRow.lifecycle, narrowed.lifecycle),
        (EntityRow.system, narrowed.system),
    ):
        if value:
            query = query.where(column == value)
    if narrowed.tag:
        query = query.where(
            exists().where(and_(TagRow.entity_id == EntityRow.id, TagRow.tag == narrowed.tag))
        )
    for word in narrowed.words:
        query = query.where(EntityRow.search_text.like(f"%{_escaped(word)}%", escape="\\"))
    query = after_position(query, [EntityRow.name], page.after, page.size + 1, descending=False)
    return list((await session.scalars(query)).all())


async def add_entity(session: AsyncSession, row: EntityRow) -> bool:
    """Record a new entity; False if its name is taken (by a concurrent create, say)."""
    added = await session.execute(
        dialect_insert(session, EntityRow)
        .on_conflict_do_nothing(index_elements=["tenant_id", "name"])
        .returning(EntityRow.id),
        _columns(row),
    )
    return added.scalar_one_or_none() is not None


async def _insert_in_batches(
    session: AsyncSession, model: type[Base], values: Sequence[Mapping[str, Any]]
) -> None:
    """INSERT `values` a batch at a time: few statements, and the loop breathes between them."""
    for start in range(0, len(values), _IN_BATCH):
        await session.execute(insert(model), list(values[start : start + _IN_BATCH]))


async def add_entities(session: AsyncSession, rows: Sequence[EntityRow]) -> None:
    """Record new entities in batches (names checked free under the graph's lock)."""
    await _insert_in_batches(session, EntityRow, [_columns(row) for row in rows])


async def replace_links(
    session: AsyncSession,
    tenant: uuid.UUID,
    links: Mapping[uuid.UUID, tuple[Iterable[str], Iterable[uuid.UUID]]],
) -> None:
    """Make the tag and edge rows of many entities match (tags, target ids), in few statements."""
    ids = sorted(links)
    for start in range(0, len(ids), _IN_BATCH):
        chunk = ids[start : start + _IN_BATCH]
        await session.execute(delete(TagRow).where(TagRow.entity_id.in_(chunk)))
        await session.execute(delete(EdgeRow).where(EdgeRow.source_id.in_(chunk)))
    tags = [
        {"tenant_id": tenant, "entity_id": entity_id, "tag": tag}
        for entity_id, (names, _) in links.items()
        for tag in set(names)
    ]
    edges = [
        {"tenant_id": tenant, "source_id": entity_id, "target_id": target}
        for entity_id, (_, targets) in links.items()
        for target in set(targets)
    ]
    await _insert_in_batches(session, TagRow, tags)
    await _insert_in_batches(session, EdgeRow, edges)


async def set_links(
    session: AsyncSession,
    tenant: uuid.UUID,
    entity_id: uuid.UUID,
    tags: Iterable[str],
    target_ids: Iterable[uuid.UUID],
) -> None:
    """Make the entity's tag and edge rows match its tags and dependencies."""
    await session.execute(delete(TagRow).where(TagRow.entity_id == entity_id))
    await session.execute(delete(EdgeRow).where(EdgeRow.source_id == entity_id))
    tag_rows = [{"tenant_id": tenant, "entity_id": entity_id, "tag": tag} for tag in set(tags)]
    if tag_rows:
        await session.execute(dialect_insert(session, TagRow), tag_rows)
    edge_rows = [
        {"tenant_id": tenant, "source_id": entity_id, "target_id": target}
        for target in set(target_ids)
    ]
    if edge_rows:
        await session.execute(dialect_insert(session, EdgeRow), edge_rows)


async def dependents(session: AsyncSession, entity_id: uuid.UUID, name: str) -> list[str]:
    """Names of the entities that depend on the entity directly, or name it as their system."""
    depending = select(EdgeRow.source_id).where(EdgeRow.target_id == entity_id)
    query = (
        select(EntityRow.name)
        .where((EntityRow.id.in_(depending)) | (EntityRow.system == name))
        .order_by(EntityRow.name)
    )
    return list((await session.scalars(query)).all())


async def delete_entity(session: AsyncSession, entity_id: uuid.UUID) -> None:
    """Delete the entity, its tags, edges and events with it."""
    for model, column in (
        (SloMinuteRow, SloMinuteRow.entity_id),
        (TagRow, TagRow.entity_id),
        (EdgeRow, EdgeRow.source_id),
    ):
        await session.execute(delete(model).where(column == entity_id))
    await session.execute(delete(EntityRow).where(EntityRow.id == entity_id))


# SLO events


async def put_minutes(
    session: AsyncSession,
    tenant: uuid.UUID,
    entity_id: uuid.UUID,
    slo: str,
    minutes: Sequence[tuple[int, int, int]],
) -> None:
    """Set the counts of each (minute, good, total), replacing what was recorded for it."""
    if not minutes:
        return
    statement = dialect_insert(session, SloMinuteRow)
    statement = statement.on_conflict_do_update(
        index_elements=["entity_id", "slo", "minute"],
        set_={"good": statement.excluded.good, "total": statement.excluded.total},
    )
    await session.execute(
        statement,
        [
            {
                "tenant_id": tenant,
                "entity_id": entity_id,
                "slo": slo,
                "minute": minute,
                "good": good,
                "total": total,
            }
            for minute, good, total in minutes
        ],
    )


def _in_range(entity_id: uuid.UUID, slo: str, since: int, until: int) -> tuple[Any, ...]:
    return (
        SloMinuteRow.entity_id == entity_id,
        SloMinuteRow.slo == slo,
        SloMinuteRow.minute >= since,
        SloMinuteRow.minute < until,
    )


def _slices(entity_id: uuid.UUID, slo: str, since: int, until: int, slice_minutes: int) -> Subquery:
    """Good and total events per slice of `slice_minutes` in [since, until), slices with events."""
    index = (SloMinuteRow.minute // slice_minutes).label("slice")
    return (
        select(
            index,
            func.sum(SloMinuteRow.good).label("good"),
            func.sum(SloMinuteRow.total).label("total"),
        )
        .where(*_in_range(entity_id, slo, since, until))
        .group_by(index)
        .having(func.sum(SloMinuteRow.total) > 0)
        .subquery()
    )


async def event_counts(
    session: AsyncSession, entity_id: uuid.UUID, slo: str, since: int, until: int
) -> tuple[int, int]:
    """(total, bad) events of the SLO in the minutes [since, until)."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(SloMinuteRow.total), 0),
                func.coalesce(func.sum(SloMinuteRow.total - SloMinuteRow.good), 0),
            ).where(*_in_range(entity_id, slo, since, until))
        )
    ).one()
    return int(row[0]), int(row[1])


async def window_sums(
    session: AsyncSession, keys: Sequence[tuple[uuid.UUID, str]], since: int, until: int
) -> dict[tuple[uuid.UUID, str], tuple[int, int]]:
    """(good, total) of each (entity, SLO) of `keys` in the minutes [since, until)."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            SloMinuteRow.entity_id,
            SloMinuteRow.slo,
            func.sum(SloMinuteRow.good),
            func.sum(SloMinuteRow.total),
        )
        .where(
            SloMinuteRow.entity_id.in_(sorted({entity_id for entity_id, _ in wanted})),
            SloMinuteRow.minute >= since,
            SloMinuteRow.minute < until,
        )
        .group_by(SloMinuteRow.entity_id, SloMinuteRow.slo)
    )
    return {
        (entity_id, slo): (int(good), int(total))
        for entity_id, slo, good, total in rows
        if (entity_id, slo) in wanted
    }


async def slice_counts(
    session: AsyncSession,
    entity_id: uuid.UUID,
    slo: str,
    since: int,
    until: int,
    *,
    slice_minutes: int,
    target: float,
) -> tuple[int, int]:
    """(slices, bad slices) in [since, until): slices with events, bad below `target`."""
    slices = _slices(entity_id, slo, since, until, slice_minutes)
    bad = case((slices.c.good < slices.c.total * target, 1), else_=0)
    query = select(func.count(), func.coalesce(func.sum(bad), 0)).select_from(slices)
    row = (await session.execute(query)).one()
    return int(row[0]), int(row[1])


async def daily_counts(
    session: AsyncSession,
    entity_id: uuid.UUID,
    slo: str,
    since: int,
    until: int,
    *,
    slice_minutes: int = 0,
    target: float = 0.0,
) -> dict[int, tuple[int, int]]:
    """(total, bad) per UTC day (minute // 1440) in [since, until): events, or slices if sliced."""
    if slice_minutes:
        slices = _slices(entity_id, slo, since, until, slice_minutes)
        day = (slices.c.slice * slice_minutes // _DAY_MINUTES).label("day")
        bad = case((slices.c.good < slices.c.total * target, 1), else_=0)
        query = select(day, func.count(), func.sum(bad)).select_from(slices).group_by(day)
    else:
        day = (SloMinuteRow.minute // _DAY_MINUTES).label("day")
        query = (
            select(
                day,
                func.sum(SloMinuteRow.total),
                func.sum(SloMinuteRow.total - SloMinuteRow.good),
            )
            .where(*_in_range(entity_id, slo, since, until))
            .group_by(day)
        )
    rows = await session.execute(query)
    return {int(day): (int(total), int(bad)) for day, total, bad in rows}


async def drop_minutes_except(
    session: AsyncSession, entity_id: uuid.UUID, keep: Iterable[str]
) -> None:
    """Forget the events of the entity's SLOs other than `keep` (SLOs removed or renamed)."""
    await session.execute(
        delete(SloMinuteRow).where(
            SloMinuteRow.entity_id == entity_id, SloMinuteRow.slo.not_in(sorted(set(keep)))
        )
    )


async def drop_minutes_before(session: AsyncSession, before: int) -> int:
    """Forget every tenant's events before the minute `before` (a platform job's query)."""
    deleted = await session.execute(
        delete(SloMinuteRow)
        .where(SloMinuteRow.minute < before)
        .execution_options(**{ALL_TENANTS: True})
    )
    return int(deleted.rowcount or 0)  # type: ignore[attr-defined]


# Scenarios


async def scenario(session: AsyncSession, scenario_id: str) -> ScenarioRow | None:
    """The tenant's saved scenario `scenario_id`."""
    return (
        await session.execute(select(ScenarioRow).where(ScenarioRow.id == scenario_id))
    ).scalar_one_or_none()


async def add_scenario(session: AsyncSession, row: ScenarioRow) -> bool:
    """Save a scenario; False if one with its id is saved already."""
    added = await session.execute(
        dialect_insert(session, ScenarioRow)
        .on_conflict_do_nothing(index_elements=["tenant_id", "id"])
        .returning(ScenarioRow.id),
        _columns(row),
    )
    return added.scalar_one_or_none() is not None


async def page_of_scenarios(session: AsyncSession, page: Page) -> list[ScenarioRow]:
    """A page of the tenant's saved scenarios, newest first (size + 1 rows)."""
    query = after_position(
        select(ScenarioRow), [ScenarioRow.created_at, ScenarioRow.id], page.after, page.size + 1
    )
    return list((await session.scalars(query)).all())


async def rename_scenario(session: AsyncSession, scenario_id: str, name: str) -> bool:
    """Rename a saved scenario; False if there is none."""
    renamed = await session.execute(
        update(ScenarioRow)
        .where(ScenarioRow.id == scenario_id)
        .values(name=name)
        .execution_options(synchronize_session=False)
    )
    return bool(renamed.rowcount == 1)  # type: ignore[attr-defined]


async def delete_scenario(session: AsyncSession, scenario_id: str) -> bool:
    """Delete a saved scenario; False if there was none."""
    deleted = await session.execute(
        delete(ScenarioRow)
        .where(ScenarioRow.id == scenario_id)
        .execution_options(synchronize_session=False)
    )
    return bool(deleted.rowcount == 1)  # type: ignore[attr-defined]
