"""The phased rollout: which tenants bill as pilot, GA or frozen; at most eight GA.

Usage is always metered (nothing is lost while a tenant is frozen), but only
pilot and GA tenants have invoices finalized, credited, paid or refunded.
Backout freezes every GA tenant in one transaction, leaving billing to the
pilots.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import ScalarSelect

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument
from servers.billing.store import RolloutRow

#: The seed's limit: billing GA for at most eight production tenants.
MAX_GA_TENANTS = 8
#: PostgreSQL advisory lock key serializing rollout changes (the GA count).
_ROLLOUT_LOCK = 0x6269_6C6C  # "bill"
BILLING_STAGES = ("pilot", "ga")


def stage_query(tenant: uuid.UUID | BindParameter[uuid.UUID]) -> ScalarSelect[str]:
    """The tenant's stage as a scalar subquery (NULL when not enrolled)."""
    return select(RolloutRow.stage).where(RolloutRow.tenant == tenant).scalar_subquery()


async def stage_of(session: AsyncSession, tenant: uuid.UUID) -> str:
    """The tenant's stage ("" when not enrolled)."""
    return str(await session.scalar(select(stage_query(tenant))) or "")


async def require_billing(session: AsyncSession, tenant: uuid.UUID) -> None:
    """Refuse document operations unless the tenant bills (pilot or GA).

    Raises:
        FailedPrecondition: Not enrolled, or frozen.
    """
    check_stage(await stage_of(session, tenant))


def check_stage(stage: str | None) -> None:
    """Refuse unless `stage` is one that bills.

    Raises:
        FailedPrecondition: Not enrolled (None or ""), or frozen.
    """
    if stage not in BILLING_STAGES:
        raise FailedPrecondition(
            "billing is frozen for this tenant"
            if stage
            else "this tenant is not enrolled in billing (pilot or GA)",
            reason=ErrorReason.ERROR_REASON_BILLING_FROZEN,
            metadata={"stage": stage or "none"},
        )


async def rollout(session: AsyncSession) -> list[RolloutRow]:
    """Every enrolled tenant, by tenant id."""
    return list((await session.execute(select(RolloutRow).order_by(RolloutRow.tenant))).scalars())


async def _serialize(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ROLLOUT_LOCK})


async def set_stage(
    session: AsyncSession, tenant: uuid.UUID, stage: str, actor: str, now: datetime
) -> list[RolloutRow]:
    """Move one tenant to `stage` (pilot, ga or frozen).

    Raises:
        InvalidArgument: An unknown stage.
        FailedPrecondition: Promoting a ninth tenant to GA.
    """
    if stage not in {"pilot", "ga", "frozen"}:
        raise InvalidArgument("stage must be pilot, GA or frozen", field="stage")
    await _serialize(session)
    if stage == "ga":
        others = await session.scalar(
            select(func.count())
            .select_from(RolloutRow)
            .where(RolloutRow.stage == "ga", RolloutRow.tenant != tenant)
        )
        if int(others or 0) >= MAX_GA_TENANTS:
            raise FailedPrecondition(
                f"at most {MAX_GA_TENANTS} tenants may bill as GA",
                reason=ErrorReason.ERROR_REASON_ROLLOUT_GA_LIMIT,
            )
    row = await session.get(RolloutRow, tenant)
    if row is None:
        session.add(RolloutRow(tenant=tenant, stage=stage, updated_at=now, updated_by=actor))
    else:
        row.stage, row.updated_at, row.updated_by = stage, now, actor
    await session.flush()
    return await rollout(session)


async def back_out(session: AsyncSession, actor: str, now: datetime) -> list[RolloutRow]:
    """Freeze every GA tenant: billing goes back to the pilots only."""
    await _serialize(session)
    await session.execute(
        update(RolloutRow)
        .where(RolloutRow.stage == "ga")
        .values(stage="frozen", updated_at=now, updated_by=actor)
    )
    return await rollout(session)
