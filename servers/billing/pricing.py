"""Billing profiles, the price book, and billing periods.

The price book (`price_book.json`) prices each meter per currency, in minor
units per `per_quantity` units; operators override a price per tenant
(`SetPrice`). A tenant without a profile bills in USD, taxed in US-NY,
prices exclusive of tax.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import FailedPrecondition, InvalidArgument, quoted
from servers.billing import store
from servers.billing.store import BillingProfileRow

PRICE_BOOK_FILE = Path(__file__).with_name("price_book.json")
PRICE_BOOK: dict[str, dict[str, Any]] = json.loads(PRICE_BOOK_FILE.read_text())
DEFAULT_PROFILE = {
    "currency": "USD",
    "jurisdiction": "US-NY",
    "tax_id": "",
    "tax_mode": "exclusive",
}


@dataclass(frozen=True)
class Price:
    """What `per_quantity` units of a meter cost, in minor units of `currency`."""

    meter: str
    description: str
    unit_price: int
    per_quantity: int
    currency: str
    tenant_override: bool = False


async def profile_of(session: AsyncSession, tenant: uuid.UUID) -> BillingProfileRow:
    """The tenant's billing profile (the default one, unsaved, when it has none)."""
    found = await store.profile_row(session, tenant)
    if found is not None:
        return found
    return BillingProfileRow(tenant_id=tenant, updated_at=datetime.now(UTC), **DEFAULT_PROFILE)


async def price_book(session: AsyncSession, currency: str) -> list[Price]:
    """Every meter's price for the tenant in `currency`: its overrides, else the defaults."""
    overrides = {
        row.meter: row for row in await store.price_overrides(session) if row.currency == currency
    }
    prices = []
    for meter in sorted(set(PRICE_BOOK) | set(overrides)):
        entry = PRICE_BOOK.get(meter, {})
        override = overrides.get(meter)
        if override is not None:
            prices.append(
                Price(
                    meter,
                    entry.get("description", meter),
                    override.unit_price,
                    override.per_quantity,
                    currency,
                    tenant_override=True,
                )
            )
        elif currency in entry.get("unit_price", {}):
            prices.append(
                Price(
                    meter,
                    entry["description"],
                    int(entry["unit_price"][currency]),
                    int(entry["per_quantity"]),
                    currency,
                )
            )
    return prices


async def price_of(session: AsyncSession, meter: str, currency: str) -> Price:
    """The tenant's price of `meter` in `currency`.

    Raises:
        InvalidArgument: No such meter in the price book.
        FailedPrecondition: The meter has no price in the tenant's currency.
    """
    if (
        meter not in PRICE_BOOK
        and await store.price_override(session, store.session_tenant(session), meter) is None
    ):
        raise InvalidArgument(
            f"no meter {quoted(meter)} in the price book", field="meter", metadata={"meter": meter}
        )
    for price in await price_book(session, currency):
        if price.meter == meter:
            return price
    raise FailedPrecondition(
        f"meter {quoted(meter)} has no price in {currency}", metadata={"meter": meter}
    )


def month_of(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) around `moment`: [first day, first day of the next month).

    >>> [d.date().isoformat() for d in month_of(datetime(2026, 12, 31, 23, tzinfo=UTC))]
    ['2026-12-01', '2027-01-01']
    """
    moment = moment.astimezone(UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    following = (
        datetime(moment.year + 1, 1, 1, tzinfo=UTC)
        if moment.month == 12
        else datetime(moment.year, moment.month + 1, 1, tzinfo=UTC)
    )
    return start, following
