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
"""

from __future__ import annotations

import statistics
import uuid
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servers.billing import metrics, records
from servers.billing.money import exponent, format_amount, round_half_up
from servers.billing.pricing import profile_of
from servers.billing.store import (
    CreditNoteRow,
    InvoiceLineRow,
    InvoiceRow,
    LedgerEntryRow,
    PaymentRow,
    ReconciliationRow,
    RefundRow,
    RolloutRow,
    UsageEventRow,
)
from servers.db import Database

HISTORY_DAYS = 28
MIN_HISTORY = 7
ROBUST_Z_LIMIT = 3.5
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


async def _sum(session: AsyncSession, column: object, *where: object) -> int:
    value = await session.scalar(select(func.coalesce(func.sum(column), 0)).where(*where))  # type: ignore[arg-type]
    return int(value or 0)


async def metered(session: AsyncSession, start: datetime, end: datetime) -> int:
    """What the day's usage is worth, re-rated from the events' quantities."""
    touched = (
        select(UsageEventRow.line_id)
        .where(UsageEventRow.recorded_at >= start, UsageEventRow.recorded_at < end)
        .distinct()
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            InvoiceLineRow.unit_price,
            InvoiceLineRow.per_quantity,
            func.sum(case((UsageEventRow.recorded_at < start, UsageEventRow.quantity), else_=0)),
            func.sum(UsageEventRow.quantity),
        )
        .join(InvoiceLineRow, InvoiceLineRow.id == UsageEventRow.line_id)
        .where(UsageEventRow.recorded_at < end, UsageEventRow.line_id.in_(touched))
        .group_by(InvoiceLineRow.id, InvoiceLineRow.unit_price, InvoiceLineRow.per_quantity)
    )
    total = 0
    for unit_price, per, before, through in rows:
        total += round_half_up(Fraction(int(through) * unit_price, per)) - round_half_up(
            Fraction(int(before) * unit_price, per)
        )
    return total


async def documents(session: AsyncSession, start: datetime, end: datetime) -> int:
    """What the documents issued (or voided) that day added to what is owed."""
    finalized = and_(
        InvoiceRow.status == "finalized",
        InvoiceRow.finalized_at >= start,
        InvoiceRow.finalized_at < end,
    )
    invoiced = await _sum(session, InvoiceRow.total, finalized)
    rated = await session.scalar(
        select(func.coalesce(func.sum(InvoiceLineRow.amount), 0))
        .join(InvoiceRow, InvoiceRow.id == InvoiceLineRow.invoice_id)
        .where(finalized)
    )
    issued = await _sum(
        session,
        CreditNoteRow.total,
        CreditNoteRow.created_at >= start,
        CreditNoteRow.created_at < end,
    )
    voided = await _sum(
        session,
        CreditNoteRow.total,
        CreditNoteRow.voided_at >= start,
        CreditNoteRow.voided_at < end,
    )
    paid = await _sum(
        session, PaymentRow.amount, PaymentRow.created_at >= start, PaymentRow.created_at < end
    )
    refunded = await _sum(
        session, RefundRow.amount, RefundRow.created_at >= start, RefundRow.created_at < end
    )
    return invoiced - int(rated or 0) - issued + voided - paid + refunded


async def reconcile(
    session: AsyncSession, tenant: uuid.UUID, day: date, now: datetime
) -> ReconciliationRow:
    """Reconcile one tenant's day, store the report (replacing an earlier one), raise alerts."""
    start, end = day_bounds(day)
    currency = (await profile_of(session, tenant)).currency
    in_day = (LedgerEntryRow.recorded_at >= start, LedgerEntryRow.recorded_at < end)
    ledger_total = await _sum(session, LedgerEntryRow.amount, *in_day)
    billed = await _sum(session, LedgerEntryRow.amount, LedgerEntryRow.kind == "usage", *in_day)
    metered_total = await metered(session, start, end)
    documents_total = await documents(session, start, end)
    drift = ledger_total - metered_total - documents_total
    flagged = abs(drift) > drift_threshold(currency)
    report = (
        await session.execute(
            select(ReconciliationRow).where(ReconciliationRow.day == day.isoformat())
        )
    ).scalar_one_or_none()
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
    metrics.DRIFT.labels(str(tenant)).set(drift)
    if flagged:
        await records.alert(
            session,
            tenant,
            "reconciliation_drift",
            f"{day.isoformat()}: ledger and documents differ by {format_amount(drift, currency)}",
            f"drift:{day.isoformat()}",
            now,
            {"day": day.isoformat(), "drift": str(drift), "currency": currency},
        )
    await _variance(session, tenant, day, billed, currency, now)
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
    session: AsyncSession, tenant: uuid.UUID, day: date, billed: int, currency: str, now: datetime
) -> None:
    first = (day - timedelta(days=HISTORY_DAYS)).isoformat()
    history = [
        int(value)
        for value in (
            await session.execute(
                select(ReconciliationRow.billed_total).where(
                    ReconciliationRow.day >= first, ReconciliationRow.day < day.isoformat()
                )
            )
        ).scalars()
    ]
    if len(history) < MIN_HISTORY:
        return
    z = robust_z(billed, history)
    median = statistics.median(history)
    metrics.VARIANCE.labels(str(tenant)).set(z if abs(z) != float("inf") else 1e9)
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
            {"day": day.isoformat(), "billed": str(billed), "median": str(median), "z": f"{z:.2f}"},
        )


async def reconcile_all(database: Database, day: date, now: datetime) -> int:
    """Reconcile `day` for every enrolled tenant and every tenant with activity that day."""
    start, end = day_bounds(day)
    async with database.platform_session(readonly=True) as session:
        enrolled = set((await session.execute(select(RolloutRow.tenant))).scalars())
        active = set(
            (
                await session.execute(
                    select(LedgerEntryRow.tenant_id)
                    .where(LedgerEntryRow.recorded_at >= start, LedgerEntryRow.recorded_at < end)
                    .distinct()
                    .execution_options(all_tenants=True)
                )
            ).scalars()
        )
    for tenant in sorted(enrolled | active):
        async with database.tenant_session(tenant) as session:
            await reconcile(session, tenant, day, now)
    return len(enrolled | active)
