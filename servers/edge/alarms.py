"""Recording and reading the leak alarms: the suspicious hits the cache refused.

The edge layer records alarms in the background (the hit path never waits on
them), each in one transaction with its notification (event `edge_leak_alarm`,
for the operators), so an alarm is pushed to the platform's webhooks exactly
when it is stored. Reading works page by page, whether or not the cache runs on
this replica.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from core.interfaces import OPERATORS, Notifications
from core.pagination import Page
from core.times import rfc3339
from servers.db import Database
from servers.edge import store
from servers.edge.store import LeakAlarmRow

#: The notification every leak alarm is pushed as.
ALARM_EVENT = "edge_leak_alarm"


async def record_leak_alarm(  # noqa: PLR0917 - one alarm's facts
    database: Database,
    notifications: Notifications | None,
    tenant: uuid.UUID,
    operation: str,
    reason: str,
    digest: str,
    now: datetime,
) -> LeakAlarmRow:
    """Store an alarm of the tenant's and, given `notifications`, push it in the same transaction.

    The notification carries what `ListLeakAlarms` shows: `alarm_id`,
    `operation_id`, `reason`, `cache_key_hash` and `occurred_at` (RFC 3339);
    never the entry's contents nor the caller's token.
    """
    async with database.tenant_session(tenant) as session:
        row = store.add_leak_alarm(
            session, tenant, operation=operation, reason=reason, digest=digest, now=now
        )
        if notifications is not None:
            notifications.notify(
                session,
                ALARM_EVENT,
                tenant,
                {
                    "alarm_id": str(row.id),
                    "operation_id": row.operation_id,
                    "reason": row.reason,
                    "cache_key_hash": row.cache_key_hash,
                    "occurred_at": rfc3339(now),
                },
                recipient=OPERATORS,
                at=now,
            )
    return row


async def list_leak_alarms(
    database: Database, tenant: uuid.UUID, since: datetime | None, page: Page
) -> tuple[Sequence[LeakAlarmRow], str]:
    """The tenant's alarms on `page`, newest first, and the next page's token ("" at the end)."""
    async with database.tenant_session(tenant, readonly=True) as session:
        rows = await store.leak_alarms(session, since=since, after=page.after, limit=page.size + 1)
    return rows[: page.size], page.next_token(rows, lambda row: (row.occurred_at, row.id))
