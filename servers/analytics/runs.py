"""Running packs: the graph's size and snapshot, pricing against the budget, metering, workers.

The use case behind EstimatePack and RunPack (and the snapshot prebuilt after
an import); the servicer only translates messages around it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from core.errors import FailedPrecondition
from servers.analytics import graph, metrics, store
from servers.analytics.imports import Imported, import_graph, sweep_abandoned
from servers.analytics.packs import Estimate, PackSpec, estimate
from servers.analytics.workers import PackWorkers
from servers.jobs import every_under_lease
from servers.runtime import Job, Runtime

if TYPE_CHECKING:  # the algorithms load in the workers only
    from servers.analytics.compute import PackResult

logger = logging.getLogger(__name__)
#: Structured events operators follow (each names the request that caused it).
_events = structlog.get_logger("conductor.analytics")


@dataclass(frozen=True)
class Priced:
    """A pack priced on the tenant's current graph."""

    estimate: Estimate
    revision: int


@dataclass(frozen=True)
class Ran:
    """A pack's run: what the worker answered, and how it was priced."""

    result: PackResult
    priced: Priced


class PackRuns:
    """Packs of every tenant, on this process's workers and snapshots."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.workers = PackWorkers(runtime.settings.analytics_workers)
        self._snapshots = runtime.settings.var_dir / "analytics"
        self._building: dict[uuid.UUID, asyncio.Lock] = {}
        self._prebuilding: set[asyncio.Task[None]] = set()
        #: A span per run on a worker (a no-op unless tracing is on).
        self._tracer = runtime.tracing.tracer("conductor.analytics")

    def background_jobs(self) -> list[Job]:
        """The pack workers (stopped with the platform); the sweep of abandoned imports."""

        async def run_workers() -> None:
            try:
                await self.workers.start()
                await asyncio.Event().wait()
            finally:  # also when the platform stops while the workers still start
                await self.workers.close()

        database = self._runtime.database
        # Staged rows outlive any stream that could still be running once this old.
        abandoned = timedelta(seconds=self._runtime.settings.stream_max_duration + 3600)
        sweep = functools.partial(sweep_abandoned, database, abandoned)
        return [
            run_workers,
            functools.partial(
                every_under_lease, database, "analytics.staging_sweep", 3600.0, sweep
            ),
        ]

    async def import_graph(self, tenant: uuid.UUID, batches: AsyncIterator[Any]) -> Imported:
        """Import a graph, then build its snapshot in the background."""
        imported = await import_graph(self._runtime.database, tenant, batches)
        self._prebuild(tenant, imported.revision)
        return imported

    async def price(
        self, tenant: uuid.UUID, spec: PackSpec, params: dict[str, Any], budget_ms: float
    ) -> Priced:
        """What `spec` would cost on the tenant's current graph, against `budget_ms`.

        Raises:
            FailedPrecondition: The tenant has no graph yet.
        """
        revision, nodes, edges = await self._graph(tenant)
        return Priced(await self._estimate(spec, params, nodes, edges, budget_ms), revision)

    async def _estimate(
        self, spec: PackSpec, params: dict[str, Any], nodes: int, edges: int, budget_ms: float
    ) -> Estimate:
        speed = await self.workers.speed()
        return estimate(spec, params, nodes, edges, speed, budget_ms)

    async def run(
        self,
        tenant: uuid.UUID,
        spec: PackSpec,
        params: dict[str, Any],
        time_remaining: Callable[[], float | None],
    ) -> Ran:
        """Run `spec` within its timeout and the call's remaining time, sampled if it must be.

        `time_remaining` reads the call's remaining seconds (None: no deadline) once the
        workers are ready, so that waiting for them counts against the call.

        Raises:
            ResourceExhausted: The tenant's spend cap is reached.
            FailedPrecondition: No graph yet, or over budget without a sampler.
        """
        started = time.perf_counter()
        metering = self._runtime.metering
        if metering is not None:
            await metering.admit(tenant)  # RESOURCE_EXHAUSTED once the spend cap is reached
        revision, nodes, edges = await self._graph(tenant)
        await self.workers.speed()  # only waits while the workers first start
        remaining_s = time_remaining()
        deadline_s = (
            spec.timeout_ms / 1000
            if remaining_s is None
            else min(spec.timeout_ms / 1000, remaining_s)
        )
        found = await self._estimate(spec, params, nodes, edges, deadline_s * 1000)
        priced = Priced(found, revision)
        if not found.within_budget:
            metrics.REFUSED.labels(spec.id).inc()
            raise FailedPrecondition(
                f"{spec.id} is estimated at {found.expected_ms:.0f} ms, over its "
                f"{deadline_s * 1000:.0f} ms budget"
                + ("" if spec.sample else " and it has no sampler"),
                metadata={
                    "expected_ms": f"{found.expected_ms:.0f}",
                    "budget_ms": f"{deadline_s * 1000:.0f}",
                },
            )
        snapshot = await self._snapshot(tenant, priced.revision)
        attributes: dict[str, str | int] = {
            "analytics.pack": spec.id,
            "analytics.revision": priced.revision,
            "analytics.entities": nodes,
            "analytics.relationships": edges,
            "analytics.sample": found.sample or "none",
        }
        with self._tracer.start_as_current_span(f"run {spec.id}", attributes=attributes):
            result = await self.workers.run(snapshot, spec.id, params, found.sample, deadline_s)
        if found.sampling_applies:
            metrics.SAMPLED.labels(spec.id).inc()
        if metering is not None:
            metering.count(tenant, "analytics.pack_run")
        metrics.PACK_SECONDS.labels(spec.id).observe(time.perf_counter() - started)
        metrics.PROJECTION_BYTES.set(result["projection_bytes"])
        return Ran(result, priced)

    async def _graph(self, tenant: uuid.UUID) -> tuple[int, int, int]:
        """The tenant's (revision, entities, relationships)."""
        async with self._runtime.database.tenant_session(tenant, readonly=True) as session:
            size = await store.graph_size(session, tenant)
        if size is None:
            raise FailedPrecondition("this tenant has no graph yet: ImportGraph first")
        return size

    async def _snapshot(self, tenant: uuid.UUID, revision: int) -> Path:
        """The revision's snapshot file, built from the store the first time it is needed."""
        path = graph.snapshot_path(self._snapshots, tenant, revision)
        lock = self._building.setdefault(tenant, asyncio.Lock())
        async with lock:
            if not path.exists():
                with self._tracer.start_as_current_span("build snapshot"):
                    started = time.perf_counter()
                    snapshot = await graph.build_snapshot(self._runtime.database, tenant)
                    path = graph.snapshot_path(self._snapshots, tenant, snapshot.revision)
                    await asyncio.to_thread(graph.save, snapshot, path)
                    graph.prune(self._snapshots, tenant, snapshot.revision)
                # Inside the call that needed it, or the import that started it (whose
                # request id this line carries, though that call has long answered).
                _events.info(
                    "analytics snapshot built",
                    tenant=str(tenant),
                    revision=snapshot.revision,
                    entities=snapshot.nodes,
                    relationships=snapshot.edges,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
        return path

    def _prebuild(self, tenant: uuid.UUID, revision: int) -> None:
        """Build a new revision's snapshot in the background, before its first run needs it."""

        async def build() -> None:
            try:
                await self._snapshot(tenant, revision)
            except Exception:
                logger.exception(
                    "building the snapshot of tenant %s, revision %s", tenant, revision
                )

        task = asyncio.create_task(build())
        self._prebuilding.add(task)
        task.add_done_callback(self._prebuilding.discard)
