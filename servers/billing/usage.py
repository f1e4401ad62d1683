"""Metered usage: recorded once per event id, rated into the current draft, held to the cap.

An event is rated into the tenant's current draft invoice (the one whose
period contains the moment it is recorded), on the line of its meter: the
line's amount is always round_half_up(quantity * unit_price / per_quantity) of
its whole quantity, so per-event rounding never accumulates; each event
records (and the ledger books) the change it made.

Spend caps hold a period's rated usage: once what the current draft has
rated reaches the cap, further events are refused (RESOURCE_EXHAUSTED), so a
cap is overshot by at most the one event that crossed it. Alerts are raised
(and pushed, given the platform's notifications) when an event crosses 80 % and
100 % of the cap.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorReason, InvalidArgument, ResourceExhausted, quoted
from core.interfaces import Notifications
from servers.billing import metrics, records, store
from servers.billing.money import MAX_LINE_QUANTITY, MAX_SUBTOTAL, round_half_up
from servers.billing.pricing import month_of, price_of, profile_of
from servers.billing.store import InvoiceLineRow, InvoiceRow, SpendCapRow, UsageEventRow
from servers.db import Database

#: How far in the future an event may say it occurred (clock skew between services).
FUTURE_SKEW = timedelta(minutes=5)
#: Share of the cap at which the first alert is raised.
CAP_WARNING = Fraction(8, 10)


@dataclass(frozen=True)
class Recorded:
    """A usage event as stored, and whether it had been recorded before."""

    event: UsageEventRow
    duplicate: bool


def series_of(prefix: str, moment: datetime) -> str:
    """A document series: one per prefix and year ("INV-2026")."""
    return f"{prefix}-{moment.year}"


async def current_draft(session: AsyncSession, tenant: uuid.UUID, now: datetime) -> InvoiceRow:
    """The draft whose period is current at `now`, created (and locked) if needed.

    Periods are calendar months; an invoice finalized before its month ends
    closes its period then, and the next draft starts where it stopped.
    """
    found = await store.open_draft(session, now)
    if found is not None:
        return found
    start, end = month_of(now)
    closed = await store.closed_until(session, start, end)
    if closed is not None and closed > start:
        start = closed
    profile = await profile_of(session, tenant)
    await store.insert_draft(
        session,
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant,
            "series": series_of("INV", start),
            "status": "draft",
            "period_start": start,
            "period_end": end,
            "currency": profile.currency,
            "subtotal": 0,
            "tax": 0,
            "total": 0,
            "tax_mode": profile.tax_mode,
            "created_at": now,
        },
    )
    draft = await store.open_draft(session, now)
    if draft is None:  # pragma: no cover - the insert above or a concurrent one made it
        raise RuntimeError("no draft invoice after creating one")
    return draft


async def _line(
    session: AsyncSession, tenant: uuid.UUID, draft: InvoiceRow, meter: str
) -> InvoiceLineRow:
    """The draft's line for `meter`, created at the tenant's current price (and locked)."""
    line = await store.draft_line(session, draft.id, meter)
    if line is not None:
        return line
    price = await price_of(session, meter, draft.currency)
    return await store.insert_line(
        session,
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant,
            "invoice_id": draft.id,
            "meter": meter,
            "description": price.description,
            "quantity": 0,
            "unit_price": price.unit_price,
            "per_quantity": price.per_quantity,
            "amount": 0,
            "subtotal": 0,
            "tax": 0,
            "total": 0,
        },
    )


async def record_usage(  # noqa: PLR0917 - one event's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    event_id: str,
    meter: str,
    quantity: int,
    occurred_at: datetime,
    now: datetime,
    *,
    enforce_cap: bool = True,
    notifications: Notifications | None = None,
) -> Recorded:
    """Record and rate one usage event (idempotent by event id).

    `enforce_cap=False` records work that was admitted before the cap was reached;
    the cap's alerts go to `notifications` too, when given.

    Raises:
        InvalidArgument: Quantity not positive, an unknown meter, an event in the
            future, an event id already used for a different event, or charges
            that would pass what a document may rate (`MAX_SUBTOTAL`).
        ResourceExhausted: The tenant's spend cap is reached.
    """
    if quantity <= 0:
        raise InvalidArgument("quantity must be positive", field="quantity")
    if occurred_at > now + FUTURE_SKEW:
        raise InvalidArgument("occurred_at lies in the future", field="occurred_at")
    earlier = await store.usage_event(session, tenant, event_id)
    if earlier is not None:
        return _duplicate(earlier, meter, quantity)
    cap = await store.spend_cap_of(session, tenant, lock=True)
    draft = await current_draft(session, tenant, now)
    if enforce_cap and cap is not None and cap.cap > 0 and draft.subtotal >= cap.cap:
        metrics.CAP_REFUSALS.inc()
        raise ResourceExhausted(
            f"the spend cap of {cap.cap} {cap.currency} minor units for this period is reached",
            reason=ErrorReason.ERROR_REASON_SPEND_CAP_REACHED,
            metadata={"cap": str(cap.cap), "spent": str(draft.subtotal)},
        )
    line = await _line(session, tenant, draft, meter)
    if line.quantity + quantity > MAX_LINE_QUANTITY:
        raise InvalidArgument(
            f"the period's quantity of this meter would pass {MAX_LINE_QUANTITY}",
            field="quantity",
        )
    amount = round_half_up(
        Fraction((line.quantity + quantity) * line.unit_price, line.per_quantity)
    )
    change = amount - line.amount
    if amount > MAX_SUBTOTAL or draft.subtotal + change > MAX_SUBTOTAL:
        raise InvalidArgument(
            f"the period's charges would pass {MAX_SUBTOTAL} minor units",
            field="quantity",
            metadata={"max_minor_units": str(MAX_SUBTOTAL)},
        )
    inserted = await store.insert_usage_event(
        session,
        {
            "tenant_id": tenant,
            "event_id": event_id,
            "meter": meter,
            "quantity": quantity,
            "occurred_at": occurred_at,
            "recorded_at": now,
            "invoice_id": draft.id,
            "line_id": line.id,
            "amount": change,
        },
    )
    if not inserted:  # a concurrent request recorded it first
        stored = await store.usage_event(session, tenant, event_id, fresh=True)
        assert stored is not None
        return _duplicate(stored, meter, quantity)
    spent_before = draft.subtotal
    line.quantity += quantity
    line.amount = amount
    line.subtotal = line.total = amount
    draft.subtotal += change
    draft.total += change
    records.ledger(session, tenant, "usage", change, draft.currency, draft.id, event_id, now)
    metrics.USAGE.inc()
    if cap is not None and cap.cap > 0:
        await _cap_alerts(session, tenant, cap, draft, spent_before, now, notifications)
    event = await store.usage_event(session, tenant, event_id)
    assert event is not None
    return Recorded(event, duplicate=False)


def _duplicate(earlier: UsageEventRow, meter: str, quantity: int) -> Recorded:
    if (earlier.meter, earlier.quantity) != (meter, quantity):
        raise InvalidArgument(
            f"event {quoted(earlier.event_id)} was recorded with another meter or quantity",
            field="event_id",
            reason=ErrorReason.ERROR_REASON_IDEMPOTENCY_KEY_REUSED,
        )
    return Recorded(earlier, duplicate=True)


async def _cap_alerts(  # noqa: PLR0917 - the crossing's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    cap: SpendCapRow,
    draft: InvoiceRow,
    spent_before: int,
    now: datetime,
    notifications: Notifications | None,
) -> None:
    period = draft.period_start.date().isoformat()
    for share, kind in ((CAP_WARNING, "spend_cap_80"), (Fraction(1), "spend_cap_100")):
        threshold = cap.cap * share
        if spent_before < threshold <= draft.subtotal:
            await records.alert(
                session,
                tenant,
                kind,
                f"usage reached {float(share):.0%} of the spend cap for the period from {period}",
                f"{kind}:{period}:{cap.cap}",
                now,
                {"cap": str(cap.cap), "spent": str(draft.subtotal), "currency": cap.currency},
                notifications=notifications,
            )


async def set_spend_cap(
    session: AsyncSession, tenant: uuid.UUID, cap: int, currency: str, now: datetime
) -> SpendCapRow:
    """Set the cap (0 removes it) in the tenant's billing currency.

    Raises:
        InvalidArgument: A negative cap, or another currency than the tenant's.
    """
    profile = await profile_of(session, tenant)
    if cap < 0:
        raise InvalidArgument("the cap must not be negative", field="cap.minor_units")
    if currency != profile.currency:
        raise InvalidArgument(
            f"the cap must be in the tenant's currency, {profile.currency}",
            field="cap.currency_code",
        )
    row = await store.spend_cap_of(session, tenant, lock=True)
    if row is None:
        row = SpendCapRow(tenant_id=tenant, cap=cap, currency=currency, updated_at=now)
        session.add(row)
    else:
        row.cap, row.currency, row.updated_at = cap, currency, now
    await session.flush()
    return row


async def spent(session: AsyncSession, now: datetime) -> int:
    """What the current period's draft has rated so far (0 without one)."""
    return await store.spent(session, now)


