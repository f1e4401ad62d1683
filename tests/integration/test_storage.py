"""Storage on SQLite and PostgreSQL: migrations, UTC timestamps, tenant confinement, leases."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import ForeignKey, String, delete, func, insert, inspect, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from servers.db import ALL_TENANTS, Base, Database, TenantScoped, TenantScopeError, copy_rows
from servers.db.leases import acquire_lease, release_lease
from servers.db.migrate import (
    SchemaOutOfDate,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)
from servers.jobs import every_under_lease


class _TestBase(DeclarativeBase):
    """Models that exist only for these tests, kept off the platform's metadata."""

    type_annotation_map = Base.type_annotation_map


class Note(TenantScoped, _TestBase):
    __tablename__ = "notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    body: Mapped[str] = mapped_column(String(200))
    written_at: Mapped[datetime]
    tags: Mapped[list[Tag]] = relationship(back_populates="note", lazy="selectin")


class Tag(TenantScoped, _TestBase):
    __tablename__ = "tags"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    note_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notes.id"))
    label: Mapped[str] = mapped_column(String(50))
    note: Mapped[Note] = relationship(back_populates="tags")


TENANT_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
TENANT_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
NOW = datetime(2026, 5, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
async def notes(database: Database) -> Database:
    """The database with the test tables and one note per tenant."""
    async with database.engine.begin() as connection:
        await connection.run_sync(_TestBase.metadata.create_all)
    for tenant, body in ((TENANT_A, "a's note"), (TENANT_B, "b's note")):
        async with database.tenant_session(tenant) as session:
            note = Note(body=body, written_at=NOW)
            session.add(note)
            await session.flush()
            session.add(Tag(note_id=note.id, label=f"{body} tag"))
    return database


async def test_migrations_go_up_and_down(database: Database) -> None:
    assert await current_revision(database.engine) is None
    await upgrade(database.engine)
    assert await current_revision(database.engine) == head_revision()
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert "job_leases" in tables
    await downgrade(database.engine, "base")
    assert await current_revision(database.engine) is None
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert "job_leases" not in tables


async def test_the_rollout_history_begins_with_each_enrolled_tenants_stage(
    database: Database,
) -> None:
    await upgrade(database.engine, "0012")
    tenant, at = uuid.uuid4(), datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO billing_rollout (tenant, stage, updated_at, updated_by)"
                " VALUES (:tenant, 'ga', :at, 'ops@example.com')"
            ),
            {
                "tenant": tenant.hex if database.engine.dialect.name == "sqlite" else tenant,
                "at": at,
            },
        )
    await upgrade(database.engine)
    async with database.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT from_stage, to_stage, changed_by FROM billing_rollout_changes")
            )
        ).all()
    assert len(rows) == 1
    assert (rows[0].from_stage, rows[0].to_stage, rows[0].changed_by) == (
        "",
        "ga",
        "ops@example.com",
    )


async def test_serving_refuses_a_schema_behind_head_unless_it_may_migrate(
    database: Database,
) -> None:
    with pytest.raises(SchemaOutOfDate, match="conductor migrate"):
        await ensure_schema(database.engine, migrate=False)
    await ensure_schema(database.engine, migrate=True)
    await ensure_schema(database.engine, migrate=False)  # at head now: no error
    assert await current_revision(database.engine) == head_revision()


async def test_timestamps_come_back_as_aware_utc(notes: Database) -> None:
    paris = timezone(timedelta(hours=2))
    async with notes.tenant_session(TENANT_A) as session:
        session.add(Note(body="zoned", written_at=datetime(2026, 5, 27, 16, 30, tzinfo=paris)))
    async with notes.tenant_session(TENANT_A) as session:
        stored = (await session.execute(select(Note).where(Note.body == "zoned"))).scalar_one()
    assert stored.written_at == datetime(2026, 5, 27, 14, 30, tzinfo=UTC)
    assert stored.written_at.utcoffset() == timedelta(0)


