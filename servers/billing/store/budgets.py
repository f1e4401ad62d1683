"""Cost budgets and what the current period's draft has rated on their meters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing.store.tables import BudgetRow, InvoiceLineRow, InvoiceRow
from servers.db import after_position


async def budget(session: AsyncSession, budget_id: str, *, lock: bool = False) -> BudgetRow | None:
    """The tenant's budget `budget_id` (locked for update when `lock`)."""
    query = select(BudgetRow).where(BudgetRow.id == budget_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def budgets_page(
    session: AsyncSession, after: tuple[Any, ...] | None, limit: int
) -> list[BudgetRow]:
    """Up to `limit` budgets by id, after a keyset."""
    query = after_position(select(BudgetRow), (BudgetRow.id,), after, limit, descending=False)
    return list((await session.execute(query)).scalars())


async def rated_on(session: AsyncSession, meters: Sequence[str], now: datetime) -> int:
    """What the current period's draft has rated on `meters` (all meters when empty)."""
    query = (
        select(func.coalesce(func.sum(InvoiceLineRow.amount), 0))
        .join(InvoiceRow, InvoiceRow.id == InvoiceLineRow.invoice_id)
        .where(
            InvoiceRow.status == "draft",
            InvoiceRow.period_start <= now,
            InvoiceRow.period_end > now,
        )
    )
    if meters:
        query = query.where(InvoiceLineRow.meter.in_(sorted(set(meters))))
    return int(await session.scalar(query) or 0)