async def record(  # noqa: PLR0917 - one event's facts
    database: Database,
    tenant: uuid.UUID,
    event_id: str,
    meter: str,
    quantity: int,
    occurred_at: datetime,
    now: datetime,
    *,
    notifications: Notifications | None = None,
) -> Recorded:
    """Record one usage event in its own transaction (see `record_usage`)."""
    async with database.tenant_session(tenant) as session:
        return await record_usage(
            session,
            tenant,
            event_id,
            meter,
            quantity,
            occurred_at,
            now,
            notifications=notifications,
        )


async def set_cap(
    database: Database, tenant: uuid.UUID, cap: int, currency: str, now: datetime
) -> tuple[SpendCapRow, int]:
    """Set the cap in its own transaction; the cap and what the current period spent.

    Raises:
        InvalidArgument: A negative cap, or another currency than the tenant's.
    """
    async with database.tenant_session(tenant) as session:
        row = await set_spend_cap(session, tenant, cap, currency, now)
        return row, await spent(session, now)


async def cap_of(
    database: Database, tenant: uuid.UUID, clock: Callable[[], datetime]
) -> tuple[SpendCapRow | None, int, str]:
    """The tenant's cap (if any), what the current period spent, and the tenant's currency."""
    async with database.tenant_session(tenant, readonly=True) as session:
        row = await store.spend_cap_of(session, tenant)
        profile = await profile_of(session, tenant)
        return row, await spent(session, clock()), profile.currency
