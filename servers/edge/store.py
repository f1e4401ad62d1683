"""Edge cache records and every query of them: byte caps, shared counters, leak alarms."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from servers.db import Base, TenantScoped, after_position, insert, new_id


class TenantCacheCapRow(Base):
    """A tenant's cache byte cap, where it is not the default.

    A platform table (operators set caps), so the column is `tenant`, not `tenant_id`.
    """

    __tablename__ = "edge_tenant_caps"

    tenant: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cap_bytes: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class GenerationRow(Base):
    """An invalidation counter shared by the processes of one store (when there is no Redis).

    A platform table: the name carries the tenant ("t:<tenant>", "x:<tenant>:<tag>", "p").
    """

    __tablename__ = "edge_generations"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class LeakAlarmRow(TenantScoped, Base):
    """A refused suspicious cache hit, kept for the tenant whose request it was."""

    __tablename__ = "edge_leak_alarms"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    operation_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(200))
    cache_key_hash: Mapped[str] = mapped_column(String(64))


# -- caps (platform sessions) ------------------------------------------------------------------


async def caps(session: AsyncSession) -> dict[str, int]:
    """Every cap the store holds, by tenant (as a string)."""
    rows = (await session.execute(select(TenantCacheCapRow))).scalars().all()
    return {str(row.tenant): int(row.cap_bytes) for row in rows}


async def set_cap(session: AsyncSession, tenant: uuid.UUID, cap_bytes: int, now: datetime) -> None:
    """Store a tenant's cap; 0 removes it (the default applies)."""
    row = await session.get(TenantCacheCapRow, tenant)
    if cap_bytes == 0:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(TenantCacheCapRow(tenant=tenant, cap_bytes=cap_bytes, updated_at=now))
    else:
        row.cap_bytes, row.updated_at = cap_bytes, now


# -- shared invalidation counters (platform sessions) ------------------------------------------


async def bump_generations(session: AsyncSession, names: Sequence[str]) -> dict[str, int]:
    """Advance each named counter (an upsert from 1); their new values."""
    values = {}
    for name in names:
        statement = insert(session, GenerationRow).values(name=name, value=1)
        values[name] = int(
            await session.scalar(
                statement.on_conflict_do_update(
                    index_elements=["name"], set_={"value": GenerationRow.value + 1}
                ).returning(GenerationRow.value)
            )
            or 0
        )
    return values


async def generations(session: AsyncSession) -> list[tuple[str, int]]:
    """Every counter: (name, value)."""
    rows = (await session.execute(select(GenerationRow.name, GenerationRow.value))).all()
    return [(name, int(value)) for name, value in rows]


# -- leak alarms (tenant sessions) -------------------------------------------------------------


def add_leak_alarm(
    session: AsyncSession,
    tenant: uuid.UUID,
    *,
    operation: str,
    reason: str,
    digest: str,
    now: datetime,
) -> LeakAlarmRow:
    """Record a refused suspicious hit (operation and reason cut to their columns)."""
    row = LeakAlarmRow(
        id=new_id(),
        tenant_id=tenant,
        occurred_at=now,
        operation_id=operation[:200],
        reason=reason[:200],
        cache_key_hash=digest,
    )
    session.add(row)
    return row


async def leak_alarms(
    session: AsyncSession,
    *,
    since: datetime | None,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[LeakAlarmRow]:
    """The session tenant's alarms, newest first: since an instant, after a (time, id) position."""
    query = select(LeakAlarmRow)
    if since is not None:
        query = query.where(LeakAlarmRow.occurred_at >= since)
    query = after_position(query, (LeakAlarmRow.occurred_at, LeakAlarmRow.id), after, limit)
    return list((await session.execute(query)).scalars())
