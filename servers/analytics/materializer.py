"""The background job that computes each new graph revision's whole-graph packs.

Every replica polls for tenants whose newest revision still needs its results
(an import records that in its own transaction) and is woken at once by an
import it served. A tenant is materialized under its lease, renewed while the
work lasts, so one replica does it; if that replica dies, another takes over
when the lease runs out. The work: the revision's snapshot (read from the
store, kept on disk), then in a worker process degree, PageRank (warm-started
from the previous revision's vector after a small import), Leiden communities
and betweenness; the rankings are stored with the revision in one transaction
that also marks it ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from servers.analytics import metrics, store
from servers.analytics.rankings import Materialized, Ranked
from servers.analytics.snapshots import Snapshots
from servers.analytics.store import results
from servers.analytics.store.results import State
from servers.analytics.workers import PackWorkers
from servers.db import Database, utc_now
from servers.db.leases import acquire_lease, release_lease
from servers.jobs import HOLDER, Outage
from servers.runtime import Job

if TYPE_CHECKING:  # the server never loads the algorithms: its workers do
    import numpy as np


_events = structlog.get_logger("conductor.analytics")

#: Seconds between polls for revisions to materialize (an import here starts its own at once).
POLL_S = 1.0
#: A tenant's materialization lease, renewed every third of it while the work lasts.
LEASE_S = 30.0
#: Attempts at a revision before it stays failed (until the next import).
MAX_ATTEMPTS = 3
#: Imports changing at most this share of the relationships warm-start PageRank.
WARM_START_SHARE = 0.01
#: First guess of the seconds a materialization takes per relationship (then learnt).
SECONDS_PER_RELATIONSHIP = 1e-5
#: ... plus this much whatever the size.
BASE_SECONDS = 0.5
PAGERANK = "analytics.pagerankTop:v1"


class Materializer:
    """Computes and stores whole-graph results, one tenant at a time, on this replica.

    Args:
        database: The store.
        snapshots: This replica's snapshots.
        threads: Threads the algorithms may use.
        cache_bytes: Bytes of projections the worker keeps mapped.
    """

    def __init__(
        self, database: Database, snapshots: Snapshots, *, threads: int, cache_bytes: int
    ) -> None:
        self._database = database
        self._snapshots = snapshots
        self._threads = threads
        self.workers = PackWorkers(1, cache_bytes=cache_bytes)
        #: Tenants this process is materializing (one at a time each).
        self._running: set[uuid.UUID] = set()
        self._started: set[asyncio.Task[bool]] = set()
        self._tracer = snapshots.tracer
        self._seconds_per_relationship = SECONDS_PER_RELATIONSHIP
        #: Called with each tenant whose new revision became ready here.
        self.on_ready: list[Callable[[uuid.UUID, int], None]] = []

    def predicted_s(self, relationships: int) -> float:
        """How long a revision of so many relationships should take, as learnt here."""
        return BASE_SECONDS + self._seconds_per_relationship * relationships

    def start(self, tenant: uuid.UUID, revision: int) -> None:
        """Materialize a revision an import on this replica just committed, now.

        The task keeps the import's context: its log lines carry the import's request
        id, its spans belong to the import's trace.
        """
        task = asyncio.create_task(self.materialize(tenant, revision))
        self._started.add(task)
        task.add_done_callback(self._started.discard)

    def background_jobs(self) -> list[Job]:
        """Its worker process, and the loop that finds and does the work."""

        async def run_worker() -> None:
            try:
                await self.workers.start()
                await asyncio.Event().wait()
            finally:  # the materializations imports started stop first, then the worker
                for task in self._started:
                    task.cancel()
                await asyncio.gather(*self._started, return_exceptions=True)
                await self.workers.close()

        return [run_worker, self._run]

    async def _run(self) -> None:
        outage = Outage("background job analytics.materialize")
        while True:
            try:
                await self.sweep()
            except Exception as error:  # noqa: BLE001 - retried, and said once
                outage.failed(error)
            else:
                outage.recovered()
            await asyncio.sleep(outage.pause(POLL_S))

    async def sweep(self) -> int:
        """Materialize each tenant's newest revision that needs it; how many this replica did.

        A tenant whose lease another replica holds is left to that replica.
        """
        async with self._database.platform_session() as session:
            wanted = await results.wanted(session, MAX_ATTEMPTS)
        done = 0
        for tenant, revision in wanted:
            done += await self.materialize(tenant, revision)
        return done

    async def materialize(self, tenant: uuid.UUID, revision: int) -> bool:
        """Materialize `tenant` at `revision` (or newer) if this replica gets its lease."""
        if tenant in self._running:  # the lease is this process's already: not twice
            return False
        self._running.add(tenant)
        try:
            return await self._leased(tenant, revision)
        finally:
            self._running.discard(tenant)

    async def _leased(self, tenant: uuid.UUID, revision: int) -> bool:
        lease = f"analytics.materialize:{tenant}"
        ttl = timedelta(seconds=LEASE_S)
        if not await acquire_lease(self._database, lease, HOLDER, ttl, utc_now()):
            return False
        lost = asyncio.Event()

        async def renew() -> None:
            while True:
                await asyncio.sleep(LEASE_S / 3)
                if not await acquire_lease(self._database, lease, HOLDER, ttl, utc_now()):
                    lost.set()
                    return

        renewing = asyncio.create_task(renew())
        try:
            with self._tracer.start_as_current_span(
                "materialize", attributes={"analytics.revision": revision}
            ):
                return await self._materialize(tenant, revision, lost)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewing
            with contextlib.suppress(Exception):
                await release_lease(self._database, lease, HOLDER)

    async def _start(self, tenant: uuid.UUID, revision: int) -> tuple[int, int] | None:
        """Mark `revision` running; (relationships, relationships imported) or None if done."""
        async with self._database.tenant_session(tenant) as session:
            row = await results.materialization(session, revision)
            if row is None or row.state == State.READY:
                return None
            now = utc_now()
            await results.supersede(session, revision, now)
            size = await store.graph_size(session, tenant)
            relationships = size[2] if size else 0
            row.state = State.RUNNING
            row.started_at = now
            row.attempts += 1
            row.expected_ready_at = now + timedelta(seconds=self.predicted_s(relationships))
            return relationships, row.relationships_imported

    async def _materialize(self, tenant: uuid.UUID, revision: int, lost: asyncio.Event) -> bool:
        started = time.perf_counter()
        begun = await self._start(tenant, revision)
        if begun is None:
            return False
        try:
            path, built = await self._snapshots.ensure(tenant, revision)
            if built > revision:  # an import landed meanwhile: that revision it is
                revision = built
                begun = await self._start(tenant, revision)
                if begun is None:
                    return False
            previous = await self._previous_pagerank(tenant, revision, begun)
            done = await self.workers.materialize(path, previous, revision, self._threads)
            if lost.is_set():
                _events.warning("analytics materialization lost its lease", tenant=str(tenant))
                return False
            await self._finish(tenant, revision, done, warm_started=previous is not None)
        except Exception as error:  # noqa: BLE001 - recorded on the revision, retried
            if not self.workers.closed:  # a stop is no failure: the next start goes on
                await self._failed(tenant, revision, error)
            return False
        elapsed = time.perf_counter() - started
        relationships = begun[0]
        if relationships > 10_000:  # small graphs say nothing about the per-edge cost
            measured = max(elapsed - BASE_SECONDS, 0.0) / relationships
            self._seconds_per_relationship = 0.5 * self._seconds_per_relationship + 0.5 * measured
        metrics.MATERIALIZE_SECONDS.observe(elapsed)
        _events.info(
            "analytics results ready",
            tenant=str(tenant),
            revision=revision,
            relationships=relationships,
            warm_started=previous is not None,
            duration_ms=round(elapsed * 1000, 3),
        )
        for listener in self.on_ready:
            listener(tenant, revision)
        return True

    async def _previous_pagerank(
        self, tenant: uuid.UUID, revision: int, begun: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The previous ready revision's PageRank, if few relationships changed since."""
        relationships, imported = begun
        async with self._database.tenant_session(tenant, readonly=True) as session:
            ready = (await results.status(session)).ready
            if ready is None or ready.revision >= revision:
                return None
            changed = imported - ready.relationships_imported
            if changed > WARM_START_SHARE * relationships:
                return None
            stored = await results.result(session, ready.revision, PAGERANK)
        if stored is None:
            return None
        ranking = Ranked.decode(stored.payload)
        return ranking.ids, ranking.scores

    async def _finish(
        self, tenant: uuid.UUID, revision: int, done: list[Materialized], *, warm_started: bool
    ) -> None:
        """Store the rankings and mark the revision ready, in one transaction."""
        async with self._database.tenant_session(tenant) as session:
            row = await results.materialization(session, revision)
            if row is None or row.state == State.READY:
                return
            previous = (await results.status(session)).ready
            now = utc_now()
            await results.store_results(
                session,
                revision,
                {item.pack_id: (item.payload, item.summary) for item in done},
                now,
            )
            row.state = State.READY
            row.finished_at = now
            row.detail = ""
            row.warm_started = warm_started
            # The previous ready revision stays (stale reads, pages in progress); older go.
            await results.prune(session, previous.revision if previous else revision)

    async def _failed(self, tenant: uuid.UUID, revision: int, error: BaseException) -> None:
        with contextlib.suppress(Exception):
            async with self._database.tenant_session(tenant) as session:
                row = await results.materialization(session, revision)
                if row is not None and row.state != State.READY:
                    row.state = State.FAILED
                    row.finished_at = utc_now()
                    row.detail = f"{type(error).__name__}: {error}"[:1000]
        _events.warning(
            "analytics materialization failed",
            tenant=str(tenant),
            revision=revision,
            error=f"{type(error).__name__}: {error}",
        )


def expected_ready(
    state: State, expected_ready_at: datetime | None, requested_at: datetime, predicted_s: float
) -> datetime | None:
    """When a revision's results should be ready.

    As the replica computing them said, or, while they wait for one, their request
    time plus how long such a graph takes (never in the past).
    """
    if state == State.READY:
        return None
    if expected_ready_at is not None and state == State.RUNNING:
        return expected_ready_at
    return max(requested_at + timedelta(seconds=predicted_s), utc_now())
