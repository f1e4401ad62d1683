"""Running packs: lookups of materialized rankings, runs on the resident projection, freshness.

The use case behind EstimatePack, RunPack and GetGraphStatus; the servicer only
translates messages around it. Whole-graph packs read a page of the newest
ready revision's stored ranking (stale while a newer revision is computed);
parameterised packs run on this replica's newest snapshot in a worker, within
their budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cachetools import TTLCache

from core.errors import FailedPrecondition, InvalidArgument
from core.pagination import SEQUENCE_NUMBER, Keyset, Page
from servers.analytics import metrics
from servers.analytics.imports import Imported, import_graph, sweep_abandoned
from servers.analytics.lookups import GraphState, Lookups, graph_state
from servers.analytics.materializer import Materializer, expected_ready
from servers.analytics.packs import Estimate, PackSpec, estimate
from servers.analytics.snapshots import Snapshots
from servers.analytics.store.results import State
from servers.analytics.workers import PackWorkers
from servers.db import utc_now
from servers.jobs import every_under_lease
from servers.runtime import Job, Runtime

#: Page tokens of a ranking: (revision, position of the next entity).
RANKING = Keyset((SEQUENCE_NUMBER, SEQUENCE_NUMBER))
#: How often a run waiting for a tenant's first results looks again.
WAIT_POLL_S = 0.05
#: How long a replica reuses what it read of a tenant's graph state (revision, sizes, where
#: its results are): changes made here (an import, results ready) are seen at once, those
#: of other replicas within this long.
STATE_TTL_S = 0.5
#: Bytes of projections a restarted replica maps into its workers before calls ask.
WARM_BYTES = 512 * 1024**2
#: How long a run waits for a tenant's first results (within the call's deadline): a
#: small graph's are ready by then; a large one's call is told when to come back.
FIRST_RESULTS_WAIT_S = 5.0


@dataclass(frozen=True)
class Freshness:
    """What a result was computed on, and whether a newer revision's is on its way."""

    revision: int
    computed_at: datetime
    stale: bool
    latest_revision: int
    expected_ready_at: datetime | None
    warm_started: bool = False


@dataclass
class Answer:
    """A pack's answer, whichever way it was computed."""

    estimate: Estimate
    freshness: Freshness
    accuracy: dict[str, Any]
    elapsed_ms: float
    entities: list[dict[str, Any]] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    path_cost: float = 0.0
    modularity: float = 0.0
    communities: int = 0
    projection_bytes: int = 0
    next_page_token: str = ""


