"""What every billing operation writes beside its documents: ledger entries, alerts, numbers.

All of it happens in the caller's transaction, so a document never exists
without its ledger entry, a number is never used by a document that did not
commit (numbers are gapless), and an alert is pushed to the platform's webhooks
(`core.interfaces.Notifications`, event `billing_alert`) exactly when it is raised.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.interfaces import OPERATORS, Notifications
from core.pagination import Page
from core.times import rfc3339
from servers.billing import metrics, store
from servers.billing.store import AlertRow
from servers.db import Database

#: Digits of a document's sequence number ("INV-2026-000042").
NUMBER_DIGITS = 6
#: The notification every alert raised is pushed as.
ALERT_EVENT = "billing_alert"


def ledger(  # noqa: PLR0917 - one ledger entry's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    kind: str,
    amount: int,
    currency: str,
    invoice_id: uuid.UUID,
    source_id: str,
    at: datetime,
) -> None:
    """Record a signed movement of what the tenant owes (nothing for zero)."""
    if amount:
        store.add_ledger_entry(session, tenant, kind, amount, currency, invoice_id, source_id, at)


async def alert(  # noqa: PLR0917 - one alert's facts
    session: AsyncSession,
    tenant: uuid.UUID,
    kind: str,
    message: str,
    dedupe_key: str,
    at: datetime,
    details: dict[str, str] | None = None,
    *,
    notifications: Notifications | None,
) -> bool:
    """Raise an alert once per `dedupe_key`; True when it is new.

    A new alert is also put in `notifications` (when the platform has them) as
    event `billing_alert` for the operators, in the same transaction, with the
    facts `ListBillingAlerts` shows: `alert_id`, `alert_kind`, `message`,
    `raised_at` (RFC 3339) and `details` (amounts in minor units, as strings,
    beside their `currency`).
    """
    alert_id = uuid.uuid4()
    facts = dict(details or {})
    new = await store.insert_alert(
        session,
        {
            "id": alert_id,
            "tenant_id": tenant,
            "kind": kind,
            "message": message,
            "details": facts,
            "dedupe_key": dedupe_key,
            "raised_at": at,
        },
    )
    if not new:
        return False
    metrics.ALERTS.labels(kind).inc()
    if notifications is not None:
        notifications.notify(
            session,
            ALERT_EVENT,
            tenant,
            {
                "alert_id": str(alert_id),
                "alert_kind": kind,
                "message": message,
                "raised_at": rfc3339(at),
                "details": facts,
            },
            recipient=OPERATORS,
            at=at,
        )
    return True


async def next_number(session: AsyncSession, tenant: uuid.UUID, series: str) -> str:
    """The series' next number, taken in this transaction (the row lock serializes issuers)."""
    taken = await store.take_number(session, tenant, series)
    return f"{series}-{taken:0{NUMBER_DIGITS}d}"


async def list_alerts(
    database: Database, tenant: uuid.UUID, kind: str, page: Page
) -> tuple[list[AlertRow], str]:
    """A page of the tenant's alerts (of `kind`, if any), newest first; the next page's token."""
    async with database.tenant_session(tenant, readonly=True) as session:
        rows = await store.alerts_page(session, kind, page.after, page.size + 1)
    token = page.next_token(rows, lambda row: (row.raised_at, row.id))
    return rows[: page.size], token
