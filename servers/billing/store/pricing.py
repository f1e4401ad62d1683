"""Queries of billing profiles and tenants' prices."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing.store.tables import BillingProfileRow, PriceRow


async def profile_row(session: AsyncSession, tenant: uuid.UUID) -> BillingProfileRow | None:
    """The tenant's saved billing profile, if any."""
    return await session.get(BillingProfileRow, tenant)


async def price_overrides(session: AsyncSession) -> list[PriceRow]:
    """The tenant's own prices."""
    return list((await session.execute(select(PriceRow))).scalars())


async def price_override(session: AsyncSession, tenant: uuid.UUID, meter: str) -> PriceRow | None:
    """The tenant's own price of `meter`, if any."""
    return await session.get(PriceRow, (tenant, meter))


def session_tenant(session: AsyncSession) -> uuid.UUID:
    """The tenant a tenant session is scoped to."""
    from servers.db.tenancy import TENANT_KEY  # noqa: PLC0415 - a private detail of sessions

    tenant: uuid.UUID = session.info[TENANT_KEY]
    return tenant
