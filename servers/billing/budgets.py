"""Cost budgets: a monthly amount for the rated usage of some meters, and what is spent.

A budget is named by an id the tenant chooses (a slug), so other services can
link to it — the Catalog shows a service's monthly cost beside its error budget
by reading the budget through this service's contract. What is spent is what
the current period's draft invoice has rated on the budget's meters, exactly
the figure the invoice will carry.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidArgument, NotFound, quoted
from servers.billing import store
from servers.billing.pricing import PRICE_BOOK, month_of, profile_of
from servers.billing.store import BudgetRow
from servers.db import Database

_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: The largest monthly amount, in minor units (the platform's money bound).
MAX_AMOUNT = 10**15


@dataclass(frozen=True)
class BudgetStatus:
    """A budget and what the current period has spent on its meters."""

    row: BudgetRow
    spent: int
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class NewBudget:
    """A budget as the caller sets it."""

    id: str
    name: str
    monthly_amount: int
    currency: str
    meters: tuple[str, ...]


def _check(budget: NewBudget, known_meters: set[str], tenant_currency: str) -> None:
    if not _ID.fullmatch(budget.id):
        raise InvalidArgument(
            f"budget.id {quoted(budget.id)} must be 1 to 63 lower-case letters, digits and "
            "inner hyphens",
            field="budget.id",
        )
    if not 0 <= budget.monthly_amount <= MAX_AMOUNT:
        raise InvalidArgument(
            f"budget.monthly_amount must lie between 0 and {MAX_AMOUNT} minor units",
            field="budget.monthly_amount.minor_units",
        )
    if budget.currency != tenant_currency:
        raise InvalidArgument(
            f"the budget must be in the tenant's currency, {tenant_currency}",
            field="budget.monthly_amount.currency_code",
        )
    for index, meter in enumerate(budget.meters):
        if meter not in known_meters:
            raise InvalidArgument(
                f"budget.meters[{index}] {quoted(meter)} is not a priced meter",
                field=f"budget.meters[{index}]",
            )


async def set_budget(
    database: Database, tenant: uuid.UUID, budget: NewBudget, now: datetime
) -> BudgetStatus:
    """Create or replace a budget in its own transaction.

    Raises:
        InvalidArgument: A bad id, amount, currency (not the tenant's) or meter.
    """
    async with database.tenant_session(tenant) as session:
        profile = await profile_of(session, tenant)
        overrides = {row.meter for row in await store.price_overrides(session)}
        _check(budget, set(PRICE_BOOK) | overrides, profile.currency)
        row = await store.budget(session, budget.id, lock=True)
        if row is None:
            row = BudgetRow(tenant_id=tenant, id=budget.id, created_at=now)
            session.add(row)
        row.name = budget.name
        row.monthly_amount = budget.monthly_amount
        row.currency = budget.currency
        row.meters = sorted(set(budget.meters))
        row.updated_at = now
        await session.flush()
        return await _status(session, row, now)


async def _status(session: AsyncSession, row: BudgetRow, now: datetime) -> BudgetStatus:
    start, end = month_of(now)
    return BudgetStatus(row, await store.rated_on(session, row.meters, now), start, end)


async def budget_of(
    database: Database, tenant: uuid.UUID, budget_id: str, now: datetime
) -> BudgetStatus:
    """A budget and what the current period spent on it.

    Raises:
        NotFound: The tenant has no such budget.
    """
    async with database.tenant_session(tenant, readonly=True) as session:
        row = await store.budget(session, budget_id)
        if row is None:
            raise NotFound(f"no budget has the id {quoted(budget_id)}", metadata={"id": budget_id})
        return await _status(session, row, now)


async def budgets_page(
    database: Database,
    tenant: uuid.UUID,
    after: tuple[str, ...] | None,
    limit: int,
    now: datetime,
) -> Sequence[BudgetStatus]:
    """Up to `limit` budgets by id after `after`, each with what is spent."""
    async with database.tenant_session(tenant, readonly=True) as session:
        rows = await store.budgets_page(session, after, limit)
        return [await _status(session, row, now) for row in rows]
