"""Notifications through an outbox: written with the workflow's transaction, delivered later.

The workflow writes one outbox row per configured webhook in the same
transaction as the state change it reports, so a notification exists exactly
when its change does. A background job (one replica at a time) POSTs due rows as
JSON and retries failures with exponential backoff; a webhook that is down
delays its notifications and never the workflow.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import httpx

from servers.access import store
from servers.access.store import NotificationRow
from servers.db import Database

logger = logging.getLogger(__name__)

#: Attempts before a notification is given up (and left in the outbox for operators).
MAX_ATTEMPTS = 10
#: Ceiling of the backoff between attempts.
MAX_BACKOFF_S = 300.0
#: Rows delivered per run of the job.
BATCH = 100


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

    async def deliver_due(self) -> int:
        """Deliver what is due now; returns how many were delivered."""
        now = self._clock()
        async with self._database.platform_session(readonly=True) as session:
            due: Sequence[NotificationRow] = await store.notifications_due(
                session, now, max_attempts=MAX_ATTEMPTS, limit=BATCH
            )
        delivered = 0
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            for row in due:
                error = await self._post(client, row)
                changes: dict[str, object] = {"attempts": row.attempts + 1, "last_error": error}
                if error:
                    changes["next_attempt_at"] = self._clock() + backoff(row.attempts + 1)
                    logger.warning("notification %s to %s failed: %s", row.id, row.url, error)
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
