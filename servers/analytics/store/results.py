"""Whole-graph results per graph revision: the work queue of materializations, and the results.

An import that commits revision R also records R's materialization as pending,
in the same transaction, so no revision is ever forgotten. A replica that holds
the tenant's lease computes it (`servers.analytics.materializer`) and stores
each whole-graph pack's ranking with the revision, then marks it ready; reads
page through the newest ready revision's rankings, flagged stale while a newer
one is pending or running.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from servers.db import ALL_TENANTS, Base, TenantScoped


class State(StrEnum):
    """Where a revision's whole-graph results are."""

    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


class MaterializationRow(TenantScoped, Base):
    """One graph revision's whole-graph results: requested, running, ready or failed."""

    __tablename__ = "graph_materializations"
    __table_args__ = (Index("ix_graph_materializations_state", "state"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    expected_ready_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Why the last attempt failed.
    detail: Mapped[str] = mapped_column(Text, default="")
    #: Relationships imported into the tenant's graph, all imports up to this revision
    #: (how much changed between two revisions: small changes warm-start PageRank).
    relationships_imported: Mapped[int] = mapped_column(BigInteger, default=0)
    warm_started: Mapped[bool] = mapped_column(default=False)


class ResultRow(TenantScoped, Base):
    """One whole-graph pack's ranking at one revision (encoded by `rankings.Ranked`)."""

    __tablename__ = "graph_results"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    pack_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    computed_at: Mapped[datetime]
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    #: JSON: the algorithm and its accuracy, the modularity and such.
    summary: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class Materialization:
    """A revision's materialization, as read."""

    revision: int
    state: State
    requested_at: datetime
    started_at: datetime | None
    expected_ready_at: datetime | None
    finished_at: datetime | None
    attempts: int
    detail: str
    relationships_imported: int
    warm_started: bool

    @classmethod
    def of(cls, row: MaterializationRow) -> Materialization:
        """From its row."""
        return cls(
            row.revision,
            State(row.state),
            row.requested_at,
            row.started_at,
            row.expected_ready_at,
            row.finished_at,
            row.attempts,
            row.detail,
            row.relationships_imported,
            row.warm_started,
        )


@dataclass(frozen=True)
class Status:
    """The tenant's newest materialization, and its newest ready one."""

    latest: Materialization | None
    ready: Materialization | None


async def request(session: AsyncSession, revision: int, relationships: int, now: datetime) -> None:
    """Record a new revision's materialization as pending (in the import's transaction).

    Args:
        session: The import's tenant session.
        revision: The revision the import made.
        relationships: How many relationships the import wrote.
        now: The import's time.
    """
    before = await session.scalar(
        select(MaterializationRow.relationships_imported)
        .order_by(MaterializationRow.revision.desc())
        .limit(1)
    )
    relationships_imported = int(before or 0) + relationships
    session.add(
        MaterializationRow(
            revision=revision,
            state=State.PENDING,
            requested_at=now,
            attempts=0,
            detail="",
            relationships_imported=relationships_imported,
            warm_started=False,
        )
    )


async def status(session: AsyncSession) -> Status:
    """The session tenant's newest materialization and newest ready one."""
    newest = select(MaterializationRow).order_by(MaterializationRow.revision.desc()).limit(1)
    latest = (await session.scalars(newest)).first()
    if latest is None or latest.state == State.READY:
        ready = latest
    else:
        ready = (
            await session.scalars(
                newest.where(MaterializationRow.state == State.READY).execution_options(
                    populate_existing=True
                )
            )
        ).first()
        if ready is not None and ready.revision >= latest.revision:
            # It became ready between the two statements (PostgreSQL's read committed
            # gives each its own snapshot; the row is refreshed in place): one status,
            # never "running" and ready at once.
            latest = ready
    return Status(
        Materialization.of(latest) if latest else None,
        Materialization.of(ready) if ready else None,
    )


async def wanted(session: AsyncSession, max_attempts: int) -> list[tuple[uuid.UUID, int]]:
    """(tenant, revision) of every tenant whose newest revision still needs its results.

    Across tenants (a platform session): pending, running (its replica may have
    died: the lease says) and failed ones not yet retried `max_attempts` times.
    """
    rows = await session.execute(
        select(MaterializationRow.tenant_id, MaterializationRow.revision)
        .where(
            MaterializationRow.state.in_([State.PENDING, State.RUNNING, State.FAILED]),
            MaterializationRow.attempts < max_attempts,
        )
        .order_by(MaterializationRow.requested_at)
        .execution_options(**{ALL_TENANTS: True})
    )
    newest: dict[uuid.UUID, int] = {}
    for tenant, revision in rows:
        newest[tenant] = max(revision, newest.get(tenant, 0))
    return list(newest.items())


async def materialization(session: AsyncSession, revision: int) -> MaterializationRow | None:
    """The session tenant's materialization row of `revision`, locked for update."""
    found = await session.scalars(
        select(MaterializationRow).where(MaterializationRow.revision == revision).with_for_update()
    )
    return found.first()


async def supersede(session: AsyncSession, revision: int, now: datetime) -> None:
    """Mark the tenant's unfinished materializations older than `revision` as never to run.

    Only a tenant's newest revision is materialized: older pending ones are
    folded into it (they are marked failed with that reason and no retries left).
    """
    await session.execute(
        update(MaterializationRow)
        .where(
            MaterializationRow.revision < revision,
            MaterializationRow.state != State.READY,
        )
        .values(
            state=State.FAILED,
            detail=f"superseded by revision {revision}",
            attempts=1_000_000,
            finished_at=now,
        )
    )


async def store_results(
    session: AsyncSession,
    revision: int,
    results: Mapping[str, tuple[bytes, Mapping[str, Any]]],
    now: datetime,
) -> None:
    """Store a revision's rankings (pack id: payload, summary)."""
    for pack_id, (payload, summary) in results.items():
        session.add(
            ResultRow(
                revision=revision,
                pack_id=pack_id,
                computed_at=now,
                payload=payload,
                summary=json.dumps(summary, sort_keys=True),
            )
        )


async def prune(session: AsyncSession, keep_from: int) -> None:
    """Delete the session tenant's results and finished rows of revisions before `keep_from`."""
    await session.execute(delete(ResultRow).where(ResultRow.revision < keep_from))
    await session.execute(
        delete(MaterializationRow).where(
            MaterializationRow.revision < keep_from,
            MaterializationRow.state.in_([State.READY, State.FAILED]),
        )
    )


@dataclass(frozen=True)
class StoredResult:
    """One pack's stored ranking at a revision."""

    revision: int
    computed_at: datetime
    payload: bytes
    summary: dict[str, Any]


async def result(session: AsyncSession, revision: int, pack_id: str) -> StoredResult | None:
    """The session tenant's stored ranking of `pack_id` at `revision`, if any."""
    row = (
        await session.execute(
            select(ResultRow.computed_at, ResultRow.payload, ResultRow.summary).where(
                ResultRow.revision == revision, ResultRow.pack_id == pack_id
            )
        )
    ).first()
    if row is None:
        return None
    computed_at, payload, summary = row
    return StoredResult(revision, computed_at, payload, json.loads(summary))
