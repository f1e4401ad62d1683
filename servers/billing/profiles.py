"""Setting a tenant's billing profile and its own prices (each one transaction).

The rule: a tenant's currency is fixed once it has been invoiced (any invoice
but an empty draft); empty drafts follow the profile's currency and tax mode.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from core.errors import FailedPrecondition, InvalidArgument, Unavailable, quoted
from servers.billing import store
from servers.billing.money import MAX_MINOR_UNITS, within_money_bound
from servers.billing.money import currency as iso_currency
from servers.billing.pricing import PRICE_BOOK, Price, price_book, profile_of
from servers.billing.store import BillingProfileRow, InvoiceRow, PriceRow
from servers.billing.tax import (
    LineToTax,
    TaxCalculation,
    TaxProvider,
    TaxUnavailable,
    UnknownJurisdiction,
)
from servers.db import Database


def require_currency_open(billed: InvoiceRow | None, code: str) -> None:
    """Refuse another currency once the tenant has been invoiced.

    Raises:
        FailedPrecondition: `billed` (an invoice that fixes the currency) is in another one.
    """
    if billed is not None and billed.currency != code:
        raise FailedPrecondition(
            f"the tenant has been invoiced in {billed.currency}; its currency is fixed",
            metadata={"currency": billed.currency},
        )


async def set_profile(  # noqa: PLR0917 - one profile's facts
    database: Database,
    tax: TaxProvider,
    tenant: uuid.UUID,
    currency_code: str,
    jurisdiction: str,
    tax_id: str,
    mode: str | None,
    now: datetime,
) -> BillingProfileRow:
    """Set the tenant's currency (fixed once invoiced), jurisdiction, tax id and tax mode.

    Raises:
        InvalidArgument: An unknown currency, tax mode (None) or jurisdiction.
        FailedPrecondition: Another currency than the one the tenant was invoiced in.
    """
    try:
        code = iso_currency(currency_code)
    except ValueError as error:
        raise InvalidArgument(str(error), field="profile.currency_code") from None
    if mode is None:
        raise InvalidArgument("tax_mode must be exclusive or inclusive", field="profile.tax_mode")
    try:
        tax.rate(jurisdiction)
    except UnknownJurisdiction as error:
        raise InvalidArgument(str(error), field="profile.jurisdiction") from None
    async with database.tenant_session(tenant) as session:
        require_currency_open(await store.billed_invoice(session), code)
        row = await store.profile_row(session, tenant)
        if row is None:
            row = BillingProfileRow(tenant_id=tenant)
            session.add(row)
        row.currency, row.jurisdiction, row.tax_id = code, jurisdiction, tax_id
        row.tax_mode, row.updated_at = mode, now
        for draft in await store.drafts(session):
            if draft.subtotal == 0:
                draft.currency, draft.tax_mode = code, mode
        await session.flush()
        return row


def require_known_meter(meter: str) -> None:
    """Refuse a meter the price book does not know.

    Raises:
        InvalidArgument: An unknown meter.
    """
    if meter not in PRICE_BOOK:
        raise InvalidArgument(f"no meter {quoted(meter)} in the price book", field="meter")


async def set_price(  # noqa: PLR0917 - one price's facts
    database: Database,
    tenant: uuid.UUID,
    meter: str,
    unit_price: tuple[int, str] | None,
    per_quantity: int,
    now: datetime,
) -> Price | None:
    """Set (or, `unit_price` None, clear) the tenant's own price of `meter`.

    Returns the meter's price for the tenant afterwards (None when it has none
    in the tenant's currency); lines already open keep their price.

    Raises:
        InvalidArgument: An unknown meter, a negative price, another currency than
            the tenant's, a per_quantity below 1.
    """
    require_known_meter(meter)
    async with database.tenant_session(tenant) as session:
        existing = await store.price_override(session, tenant, meter)
        profile = await profile_of(session, tenant)
        if unit_price is None:
            if existing is not None:
                await session.delete(existing)
        else:
            amount, code = unit_price
            if amount < 0:
                raise InvalidArgument("prices are not negative", field="unit_price.minor_units")
            if code != profile.currency:
                raise InvalidArgument(
                    f"the tenant bills in {profile.currency}", field="unit_price.currency_code"
                )
            per = per_quantity or 1
            if per < 1:
                raise InvalidArgument("per_quantity must be at least 1", field="per_quantity")
            if existing is None:
                existing = PriceRow(tenant_id=tenant, meter=meter)
                session.add(existing)
            existing.unit_price, existing.currency = amount, code
            existing.per_quantity, existing.updated_at = per, now
        await session.flush()
        for price in await price_book(session, profile.currency):
            if price.meter == meter:
                return price
    return None


async def profile(database: Database, tenant: uuid.UUID) -> BillingProfileRow:
    """The tenant's billing profile (the defaults until set)."""
    async with database.tenant_session(tenant, readonly=True) as session:
        return await profile_of(session, tenant)


async def prices(database: Database, tenant: uuid.UUID) -> list[Price]:
    """Every meter's price for the tenant, in its currency."""
    async with database.tenant_session(tenant, readonly=True) as session:
        found = await profile_of(session, tenant)
        return await price_book(session, found.currency)


async def calculate_tax(  # noqa: PLR0917 - one calculation's facts
    database: Database,
    provider: TaxProvider,
    tenant: uuid.UUID,
    lines: list[LineToTax],
    codes: set[str],
    mode: str | None,
    jurisdiction: str,
    customer_tax_id: str,
) -> tuple[TaxCalculation, BillingProfileRow]:
    """Tax lines through the provider (the tenant's profile fills what is not given).

    Nothing is recorded. Returns the calculation and the profile it used.

    Raises:
        InvalidArgument: Amounts in several currencies, too large a sum, an unknown
            jurisdiction.
        Unavailable: The provider is down.
    """
    async with database.tenant_session(tenant, readonly=True) as session:
        found = await profile_of(session, tenant)
    if len(codes) > 1:
        raise InvalidArgument("every amount must be in one currency", field="lines")
    if not within_money_bound(sum(line.amount for line in lines)):
        raise InvalidArgument(
            f"the lines add up to more than {MAX_MINOR_UNITS} minor units", field="lines"
        )
    chosen = mode or found.tax_mode
    try:
        calculation = await provider.calculate(
            lines,
            jurisdiction=jurisdiction or found.jurisdiction,
            customer_tax_id=customer_tax_id,
            mode="inclusive" if chosen == "inclusive" else "exclusive",
            currency=next(iter(codes)) if codes else found.currency,
        )
    except UnknownJurisdiction as error:
        raise InvalidArgument(str(error), field="jurisdiction") from None
    except TaxUnavailable as error:
        raise Unavailable(str(error)) from None
    return calculation, found
