"""The phased rollout: which tenants bill as pilot, GA or frozen; at most eight GA.

Usage is always metered (nothing is lost while a tenant is frozen), but only
pilot and GA tenants have invoices finalized, credited, paid or refunded.
Backout freezes every GA tenant in one transaction, leaving billing to the
pilots.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument
from core.pagination import Page
from servers.billing import store
from servers.billing.store import RolloutChangeRow, RolloutRow
from servers.db import Database

#: The seed's limit: billing GA for at most eight production tenants.
MAX_GA_TENANTS = 8
BILLING_STAGES = ("pilot", "ga")


async def require_billing(session: AsyncSession, tenant: uuid.UUID) -> None:
    """Refuse document operations unless the tenant bills (pilot or GA).

    Raises:
        FailedPrecondition: Not enrolled, or frozen.
    """
    check_stage(await store.stage_of(session, tenant))


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
    return await store.rollout_rows(session)


async def set_stage(
    session: AsyncSession,
    tenant: uuid.UUID,
    stage: str,
    actor: str,
    now: datetime,
    *,
    reason: str = "",
) -> list[RolloutRow]:
    """Move one tenant to `stage` (pilot, ga or frozen).

    Raises:
        InvalidArgument: An unknown stage.
        FailedPrecondition: Promoting a ninth tenant to GA.
    """
    if stage not in {"pilot", "ga", "frozen"}:
        raise InvalidArgument("stage must be pilot, GA or frozen", field="stage")
    await store.serialize_rollout(session)
    if stage == "ga" and await store.count_other_ga(session, tenant) >= MAX_GA_TENANTS:
        raise FailedPrecondition(
            f"at most {MAX_GA_TENANTS} tenants may bill as GA",
            reason=ErrorReason.ERROR_REASON_ROLLOUT_GA_LIMIT,
        )
    await store.put_stage(session, tenant, stage, actor, now, reason=reason)
    return await rollout(session)


async def back_out(
    session: AsyncSession, actor: str, now: datetime, reason: str = ""
) -> list[RolloutRow]:
    """Freeze every GA tenant: billing goes back to the pilots only."""
    await store.serialize_rollout(session)
    await store.freeze_ga(session, actor, now, reason)
    return await rollout(session)


async def stages(database: Database) -> list[RolloutRow]:
    """Every enrolled tenant, by tenant id."""
    async with database.platform_session(readonly=True) as session:
        return await rollout(session)


async def move(
    database: Database,
    tenant: uuid.UUID,
    stage: str,
    actor: str,
    now: datetime,
    *,
    reason: str = "",
) -> list[RolloutRow]:
    """Move one tenant to `stage` (one transaction); every enrolled tenant after.

    Raises:
        InvalidArgument: An unknown stage.
        FailedPrecondition: Promoting a ninth tenant to GA.
    """
    async with database.platform_session() as session:
        return await set_stage(session, tenant, stage, actor, now, reason=reason)


async def back_out_all(
    database: Database, actor: str, now: datetime, reason: str = ""
) -> list[RolloutRow]:
    """Freeze every GA tenant (one transaction); every enrolled tenant after."""
    async with database.platform_session() as session:
        return await back_out(session, actor, now, reason)


async def changes(
    database: Database, tenant: uuid.UUID | None, page: Page
) -> tuple[list[RolloutChangeRow], str]:
    """A page of the rollout's history (of `tenant`, if given), newest first; the next token."""
    async with database.platform_session(readonly=True) as session:
        rows = await store.rollout_changes_page(session, tenant, page.after, page.size + 1)
    token = page.next_token(rows, lambda row: (row.changed_at, row.id))
    return rows[: page.size], token
