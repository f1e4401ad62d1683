"""Background jobs: run periodically, on every replica or on one at a time (under a lease).

A job that fails is retried with backoff, and its failure is logged once when it
starts, now and then while it lasts, and once when it ends (`Outage`): a
dependency that stays down (Redis, the database) must not print a line per
retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from servers.db import Database, utc_now
from servers.db.leases import acquire_lease, release_lease

logger = logging.getLogger(__name__)

#: Who this process is, as a lease holder.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

Job = Callable[[], Awaitable[Any]]

#: Longest pause between the retries of a failing job (its interval, when that is longer).
MAX_BACKOFF_S = 5.0
#: How often a failure that lasts is said again.
REMIND_S = 300.0


class Outage:
    """One thing that can fail and recover, logged at its changes rather than at every retry.

    Args:
        what: What fails, as the log lines name it ("background job edge.caps").
        level: The level its failure is logged at.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        what: str,
        *,
        level: int = logging.ERROR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.level = level
        self.failures = 0
        self._clock = clock
        self._since = self._said = 0.0

    def failed(self, error: BaseException) -> None:
        """Count a failure: the first is logged with its traceback, then one line every 5 min."""
        now = self._clock()
        self.failures += 1
        if self.failures == 1:
            self._since = self._said = now
            logger.log(self.level, "%s failed; retrying", self.what, exc_info=error)
        elif now - self._said >= REMIND_S:
            self._said = now
            logger.log(
                self.level,
                "%s still failing: %d attempts in %.0fs, the last: %s",
                self.what,
                self.failures,
                now - self._since,
                error,
            )

    def recovered(self) -> None:
        """It works (again): said once, if it had failed."""
        if self.failures:
            logger.warning(
                "%s recovered after %d failed attempts in %.0fs",
                self.what,
                self.failures,
                self._clock() - self._since,
            )
            self.failures = 0

    def pause(self, interval_s: float) -> float:
        """Seconds to wait before the next attempt: doubling while it fails, up to a cap."""
        if not self.failures:
            return interval_s
        return min(interval_s * 2.0 ** (self.failures - 1), max(interval_s, MAX_BACKOFF_S))


async def every(interval_s: float, job: Job, name: str) -> None:
    """Run `job` every `interval_s` seconds until cancelled; a failure is logged, not fatal.

    Cancelled while a run is under way, the run is finished first (it may hold
    a database connection or a transaction; cutting it off mid-query can leave
    the connection unclosed), then the cancellation goes on. Failing runs are
    retried with backoff and logged as an `Outage`.
    """
    outage = Outage(f"background job {name}")
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
        except Exception as error:  # noqa: BLE001 - any failure is retried, and said
            outage.failed(error)
        else:
            outage.recovered()
        await asyncio.sleep(outage.pause(interval_s))


async def every_under_lease(
    database: Database, name: str, interval_s: float, job: Job, *, lease_s: float = 15.0
) -> None:
    """Like `every`, but only while this replica holds the job's lease.

    So N replicas never run the same job at the same time, and another takes
    over within `lease_s` if this one dies — at once if it stops cleanly: the
    lease is given up when the job is cancelled.
    """
    held = False

    async def leased() -> None:
        nonlocal held
        held = await acquire_lease(database, name, HOLDER, timedelta(seconds=lease_s), utc_now())
        if held:
            await job()

    try:
        await every(interval_s, leased, name)
    finally:
        if held:
            with contextlib.suppress(Exception):  # a store that is gone lets it expire instead
                await release_lease(database, name, HOLDER)
