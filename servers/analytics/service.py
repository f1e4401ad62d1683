"""The AnalyticsService servicer: graph import, materialized and parameterised packs, freshness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from intelgraph.analytics.v1 import analytics_service_pb2 as pb
from intelgraph.analytics.v1 import analytics_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageResponse

from core.errors import FailedPrecondition
from core.interfaces import UsageMeter
from core.times import to_timestamp
from interceptors import current_principal
from servers.analytics.packs import PACKS, Estimate, PackSpec, bind, pack
from servers.analytics.runs import Answer, PackRuns
from servers.analytics.store.results import State
from servers.runtime import Job, PlatformServicer, Runtime, ServiceDefinition
from servers.switches import ANALYTICS_REMOVED_PACKS

_PARAMETER_TYPES = {
    "integer": pb.PARAMETER_TYPE_INTEGER,
    "entity_id": pb.PARAMETER_TYPE_ENTITY_ID,
    "entity_ids": pb.PARAMETER_TYPE_ENTITY_IDS,
}
_STATES = {
    State.PENDING: pb.MATERIALIZATION_STATE_PENDING,
    State.RUNNING: pb.MATERIALIZATION_STATE_RUNNING,
    State.READY: pb.MATERIALIZATION_STATE_READY,
    State.FAILED: pb.MATERIALIZATION_STATE_FAILED,
}


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
    given: dict[str, Any] = {
        "source_id": parameters.source_id,
        "target_id": parameters.target_id,
        "seed_ids": list(parameters.seed_ids),
    }
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
        materialized=found.materialized,
    )


def _result_message(spec: PackSpec, answer: Answer) -> pb.PackResult:
    fresh, accuracy = answer.freshness, answer.accuracy
    return pb.PackResult(
        pack_id=spec.id,
        graph_revision=fresh.revision,
        entities=[pb.ScoredEntity(**entity) for entity in answer.entities],
        path=answer.path,
        path_cost=answer.path_cost,
        modularity=answer.modularity,
        sampling=pb.Sampling(sampled=False, ratio=1.0),
        estimate=_estimate_message(answer.estimate, fresh.revision),
        elapsed_ms=answer.elapsed_ms,
        projection_bytes=answer.projection_bytes,
        freshness=pb.Freshness(
            revision=fresh.revision,
            computed_at=to_timestamp(fresh.computed_at),
            stale=fresh.stale,
            latest_revision=fresh.latest_revision,
            expected_ready_at=to_timestamp(fresh.expected_ready_at),
            warm_started=fresh.warm_started,
        ),
        accuracy=pb.Accuracy(
            exact=bool(accuracy.get("exact", False)),
            epsilon=float(accuracy.get("epsilon", 0.0)),
            delta=float(accuracy.get("delta", 0.0)),
            l1_error_bound=float(accuracy.get("l1_error_bound", 0.0)),
            method=str(accuracy.get("method", "")),
        ),
        communities=answer.communities,
    )


class AnalyticsService(PlatformServicer, analytics_service_pb2_grpc.AnalyticsServiceServicer):
    """Persisted graph analytics packs: materialized rankings and priced runs, with freshness."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.runs = PackRuns(runtime)
        if runtime.switches is not None:
            runtime.switches.add_check(ANALYTICS_REMOVED_PACKS, _unknown_packs)

    def background_jobs(self) -> list[Job]:
        """The pack workers, the materializer and the sweep of abandoned imports."""
        return self.runs.background_jobs()

    def _offered(self, pack_id: str) -> bool:
        """Whether the pack is offered now (the backout switch may have taken it out)."""
        switches = self.runtime.switches
        if switches is None:
            return True
        removed = switches.removed_packs()
        return removed is not None and pack_id not in removed

    def _offered_pack(self, pack_id: str) -> PackSpec:
        """The registered pack, unless it is backed out.

        Raises:
            NotFound: No such pack.
            FailedPrecondition: The pack is backed out (switch analytics.removed_packs).
        """
        spec = pack(pack_id)
        if not self._offered(spec.id):
            raise FailedPrecondition(
                f"{spec.id} is backed out (backout switch {ANALYTICS_REMOVED_PACKS})",
                metadata={"switch": ANALYTICS_REMOVED_PACKS, "pack_id": spec.id},
            )
        return spec

    async def ImportGraph(
        self,
        request_iterator: AsyncIterator[pb.ImportGraphRequest],
        context: grpc.aio.ServicerContext[pb.ImportGraphRequest, pb.ImportGraphResponse],
    ) -> pb.ImportGraphResponse:
        """Stream entities and relationships in, idempotently by id; one revision per import."""
        imported = await self.runs.import_graph(current_principal().tenant, request_iterator)
        return pb.ImportGraphResponse(
            entities_upserted=imported.entities,
            relationships_upserted=imported.relationships,
            graph_revision=imported.revision,
        )

    async def ListPacks(
        self,
        request: pb.ListPacksRequest,
        context: grpc.aio.ServicerContext[pb.ListPacksRequest, pb.ListPacksResponse],
    ) -> pb.ListPacksResponse:
        """Every registered pack (one page: the registry is small)."""
        return pb.ListPacksResponse(
            packs=[_spec_message(spec) for spec in PACKS.values() if self._offered(spec.id)],
            page=PageResponse(),
        )

    async def EstimatePack(
        self,
        request: pb.EstimatePackRequest,
        context: grpc.aio.ServicerContext[pb.EstimatePackRequest, pb.EstimatePackResponse],
    ) -> pb.EstimatePackResponse:
        """Price a run without running it (a lookup, for materialized packs)."""
        spec = self._offered_pack(request.pack_id)
        params = bind(spec, _given(request.parameters))
        found, revision = await self.runs.price(
            current_principal().tenant, spec, params, spec.timeout_ms
        )
        return pb.EstimatePackResponse(estimate=_estimate_message(found, revision))

    async def GetGraphStatus(
        self,
        request: pb.GetGraphStatusRequest,
        context: grpc.aio.ServicerContext[pb.GetGraphStatusRequest, pb.GetGraphStatusResponse],
    ) -> pb.GetGraphStatusResponse:
        """The tenant's graph revision and the state of its whole-graph results."""
        state = await self.runs.status(current_principal().tenant)
        if state is None:
            return pb.GetGraphStatusResponse()
        latest, ready = state.latest, state.ready
        return pb.GetGraphStatusResponse(
            revision=state.revision,
            entities=state.entities,
            relationships=state.relationships,
            state=_STATES[latest.state] if latest else pb.MATERIALIZATION_STATE_UNSPECIFIED,
            ready_revision=ready.revision if ready else 0,
            ready_at=to_timestamp(ready.finished_at if ready else None),
            expected_ready_at=to_timestamp(self.runs.expected_ready_at(state)),
            detail=latest.detail if latest else "",
        )

    async def RunPack(
        self,
        request: pb.RunPackRequest,
        context: grpc.aio.ServicerContext[pb.RunPackRequest, pb.RunPackResponse],
    ) -> pb.RunPackResponse:
        """A page of a materialized ranking, or a run within budget and deadline."""
        spec = self._offered_pack(request.pack_id)
        params = bind(spec, _given(request.parameters))
        answer = await self.runs.run(
            current_principal().tenant,
            spec,
            params,
            (request.page.page_size, request.page.page_token),
            context.time_remaining,
        )
        return pb.RunPackResponse(
            result=_result_message(spec, answer),
            page=PageResponse(next_page_token=answer.next_page_token),
        )


SERVICE = ServiceDefinition(
    needs=(UsageMeter,),
    name="analytics",
    descriptor=pb.DESCRIPTOR.services_by_name["AnalyticsService"],
    servicer_class=AnalyticsService,
    add_to_server=analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server,
    capability="graph analytics packs (issue #6)",
)


def _unknown_packs(value: str) -> str | None:
    """What is wrong with a value of the switch analytics.removed_packs: ids of no pack."""
    unknown = [part for part in value.split(",") if part and part != "*" and part not in PACKS]
    if not unknown:
        return None
    return f"names no pack: {', '.join(unknown)} (ListPacks names them, e.g. {next(iter(PACKS))})"
