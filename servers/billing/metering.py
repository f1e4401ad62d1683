"""Other services meter their work through billing: analytics pack runs, GraphQL operations.

Counting happens in memory and is flushed as usage events every second (and
when the server stops): one event per tenant, meter and flush, with an event id
unique to this process and flush, so a retried flush never counts twice.
Before admitting work, a service asks whether the tenant's spend cap is
reached (`admit`, cached for a second); work already admitted is always
recorded, so a cap is overshot by at most the work in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from cachetools import TTLCache
from prometheus_client import Counter as MetricCounter

from core.errors import DomainError, ErrorReason, ResourceExhausted
from core.interfaces import Notifications
from servers.billing import store
from servers.billing.pricing import PRICE_BOOK, PRICE_BOOK_FILE
from servers.billing.usage import record_usage, spent
from servers.db import Database
from servers.runtime import Component, Foundation, Job, Runtime

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
METERING_FAILURES = MetricCounter(
    "billing_metering_failures_total", "Usage flushes that failed (kept and retried).", ("meter",)
)


class Metering(Component):
    """Buffers usage counts per (tenant, meter) and flushes them as usage events.

    The platform's `core.interfaces.UsageMeter`: Analytics and the GraphQL
    facade count their work through it.

    Args:
        database: The platform's store.
        clock: The platform's clock.
        admit_cache_s: How long `admit` trusts what it read about a tenant's cap.
    """

    def __init__(
        self, database: Database, clock: Callable[[], datetime], admit_cache_s: float = 1.0
    ) -> None:
        self._database = database
        self._clock = clock
        self._counts: Counter[tuple[uuid.UUID, str]] = Counter()
        self._capped: TTLCache[uuid.UUID, bool] = TTLCache(maxsize=10_000, ttl=admit_cache_s)
        self._process = uuid.uuid4().hex[:12]
        self._flushes = 0
        self._lock = asyncio.Lock()
        #: Where the cap's alerts are pushed (given when the runtime is composed).
        self._notifications: Notifications | None = None

    @classmethod
    def of(cls, foundation: Foundation) -> Metering | None:
        """The platform's meter; None when metering is turned off."""
        if not foundation.settings.metering:
            return None
        return cls(foundation.database, foundation.clock)

    def attach(self, runtime: Runtime) -> None:
        """Push the spend cap's alerts through the platform's notifications."""
        self._notifications = runtime.notifications

    def background_jobs(self) -> list[Job]:
        """The flush loop (which flushes once more when the platform stops)."""
        return [self.run]

    def count(self, tenant: uuid.UUID, meter: str, quantity: int = 1) -> None:
        """Add work to the next flush.

        Raises:
            ValueError: `meter` is not in the price book (it could never be recorded).
        """
        if meter not in PRICE_BOOK:
            raise ValueError(f"meter {meter!r} is not in the price book ({PRICE_BOOK_FILE.name})")
        self._counts[tenant, meter] += quantity

    async def admit(self, tenant: uuid.UUID) -> None:
        """Refuse new work once the tenant's spend cap for the period is reached.

        Raises:
            ResourceExhausted: The cap is reached.
        """
        capped = self._capped.get(tenant)
        if capped is None:
            capped = self._capped[tenant] = await self._cap_reached(tenant)
        if capped:
            raise ResourceExhausted(
                "the tenant's spend cap for this period is reached",
                reason=ErrorReason.ERROR_REASON_SPEND_CAP_REACHED,
            )

    async def _cap_reached(self, tenant: uuid.UUID) -> bool:
        async with self._database.tenant_session(tenant, readonly=True) as session:
            cap = await store.spend_cap_of(session, tenant)
            if cap is None or cap.cap <= 0:
                return False
            return await spent(session, self._clock()) >= cap.cap

    async def flush(self) -> int:
        """Record what was counted; what fails stays counted for the next flush."""
        async with self._lock:
            counts, self._counts = self._counts, Counter()
            self._flushes += 1
            flush = self._flushes
            recorded = 0
            for (tenant, meter), quantity in counts.items():
                event_id = f"meter:{self._process}:{flush}:{meter}"
                try:
                    await self._record(tenant, event_id, meter, quantity, enforce_cap=True)
                    recorded += 1
                except ResourceExhausted:
                    recorded += 1  # admitted work past the cap: the cap refuses what comes next
                    self._capped[tenant] = True
                    # Work admitted before the cap was reached is still billed (the one overshoot).
                    await self._record(tenant, event_id, meter, quantity, enforce_cap=False)
                except (DomainError, OSError) as error:
                    METERING_FAILURES.labels(meter).inc()
                    logger.warning("metering %s for tenant %s failed: %s", meter, tenant, error)
                    self._counts[tenant, meter] += quantity
        return recorded

    async def _record(
        self, tenant: uuid.UUID, event_id: str, meter: str, quantity: int, *, enforce_cap: bool
    ) -> None:
        """Record one flushed count as a usage event, in a transaction of its own."""
        async with self._database.tenant_session(tenant) as session:
            now = self._clock()
            await record_usage(
                session,
                tenant,
                event_id,
                meter,
                quantity,
                now,
                now,
                enforce_cap=enforce_cap,
                notifications=self._notifications,
            )

    async def run(self) -> None:
        """Flush every second until cancelled, then once more."""
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.flush()
                except Exception:
                    logger.exception("metering flush failed")
                await asyncio.sleep(max(0.0, FLUSH_INTERVAL_S - (time.monotonic() - started)))
        finally:
            await asyncio.shield(self.flush())
