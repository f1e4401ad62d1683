"""Notifications through an outbox: written with the writer's transaction, delivered later.

The outbox is the platform's: Access's workflow writes to it, and so do other
services through `core.interfaces.Notifications` (Billing's alerts, Edge's leak
alarms). Each notification is one outbox row per configured webhook, written in
the same transaction as the change it reports, so a notification exists exactly
when its change does. A background job (one replica at a time, on every replica
whichever services it serves) POSTs due rows as JSON with an `idempotency-key`
header (the row's id, also the body's `id`), and retries failures with
exponential backoff: delivery is at least once, and a webhook that is down delays
its notifications and never the work that raised them.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from servers.access import store
from servers.access.store import NotificationRow
from servers.db import Database
from servers.jobs import every_under_lease
from servers.logs import url_origin

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

#: Attempts before a notification is given up (and left in the outbox for operators).
MAX_ATTEMPTS = 10
#: Ceiling of the backoff between attempts.
MAX_BACKOFF_S = 300.0
#: Rows delivered per run of the job.
BATCH = 100
#: Seconds between two runs of the job.
DELIVERY_INTERVAL_S = 1.0
#: Keys every delivered body carries, which a payload may not name.
ENVELOPE = frozenset({"id", "recipient", "kind", "tenant_id"})
#: Longest event name (the outbox's `kind` column).
MAX_EVENT_LENGTH = 32


class Outbox:
    """Puts notifications into the writer's transaction, one row per configured webhook.

    The platform's `core.interfaces.Notifications` (through `AccessComponent`).

    Args:
        webhook_urls: Where notifications go; none: nothing is written.
    """

    def __init__(self, webhook_urls: Sequence[str]) -> None:
        self._urls = tuple(webhook_urls)

    def notify(
        self,
        session: AsyncSession,
        event: str,
        tenant: uuid.UUID,
        payload: Mapping[str, Any],
        *,
        recipient: str,
        at: datetime,
    ) -> None:
        """Put a notification of `event` in `session`'s transaction, due at `at`.

        Delivered as `{"id", "recipient", "kind": event, "tenant_id", **payload}`.

        Raises:
            ValueError: `event` is too long, or `payload` names a key of the envelope.
        """
        if len(event) > MAX_EVENT_LENGTH:
            raise ValueError(f"event {event!r} is longer than {MAX_EVENT_LENGTH} characters")
        clashing = ENVELOPE & payload.keys()
        if clashing:
            raise ValueError(f"a payload may not name {sorted(clashing)}: the envelope's keys")
        body = {"kind": event, "tenant_id": str(tenant), **payload}
        store.add_notifications(
            session,
            (
                NotificationRow(
                    tenant_id=tenant,
                    kind=event,
                    recipient=recipient,
                    url=url,
                    payload=dict(body),
                    created_at=at,
                    next_attempt_at=at,
                )
                for url in self._urls
            ),
        )


def backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after `attempts` failures: 2, 4, 8, ... s, ±10 %."""
    base = min(2.0**attempts, MAX_BACKOFF_S)
    return timedelta(seconds=base * random.uniform(0.9, 1.1))  # noqa: S311 - jitter, not crypto


class WebhookDispatcher:
    """Delivers due outbox rows to their webhooks.

    Args:
        database: The store.
        clock: The current time (aware UTC).
        timeout_s: Per delivery.
    """

    def __init__(
        self, database: Database, clock: Callable[[], datetime], *, timeout_s: float = 5.0
    ) -> None:
        self._database = database
        self._clock = clock
        self._timeout_s = timeout_s

    async def run(self) -> None:
        """Deliver what is due every second, on one replica at a time (a lease), until cancelled."""
        await every_under_lease(
            self._database, "access.notifications", DELIVERY_INTERVAL_S, self.deliver_due
        )

    async def deliver_due(self) -> int:
        """Deliver what is due now; returns how many were delivered."""
        now = self._clock()
        async with self._database.platform_session(readonly=True) as session:
            due: Sequence[NotificationRow] = await store.notifications_due(
                session, now, max_attempts=MAX_ATTEMPTS, limit=BATCH
            )
        if not due:
            return 0  # no client to build (its TLS context costs the loop milliseconds)
        delivered = 0
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            for row in due:
                error = await self._post(client, row)
                changes: dict[str, object] = {"attempts": row.attempts + 1, "last_error": error}
                if error:
                    changes["next_attempt_at"] = self._clock() + backoff(row.attempts + 1)
                    logger.warning(
                        "notification %s to %s failed: %s", row.id, url_origin(row.url), error
                    )
                else:
                    changes["delivered_at"] = self._clock()
                    delivered += 1
                async with self._database.platform_session() as session:
                    await store.update_notification(session, row.id, changes)
        return delivered

    async def _post(self, client: httpx.AsyncClient, row: NotificationRow) -> str:
        body = {"id": str(row.id), "recipient": row.recipient, **row.payload}
        try:
            response = await client.post(
                row.url, json=body, headers={"idempotency-key": str(row.id)}
            )
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"[:500]
        if response.is_success:
            return ""
        return f"HTTP {response.status_code}"
