"""The AnalyticsService servicer: graph import and persisted packs with cost hints and deadlines."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from intelgraph.analytics.v1 import analytics_service_pb2 as pb
from intelgraph.analytics.v1 import analytics_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageResponse

from core.errors import FailedPrecondition
from interceptors import current_principal
from servers.analytics import graph, metrics
from servers.analytics.imports import import_graph, sweep_abandoned
from servers.analytics.packs import PACKS, Estimate, PackSpec, bind, estimate, pack, sampler
from servers.analytics.store import GraphRevisionRow
from servers.analytics.workers import PackWorkers
from servers.jobs import every_under_lease
from servers.runtime import PlatformServicer, Runtime, ServiceDefinition

logger = logging.getLogger(__name__)

_PARAMETER_TYPES = {"integer": pb.PARAMETER_TYPE_INTEGER, "entity_id": pb.PARAMETER_TYPE_ENTITY_ID}


def _spec_message(spec: PackSpec) -> pb.PackSpec:
    return pb.PackSpec(
        id=spec.id,
        abac=list(spec.abac),
        timeout_ms=spec.timeout_ms,
        sample=spec.sample,
        description=spec.description,
        parameters=[
            pb.PackParameter(
                name=parameter.name,
                type=_PARAMETER_TYPES[parameter.type],
                description=parameter.description,
                minimum=parameter.minimum,
                maximum=parameter.maximum,
                default_value=parameter.default,
                required=parameter.required,
            )
            for parameter in spec.parameters
        ],
    )


def _given(parameters: pb.PackParameters) -> dict[str, Any]:
    given: dict[str, Any] = {"source_id": parameters.source_id, "target_id": parameters.target_id}
    for name in ("top_k", "max_hops"):
        if parameters.HasField(name):
            given[name] = getattr(parameters, name)
    return given


def _estimate_message(found: Estimate, revision: int) -> pb.CostEstimate:
    return pb.CostEstimate(
        expected_ms=found.expected_ms,
        memory_bytes=found.memory_bytes,
        nodes_touched=found.nodes_touched,
        edges_touched=found.edges_touched,
        sampling_applies=found.sampling_applies,
        within_budget=found.within_budget,
        graph_revision=revision,
        sampler=found.sample,
    )


class AnalyticsService(PlatformServicer, analytics_service_pb2_grpc.AnalyticsServiceServicer):
    """Persisted graph analytics packs with cost hints, sampling and deadlines."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.workers = PackWorkers(runtime.settings.analytics_workers)
        self._snapshots = runtime.settings.var_dir / "analytics"
        self._building: dict[uuid.UUID, asyncio.Lock] = {}
        self._prebuilding: set[asyncio.Task[None]] = set()

    def background_jobs(self) -> list[Callable[[], Coroutine[Any, Any, Any]]]:
        """The pack workers (stopped with the platform); the sweep of abandoned imports."""

        async def run_workers() -> None:
            try:
                await self.workers.start()
                await asyncio.Event().wait()
            finally:  # also when the platform stops while the workers still start
                await self.workers.close()

        # Staged rows outlive any stream that could still be running once this old.
        abandoned = timedelta(seconds=self.runtime.settings.stream_max_duration + 3600)
        sweep = functools.partial(sweep_abandoned, self.runtime.database, abandoned)
        return [
            run_workers,
            functools.partial(
                every_under_lease, self.runtime.database, "analytics.staging_sweep", 3600.0, sweep
            ),
        ]

    async def ImportGraph(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> pb.ImportGraphResponse:
        """Stream entities and relationships in, idempotently by id; one revision per import."""
        principal = current_principal()
        imported = await import_graph(self.runtime.database, principal.tenant, request_iterator)
        self._prebuild(principal.tenant, imported.revision)
        return pb.ImportGraphResponse(
            entities_upserted=imported.entities,
            relationships_upserted=imported.relationships,
            graph_revision=imported.revision,
        )

    async def ListPacks(self, request: pb.ListPacksRequest, context: Any) -> pb.ListPacksResponse:
        """Every registered pack (one page: the registry is small)."""
        return pb.ListPacksResponse(
            packs=[_spec_message(spec) for spec in PACKS.values()], page=PageResponse()
        )

    async def _graph(self, tenant: uuid.UUID) -> tuple[int, int, int]:
        """The tenant's (revision, entities, relationships)."""
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            row = await session.get(GraphRevisionRow, tenant)
        if row is None:
            raise FailedPrecondition("this tenant has no graph yet: ImportGraph first")
        return row.revision, row.entities, row.relationships

    async def _snapshot(self, tenant: uuid.UUID, revision: int) -> Path:
        """The revision's snapshot file, built from the store the first time it is needed."""
        path = graph.snapshot_path(self._snapshots, tenant, revision)
        lock = self._building.setdefault(tenant, asyncio.Lock())
        async with lock:
            if not path.exists():
                snapshot = await graph.build_snapshot(self.runtime.database, tenant)
                path = graph.snapshot_path(self._snapshots, tenant, snapshot.revision)
                await asyncio.to_thread(graph.save, snapshot, path)
                graph.prune(self._snapshots, tenant, snapshot.revision)
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

    async def _priced(
        self, spec: PackSpec, params: dict[str, Any], nodes: int, edges: int, budget_ms: float
    ) -> Estimate:
        speed = await self.workers.speed()
        return estimate(spec, params, nodes, edges, speed, budget_ms)

    async def EstimatePack(
        self, request: pb.EstimatePackRequest, context: Any
    ) -> pb.EstimatePackResponse:
        """Price a run without running it."""
        spec = pack(request.pack_id)
        params = bind(spec, _given(request.parameters))
        revision, nodes, edges = await self._graph(current_principal().tenant)
        found = await self._priced(spec, params, nodes, edges, spec.timeout_ms)
        return pb.EstimatePackResponse(estimate=_estimate_message(found, revision))

    async def RunPack(self, request: pb.RunPackRequest, context: Any) -> pb.RunPackResponse:
        """Run a pack within budget and deadline (sampled, or refused, when it would not fit)."""
        started = time.perf_counter()
        spec = pack(request.pack_id)
        params = bind(spec, _given(request.parameters))
        tenant = current_principal().tenant
        metering = self.runtime.metering
        if metering is not None:
            await metering.admit(tenant)  # RESOURCE_EXHAUSTED once the spend cap is reached
        revision, nodes, edges = await self._graph(tenant)
        await self.workers.speed()  # only waits while the workers first start
        remaining = context.time_remaining()
        deadline_s = (
            spec.timeout_ms / 1000 if remaining is None else min(spec.timeout_ms / 1000, remaining)
        )
        found = await self._priced(spec, params, nodes, edges, deadline_s * 1000)
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
        sample = found.sample
        snapshot = await self._snapshot(tenant, revision)
        result = await self.workers.run(snapshot, spec.id, params, sample, deadline_s)
        if found.sampling_applies:
            metrics.SAMPLED.labels(spec.id).inc()
        if metering is not None:
            metering.count(tenant, "analytics.pack_run")
        metrics.PACK_SECONDS.labels(spec.id).observe(time.perf_counter() - started)
        metrics.PROJECTION_BYTES.set(result["projection_bytes"])
        return pb.RunPackResponse(
            result=pb.PackResult(
                pack_id=spec.id,
                graph_revision=revision,
                entities=[pb.ScoredEntity(**entity) for entity in result.get("entities", [])],
                path=result.get("path", []),
                path_cost=result.get("path_cost", 0.0),
                modularity=result.get("modularity", 0.0),
                sampling=pb.Sampling(
                    sampled=found.sampling_applies,
                    sampler=sample,
                    ratio=sampler(sample)[1] if sample else 1.0,
                ),
                estimate=_estimate_message(found, revision),
                elapsed_ms=result["elapsed_ms"],
                projection_bytes=result["projection_bytes"],
            )
        )


SERVICE = ServiceDefinition(
    name="analytics",
    descriptor=pb.DESCRIPTOR.services_by_name["AnalyticsService"],
    servicer_class=AnalyticsService,
    add_to_server=analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server,
    capability="graph analytics packs (issue #6)",
)
