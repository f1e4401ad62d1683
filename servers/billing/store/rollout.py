"""Queries of the phased rollout (a platform table)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import ScalarSelect

from servers.billing.store.tables import RolloutRow

#: PostgreSQL advisory lock key serializing rollout changes (the GA count).
_ROLLOUT_LOCK = 0x6269_6C6C  # "bill"


def stage_query(tenant: uuid.UUID | BindParameter[uuid.UUID]) -> ScalarSelect[str]:
    """The tenant's stage as a scalar subquery (NULL when not enrolled)."""
    return select(RolloutRow.stage).where(RolloutRow.tenant == tenant).scalar_subquery()


async def stage_of(session: AsyncSession, tenant: uuid.UUID) -> str:
    """The tenant's stage ("" when not enrolled)."""
    return str(await session.scalar(select(stage_query(tenant))) or "")


async def rollout_rows(session: AsyncSession) -> list[RolloutRow]:
    """Every enrolled tenant, by tenant id."""
    return list((await session.execute(select(RolloutRow).order_by(RolloutRow.tenant))).scalars())


async def enrolled_tenants(session: AsyncSession) -> set[uuid.UUID]:
    """Every enrolled tenant."""
    return set((await session.execute(select(RolloutRow.tenant))).scalars())


async def serialize_rollout(session: AsyncSession) -> None:
    """Serialize rollout changes for the rest of the transaction (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ROLLOUT_LOCK})


async def count_other_ga(session: AsyncSession, tenant: uuid.UUID) -> int:
    """How many tenants besides `tenant` bill as GA."""
    others = await session.scalar(
        select(func.count())
        .select_from(RolloutRow)
        .where(RolloutRow.stage == "ga", RolloutRow.tenant != tenant)
    )
    return int(others or 0)


async def put_stage(
    session: AsyncSession, tenant: uuid.UUID, stage: str, actor: str, now: datetime
) -> None:
    """Write the tenant's stage (enrolling it if needed)."""
    row = await session.get(RolloutRow, tenant)
    if row is None:
        session.add(RolloutRow(tenant=tenant, stage=stage, updated_at=now, updated_by=actor))
    else:
        row.stage, row.updated_at, row.updated_by = stage, now, actor
    await session.flush()


async def freeze_ga(session: AsyncSession, actor: str, now: datetime) -> None:
    """Freeze every GA tenant."""
    await session.execute(
        update(RolloutRow)
        .where(RolloutRow.stage == "ga")
        .values(stage="frozen", updated_at=now, updated_by=actor)
    )