async def test_naive_timestamps_are_refused(notes: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with notes.tenant_session(TENANT_A) as session:
            session.add(Note(body="naive", written_at=datetime(2026, 5, 27)))  # noqa: DTZ001


async def test_a_tenant_session_sees_only_its_tenant(notes: Database) -> None:
    async with notes.tenant_session(TENANT_A) as session:
        bodies = (await session.execute(select(Note.body))).scalars().all()
        count = (await session.execute(select(func.count()).select_from(Note))).scalar_one()
        joined = (await session.execute(select(Tag.label).join(Tag.note))).scalars().all()
        note = (await session.execute(select(Note))).scalar_one()
    assert bodies == ["a's note"]
    assert count == 1
    assert joined == ["a's note tag"]
    assert [tag.label for tag in note.tags] == ["a's note tag"]


async def test_bulk_update_and_delete_stay_in_the_tenant(notes: Database) -> None:
    async with notes.tenant_session(TENANT_A) as session:
        await session.execute(update(Note).values(body="rewritten"))
        await session.execute(delete(Tag))
    async with notes.platform_session() as session:
        rows = (
            await session.execute(
                select(Note.tenant_id, Note.body).execution_options(**{ALL_TENANTS: True})
            )
        ).all()
        tags = (
            (await session.execute(select(Tag.label).execution_options(**{ALL_TENANTS: True})))
            .scalars()
            .all()
        )
    assert sorted(rows) == sorted([(TENANT_A, "rewritten"), (TENANT_B, "b's note")])
    assert tags == ["b's note tag"]


async def test_tenant_rows_are_out_of_reach_without_a_tenant(notes: Database) -> None:
    with pytest.raises(TenantScopeError, match="outside a tenant session"):
        async with notes.platform_session() as session:
            await session.execute(select(Note))
    with pytest.raises(TenantScopeError, match="outside a tenant session"):
        async with notes.platform_session() as session:
            await session.execute(select(func.count()).select_from(Note))
    with pytest.raises(TenantScopeError, match="outside a tenant session"):
        async with notes.platform_session() as session:
            await session.execute(select(Note.__table__))
    with pytest.raises(TenantScopeError, match="outside a tenant session"):
        async with notes.platform_session() as session:
            session.add(Note(body="orphan", written_at=NOW))


async def test_writing_another_tenants_row_is_refused(notes: Database) -> None:
    with pytest.raises(TenantScopeError, match="another tenant"):
        async with notes.tenant_session(TENANT_A) as session:
            session.add(Note(tenant_id=TENANT_B, body="smuggled", written_at=NOW))
    with pytest.raises(TenantScopeError, match="another tenant"):
        async with notes.tenant_session(TENANT_A) as session:
            await session.execute(
                insert(Note), [{"tenant_id": TENANT_B, "body": "bulk", "written_at": NOW}]
            )
    async with notes.tenant_session(TENANT_B) as session:
        bodies = (await session.execute(select(Note.body))).scalars().all()
    assert bodies == ["b's note"]


async def test_bulk_insert_checks_every_row(notes: Database) -> None:
    async with notes.tenant_session(TENANT_A) as session:
        await session.execute(
            insert(Note),
            [{"tenant_id": TENANT_A, "body": f"bulk {i}", "written_at": NOW} for i in range(3)],
        )
    async with notes.tenant_session(TENANT_A) as session:
        count = (await session.execute(select(func.count()).select_from(Note))).scalar_one()
    assert count == 4


class Archived(TenantScoped, _TestBase):
    __tablename__ = "archived_notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200))


async def test_copying_rows_reads_and_writes_only_the_sessions_tenant(notes: Database) -> None:
    everyone = select(Note.tenant_id, Note.id, Note.body)  # no tenant filter of its own
    async with notes.tenant_session(TENANT_A) as session:
        await session.execute(
            copy_rows(insert(Archived), ("tenant_id", "id", "body"), everyone, TENANT_A)
        )
    async with notes.platform_session() as session:
        copied = (
            await session.execute(
                select(Archived.tenant_id, Archived.body).execution_options(all_tenants=True)
            )
        ).all()
    assert copied == [(TENANT_A, "a's note")]


async def test_an_unconfined_insert_of_a_select_is_refused(notes: Database) -> None:
    copy = insert(Archived).from_select(
        ["tenant_id", "id", "body"], select(Note.tenant_id, Note.id, Note.body)
    )
    with pytest.raises(TenantScopeError):
        async with notes.tenant_session(TENANT_A) as session:
            await session.execute(copy)
    with pytest.raises(TenantScopeError):
        async with notes.tenant_session(TENANT_A) as session:
            await session.execute(
                copy_rows(insert(Archived), ("tenant_id", "id", "body"), select(Note.id), TENANT_B)
            )


async def _write_then_fail(database: Database) -> None:
    async with database.tenant_session(TENANT_A) as session:
        session.add(Note(body="half-written", written_at=NOW))
        await session.flush()
        raise RuntimeError("boom")


async def test_a_failed_transaction_writes_nothing(notes: Database) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await _write_then_fail(notes)
    async with notes.tenant_session(TENANT_A) as session:
        bodies = (await session.execute(select(Note.body))).scalars().all()
    assert bodies == ["a's note"]


async def test_one_holder_at_a_time_on_a_lease(database: Database) -> None:
    await upgrade(database.engine)
    ttl = timedelta(seconds=30)
    assert await acquire_lease(database, "reconcile", "replica-1", ttl, NOW)
    assert not await acquire_lease(database, "reconcile", "replica-2", ttl, NOW)
    # The holder renews; the other still waits.
    later = NOW + timedelta(seconds=20)
    assert await acquire_lease(database, "reconcile", "replica-1", ttl, later)
    assert not await acquire_lease(database, "reconcile", "replica-2", ttl, NOW + ttl)
    # Once the lease lapses, another replica takes it.
    assert await acquire_lease(database, "reconcile", "replica-2", ttl, later + ttl)
    await release_lease(database, "reconcile", "replica-1")  # not the holder: no effect
    assert not await acquire_lease(database, "reconcile", "replica-1", ttl, later + ttl)
    await release_lease(database, "reconcile", "replica-2")
    assert await acquire_lease(database, "reconcile", "replica-1", ttl, later + ttl)


async def test_racing_replicas_never_share_a_lease(database: Database) -> None:
    await upgrade(database.engine)
    outcomes = await asyncio.gather(
        *(
            acquire_lease(database, "expire-grants", f"replica-{i}", timedelta(seconds=5), NOW)
            for i in range(8)
        )
    )
    assert sorted(outcomes) == [False] * 7 + [True]


async def test_a_leased_job_gives_its_lease_up_when_it_stops(database: Database) -> None:
    await upgrade(database.engine)
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    running = asyncio.create_task(every_under_lease(database, "deliver", 0.05, job))
    await asyncio.wait_for(ran.wait(), 10)
    assert not await acquire_lease(database, "deliver", "replica-2", timedelta(seconds=30), NOW)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    # Stopped cleanly: another replica takes over at once, not when the lease lapses.
    assert await acquire_lease(database, "deliver", "replica-2", timedelta(seconds=30), NOW)