class PackRuns:
    """Packs of every tenant: materialized lookups, and runs on this process's workers."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        settings = runtime.settings
        self.workers = PackWorkers(
            settings.analytics_workers, cache_bytes=settings.analytics_projection_cache_bytes
        )
        self.snapshots = Snapshots(
            runtime.database,
            settings.var_dir / "analytics",
            runtime.tracing.tracer("conductor.analytics"),
        )
        self.materializer = Materializer(
            runtime.database,
            self.snapshots,
            threads=settings.analytics_materialize_threads,
            cache_bytes=settings.analytics_projection_cache_bytes,
        )
        self.lookups = Lookups(runtime.database, settings.analytics_results_cache_bytes)
        #: What a restarted replica maps back in at once (more comes in on first use).
        self._warm_bytes = min(settings.analytics_projection_cache_bytes, WARM_BYTES)
        self._states: TTLCache[uuid.UUID, GraphState] = TTLCache(maxsize=10_000, ttl=STATE_TTL_S)
        self._reading: dict[uuid.UUID, asyncio.Future[GraphState | None]] = {}
        self.materializer.on_ready.append(self._forget)
        #: A span per run on a worker (a no-op unless tracing is on).
        self._tracer = runtime.tracing.tracer("conductor.analytics")

    def _forget(self, tenant: uuid.UUID, revision: int = 0) -> None:
        """Read the tenant's graph state afresh next time (it changed here)."""
        self._states.pop(tenant, None)

    def background_jobs(self) -> list[Job]:
        """The pack workers, the materializer, and the sweep of abandoned imports."""

        async def run_workers() -> None:
            try:
                await self.workers.start()
                # The projections this replica kept, mapped back in before calls need them.
                await self.workers.warm(self.snapshots.recent(self._warm_bytes))
                await asyncio.Event().wait()
            finally:  # also when the platform stops while the workers still start
                await self.workers.close()

        database = self._runtime.database
        # Staged rows outlive any stream that could still be running once this old.
        abandoned = timedelta(seconds=self._runtime.settings.stream_max_duration + 3600)
        sweep = functools.partial(sweep_abandoned, database, abandoned)
        return [
            run_workers,
            *self.materializer.background_jobs(),
            functools.partial(
                every_under_lease, database, "analytics.staging_sweep", 3600.0, sweep
            ),
        ]

    async def import_graph(self, tenant: uuid.UUID, batches: AsyncIterator[Any]) -> Imported:
        """Import a graph; its whole-graph packs are computed in the background."""
        imported = await import_graph(self._runtime.database, tenant, batches)
        self._forget(tenant)
        self.materializer.start(tenant, imported.revision)
        return imported

    async def state(self, tenant: uuid.UUID, *, cached: bool = True) -> GraphState:
        """The tenant's graph state (as read in the last STATE_TTL_S, if `cached`).

        Raises:
            FailedPrecondition: The tenant has no graph yet.
        """
        found = self._states.get(tenant) if cached else None
        if found is None:
            reading = self._reading.get(tenant)
            if reading is None:  # one read per tenant at a time, whoever asks meanwhile
                reading = asyncio.ensure_future(graph_state(self._runtime.database, tenant))
                self._reading[tenant] = reading
                reading.add_done_callback(lambda _: self._reading.pop(tenant, None))
            found = await asyncio.shield(reading)
            if found is None:
                raise FailedPrecondition("this tenant has no graph yet: ImportGraph first")
            self._states[tenant] = found
        return found

    async def status(self, tenant: uuid.UUID) -> GraphState | None:
        """The tenant's graph state, or None before its first import."""
        return await graph_state(self._runtime.database, tenant)

    def expected_ready_at(self, state: GraphState) -> datetime | None:
        """When the newest revision's results should be ready (None once they are)."""
        latest = state.latest
        if latest is None or not state.stale:
            return None
        return expected_ready(
            latest.state,
            latest.expected_ready_at,
            latest.requested_at,
            self.materializer.predicted_s(state.relationships),
        )

    async def price(
        self, tenant: uuid.UUID, spec: PackSpec, params: dict[str, Any], budget_ms: float
    ) -> tuple[Estimate, int]:
        """What `spec` would cost on the tenant's current graph, and the revision priced on.

        Raises:
            FailedPrecondition: The tenant has no graph yet.
        """
        state = await self.state(tenant)
        speed = 0.0 if spec.materialized else await self.workers.speed()
        found = estimate(spec, params, state.entities, state.relationships, speed, budget_ms)
        revision = state.ready.revision if spec.materialized and state.ready else state.revision
        return found, revision

    async def run(
        self,
        tenant: uuid.UUID,
        spec: PackSpec,
        params: dict[str, Any],
        page: tuple[int, str],
        time_remaining: Callable[[], float | None],
    ) -> Answer:
        """Answer `spec`: a page of its stored ranking, or a run within its budget.

        `page` is the request's (page_size, page_token); `time_remaining` reads the
        call's remaining seconds (None: no deadline).

        Raises:
            ResourceExhausted: The tenant's spend cap is reached.
            FailedPrecondition: No graph yet, no results yet, or over budget.
        """
        started = time.perf_counter()
        metering = self._runtime.metering
        if metering is not None:
            await metering.admit(tenant)  # RESOURCE_EXHAUSTED once the spend cap is reached
        state = await self.state(tenant)
        if spec.materialized:
            answer = await self._lookup(tenant, spec, params, page, state, time_remaining)
        elif any(page):
            raise InvalidArgument(
                f"{spec.id} runs per call and is not paged: only whole-graph packs are",
                field="page",
            )
        else:
            answer = await self._compute(tenant, spec, params, state, time_remaining)
        if answer.freshness.stale:
            metrics.STALE.labels(spec.id).inc()
        if metering is not None:
            metering.count(tenant, "analytics.pack_run")
        metrics.PACK_SECONDS.labels(spec.id).observe(time.perf_counter() - started)
        return answer

    def _budget_s(self, spec: PackSpec, time_remaining: Callable[[], float | None]) -> float:
        remaining_s = time_remaining()
        limit_s = spec.timeout_ms / 1000
        return limit_s if remaining_s is None else min(limit_s, remaining_s)

    async def _ready(self, tenant: uuid.UUID, state: GraphState, budget_s: float) -> GraphState:
        """The state once some revision's results are ready (up to `budget_s` for the first).

        Raises:
            FailedPrecondition: None are ready in time (when they are expected), or the
                computation failed.
        """
        give_up = time.monotonic() + budget_s
        while state.ready is None:
            latest = state.latest
            if latest is not None and latest.state == State.FAILED:
                raise FailedPrecondition(
                    f"computing the whole-graph results of revision {latest.revision} failed"
                    f" ({latest.detail}); it is retried, and a new import starts afresh",
                    metadata={"revision": str(latest.revision)},
                )
            if time.monotonic() + WAIT_POLL_S > give_up:
                expected = self.expected_ready_at(state)
                when = expected.isoformat(timespec="seconds") if expected else "soon"
                raise FailedPrecondition(
                    f"the whole-graph results of revision {state.revision} are being computed;"
                    f" expected by {when} (GetGraphStatus follows them)",
                    metadata={"revision": str(state.revision), "expected_ready_at": when},
                )
            await asyncio.sleep(WAIT_POLL_S)
            state = await self.state(tenant, cached=False)
        return state

    async def _lookup(  # noqa: PLR0917 - the run's facts, passed on from `run`
        self,
        tenant: uuid.UUID,
        spec: PackSpec,
        params: dict[str, Any],
        page: tuple[int, str],
        state: GraphState,
        time_remaining: Callable[[], float | None],
    ) -> Answer:
        started = time.perf_counter()
        page_size, page_token = page
        paging = Page.from_request(page_size, page_token, filters={"pack": spec.id}, keyset=RANKING)
        if not (page_size or page_token):  # no paging asked for: the top k, and where it goes on
            paging = dataclasses.replace(paging, size=int(params["top_k"]))
        size = paging.size
        if paging.after is not None:
            revision, offset = paging.after
        else:
            remaining_s = time_remaining()
            # Given up early enough that the answer saying when reaches the caller in time.
            wait_s = (
                FIRST_RESULTS_WAIT_S
                if remaining_s is None
                else min(FIRST_RESULTS_WAIT_S, remaining_s * 0.8 - 0.05)
            )
            state = await self._ready(tenant, state, wait_s)
            assert state.ready is not None
            revision, offset = state.ready.revision, 0
        loaded = await self.lookups.ranking(tenant, revision, spec.id)
        if loaded is None:
            newest = state.ready.revision if state.ready else 0
            raise FailedPrecondition(
                f"this graph has no results of revision {revision} (no longer kept, or not"
                f" ready: the newest ready is {newest}); ask for the first page again",
                metadata={"revision": str(revision), "ready_revision": str(newest)},
            )
        ranked = loaded.ranked
        summary = loaded.summary
        found = estimate(spec, {"top_k": size}, state.entities, state.relationships, 0.0, 1e9)
        kept = range(offset, min(len(ranked), offset + size + 1))
        return Answer(
            estimate=found,
            freshness=Freshness(
                revision=revision,
                computed_at=loaded.computed_at,
                stale=revision < state.revision,
                latest_revision=state.revision,
                expected_ready_at=self.expected_ready_at(state)
                if revision < state.revision
                else None,
                warm_started=bool(summary.get("warm_started", False)),
            ),
            accuracy=summary,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            entities=[dict(entity) for entity in ranked.page(offset, size)],
            modularity=float(summary.get("modularity", 0.0)),
            communities=int(summary.get("communities", 0)),
            next_page_token=paging.next_token(kept, lambda position: (revision, position + 1)),
        )

    async def _compute(
        self,
        tenant: uuid.UUID,
        spec: PackSpec,
        params: dict[str, Any],
        state: GraphState,
        time_remaining: Callable[[], float | None],
    ) -> Answer:
        """Run a parameterised pack on this replica's newest snapshot.

        Stale while the newest revision's snapshot is being built here.
        """
        await self.workers.speed()  # only waits while the workers first start
        local = self.snapshots.newest(tenant, state.revision)
        if local is None:  # none here yet: build it now (once per replica and revision)
            path, revision = await self.snapshots.ensure(tenant, state.revision)
        else:
            revision, path = local, self.snapshots.path(tenant, local)
            if local < state.revision:
                self.snapshots.prebuild(tenant, state.revision)
        budget_s = self._budget_s(spec, time_remaining)
        speed = await self.workers.speed()
        found = estimate(spec, params, state.entities, state.relationships, speed, budget_s * 1000)
        if not found.within_budget:
            metrics.REFUSED.labels(spec.id).inc()
            raise FailedPrecondition(
                f"{spec.id} is estimated at {found.expected_ms:.0f} ms, over its "
                f"{budget_s * 1000:.0f} ms budget",
                metadata={
                    "expected_ms": f"{found.expected_ms:.0f}",
                    "budget_ms": f"{budget_s * 1000:.0f}",
                },
            )
        attributes: dict[str, str | int] = {
            "analytics.pack": spec.id,
            "analytics.revision": revision,
            "analytics.entities": state.entities,
            "analytics.relationships": state.relationships,
        }
        with self._tracer.start_as_current_span(f"run {spec.id}", attributes=attributes):
            result = await self.workers.run(path, spec.id, params, budget_s)
        metrics.PROJECTION_BYTES.set(result["projection_bytes"])
        stale = revision < state.revision
        return Answer(
            estimate=found,
            freshness=Freshness(
                revision=revision,
                computed_at=utc_now(),
                stale=stale,
                latest_revision=state.revision,
                expected_ready_at=self.expected_ready_at(state) if stale else None,
            ),
            accuracy=dict(result.get("accuracy", {})),
            elapsed_ms=result["elapsed_ms"],
            entities=[dict(entity) for entity in result.get("entities", [])],
            path=list(result.get("path", [])),
            path_cost=float(result.get("path_cost", 0.0)),
            projection_bytes=result["projection_bytes"],
        )
