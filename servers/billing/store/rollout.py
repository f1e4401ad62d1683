"""Queries of the phased rollout (a platform table)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import ScalarSelect

from servers.billing.store.tables import RolloutChangeRow, RolloutRow
from servers.db import after_position

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
    session: AsyncSession,
    tenant: uuid.UUID,
    stage: str,
    actor: str,
    now: datetime,
    *,
    reason: str = "",
) -> None:
    """Write the tenant's stage (enrolling it if needed), and its change to the history."""
    row = await session.get(RolloutRow, tenant)
    before = row.stage if row is not None else ""
    if row is None:
        session.add(RolloutRow(tenant=tenant, stage=stage, updated_at=now, updated_by=actor))
    else:
        row.stage, row.updated_at, row.updated_by = stage, now, actor
    if before != stage:
        session.add(
            RolloutChangeRow(
                tenant=tenant,
                from_stage=before,
                to_stage=stage,
                changed_at=now,
                changed_by=actor,
                reason=reason,
            )
        )
    await session.flush()


async def freeze_ga(session: AsyncSession, actor: str, now: datetime, reason: str = "") -> None:
    """Freeze every GA tenant, one backout change in the history for each."""
    frozen = (
        await session.execute(
            update(RolloutRow)
            .where(RolloutRow.stage == "ga")
            .values(stage="frozen", updated_at=now, updated_by=actor)
            .returning(RolloutRow.tenant)
        )
    ).scalars()
    session.add_all(
        RolloutChangeRow(
            tenant=tenant,
            from_stage="ga",
            to_stage="frozen",
            changed_at=now,
            changed_by=actor,
            reason=reason,
            backout=True,
        )
        for tenant in sorted(frozen)
    )
    await session.flush()


async def rollout_changes_page(
    session: AsyncSession, tenant: uuid.UUID | None, after: tuple[Any, ...] | None, limit: int
) -> list[RolloutChangeRow]:
    """Up to `limit` rollout changes (of `tenant`, if given), newest first, after a keyset."""
    query = select(RolloutChangeRow)
    if tenant is not None:
        query = query.where(RolloutChangeRow.tenant == tenant)
    query = after_position(query, (RolloutChangeRow.changed_at, RolloutChangeRow.id), after, limit)
    return list((await session.execute(query)).scalars())
