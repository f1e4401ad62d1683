"""Background jobs: run periodically, on every replica or on one at a time (under a lease)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from servers.db import Database, utc_now
from servers.db.leases import acquire_lease

logger = logging.getLogger(__name__)

#: Who this process is, as a lease holder.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

Job = Callable[[], Awaitable[Any]]


async def every(interval_s: float, job: Job, name: str) -> None:
    """Run `job` every `interval_s` seconds until cancelled; a failure is logged, not fatal.

    Cancelled while a run is under way, the run is finished first (it may hold
    a database connection or a transaction; cutting it off mid-query can leave
    the connection unclosed), then the cancellation goes on.
    """
    while True:
        run = asyncio.ensure_future(job())
        try:
            await asyncio.shield(run)
        except asyncio.CancelledError:
            if not run.done():
                await asyncio.wait([run])
            if not run.cancelled() and run.exception() is not None:
                logger.warning("background job %s failed while stopping", name)
            raise
        except Exception:
            logger.exception("background job %s failed; retrying in %.1fs", name, interval_s)
        await asyncio.sleep(interval_s)


async def every_under_lease(
    database: Database, name: str, interval_s: float, job: Job, *, lease_s: float = 15.0
) -> None:
    """Like `every`, but only while this replica holds the job's lease.

    So N replicas never run the same job at the same time, and another takes
    over within `lease_s` if this one dies.
    """

    async def leased() -> None:
        if await acquire_lease(database, name, HOLDER, timedelta(seconds=lease_s), utc_now()):
            await job()

    await every(interval_s, leased, name)
