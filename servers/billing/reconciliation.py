"""Daily reconciliation and variance guards.

For one tenant and UTC day, three independent sums are compared, each
aggregated in the database:

- ledger: every ledger entry booked that day;
- metered: what the day's usage events are worth, re-rated from their raw
  quantities (each touched line's rated amount after the day minus before it);
- documents: what the documents issued that day added (tax on invoices
  finalized, minus credit notes issued, plus credit notes voided, minus
  payments, plus refunds).

drift = ledger - metered - documents, target 0; an alert is raised above
$0.01 (one cent's worth of the currency's minor units, at least one unit).

Variance: the day's rated usage against the trailing 28 reconciled days, by
median and median absolute deviation (robust z above 3.5 and more than $1
away raises an alert); at least 7 days of history are needed.

Alerts are pushed to the platform's webhooks too, given its notifications.
"""

from __future__ import annotations

import statistics
import uuid
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.interfaces import Notifications
from servers.billing import metrics, records, store
from servers.billing.money import exponent, format_amount, round_half_up
from servers.billing.pricing import profile_of
from servers.billing.store import ReconciliationRow
from servers.db import Database

HISTORY_DAYS = 28
MIN_HISTORY = 7
ROBUST_Z_LIMIT = metrics.ROBUST_Z_LIMIT
#: 0.6745 makes the MAD of normal data comparable to a standard deviation.
MAD_SCALE = 0.6745


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[00:00, next 00:00) UTC of `day`."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def drift_threshold(currency: str) -> int:
    """$0.01 in the currency's minor units (0 when its minor unit is worth more).

    >>> drift_threshold("USD"), drift_threshold("BHD"), drift_threshold("JPY")
    (1, 10, 0)
    """
    places = exponent(currency)
    return 10 ** (places - 2) if places >= 2 else 0


async def metered(session: AsyncSession, start: datetime, end: datetime) -> int:
    """What the day's usage is worth, re-rated from the events' quantities."""
    total = 0
    for unit_price, per, before, through in await store.touched_lines(session, start, end):
        total += round_half_up(Fraction(through * unit_price, per)) - round_half_up(
            Fraction(before * unit_price, per)
        )
    return total


async def documents(session: AsyncSession, start: datetime, end: datetime) -> int:
    """What the documents issued (or voided) that day added to what is owed."""
    return await store.documents_sum(session, start, end)


async def reconcile(
    session: AsyncSession,
    tenant: uuid.UUID,
    day: date,
    now: datetime,
    notifications: Notifications | None = None,
) -> ReconciliationRow:
    """Reconcile one tenant's day, store the report (replacing an earlier one), raise alerts.

    Call it first in its transaction: the sums are read from one snapshot.
    """
    await store.one_snapshot(session)
    start, end = day_bounds(day)
    currency = (await profile_of(session, tenant)).currency
    ledger_total, billed = await store.ledger_sums(session, start, end)
    metered_total = await metered(session, start, end)
    documents_total = await documents(session, start, end)
    drift = ledger_total - metered_total - documents_total
    flagged = abs(drift) > drift_threshold(currency)
    report = await store.report_of(session, day.isoformat())
    if report is None:
        report = ReconciliationRow(tenant_id=tenant, day=day.isoformat())
        session.add(report)
    report.currency, report.metered_total, report.ledger_total = (
        currency,
        metered_total,
        ledger_total,
    )
    report.documents_total, report.drift, report.billed_total = documents_total, drift, billed
    report.alert, report.created_at = flagged, now
    await session.flush()
    metrics.DRIFT.set(str(tenant), drift)
    if flagged:
        await records.alert(
            session,
            tenant,
            "reconciliation_drift",
            f"{day.isoformat()}: ledger and documents differ by {format_amount(drift, currency)}",
            f"drift:{day.isoformat()}",
            now,
            {"day": day.isoformat(), "drift": str(drift), "currency": currency},
            notifications=notifications,
        )
    await _variance(session, tenant, day, billed, currency, now, notifications)
    return report


def robust_z(value: float, history: list[int]) -> float:
    """How many (MAD-scaled) deviations `value` lies from the history's median.

    >>> round(robust_z(150, [100, 102, 98, 101, 99, 100, 103]), 1)
    22.8
    """
    median = statistics.median(history)
    deviations = [abs(x - median) for x in history]
    mad = statistics.median(deviations)
    if mad == 0:
        mad = statistics.fmean(deviations) * 1.2533 * MAD_SCALE  # mean absolute deviation
    if mad == 0:
        return 0.0 if value == median else float("inf") if value > median else float("-inf")
    return MAD_SCALE * (value - median) / mad


async def _variance(  # noqa: PLR0917 - the day's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    day: date,
    billed: int,
    currency: str,
    now: datetime,
    notifications: Notifications | None,
) -> None:
    first = (day - timedelta(days=HISTORY_DAYS)).isoformat()
    history = await store.billed_history(session, first, day.isoformat())
    if len(history) < MIN_HISTORY:
        return
    z = robust_z(billed, history)
    median = statistics.median(history)
    metrics.VARIANCE.set(str(tenant), z if abs(z) != float("inf") else 1e9)
    floor = 100 * max(drift_threshold(currency), 1)  # $1
    if abs(z) > ROBUST_Z_LIMIT and abs(billed - median) > floor:
        await records.alert(
            session,
            tenant,
            "variance",
            f"{day.isoformat()}: billed {format_amount(billed, currency)} against a 28-day "
            f"median of {format_amount(int(median), currency)}",
            f"variance:{day.isoformat()}",
            now,
            {
                "day": day.isoformat(),
                "billed": str(billed),
                "median": str(median),
                "currency": currency,
                "z": f"{z:.2f}",
            },
            notifications=notifications,
        )


async def reconcile_all(
    database: Database, day: date, now: datetime, notifications: Notifications | None = None
) -> int:
    """Reconcile `day` for every enrolled tenant and every tenant with activity that day."""
    start, end = day_bounds(day)
    async with database.platform_session(readonly=True) as session:
        enrolled = await store.enrolled_tenants(session)
        active = await store.active_tenants(session, start, end)
    for tenant in sorted(enrolled | active):
        async with database.tenant_session(tenant) as session:
            await reconcile(session, tenant, day, now, notifications)
    return len(enrolled | active)


async def run(
    database: Database,
    tenant: uuid.UUID,
    day: date,
    now: datetime,
    notifications: Notifications | None = None,
) -> ReconciliationRow:
    """Reconcile one day of one tenant now (one transaction)."""
    async with database.tenant_session(tenant) as session:
        return await reconcile(session, tenant, day, now, notifications)


async def report_of(database: Database, tenant: uuid.UUID, day: str) -> ReconciliationRow:
    """The stored report of one day (ISO 8601) of the tenant.

    Raises:
        NotFound: The day was not reconciled.
    """
    async with database.tenant_session(tenant, readonly=True) as session:
        row = await store.report_of(session, day)
    if row is None:
        raise NotFound(f"no reconciliation report for {day}")
    return row
