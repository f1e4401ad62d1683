"""Reading the leak alarms: the suspicious hits the cache refused, as the store keeps them.

Alarms are written by the edge layer in the background (the hit path never
waits on them); this use case reads them page by page, and works whether or
not the cache runs on this replica.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from core.pagination import Page
from servers.db import Database
from servers.edge import store
from servers.edge.store import LeakAlarmRow


async def list_leak_alarms(
    database: Database, tenant: uuid.UUID, since: datetime | None, page: Page
) -> tuple[Sequence[LeakAlarmRow], str]:
    """The tenant's alarms on `page`, newest first, and the next page's token ("" at the end)."""
    async with database.tenant_session(tenant, readonly=True) as session:
        rows = await store.leak_alarms(session, since=since, after=page.after, limit=page.size + 1)
    return rows[: page.size], page.next_token(rows, lambda row: (row.occurred_at, row.id))
