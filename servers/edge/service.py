"""The EdgeService servicer: translates messages and calls the edge layer, nothing else."""

from __future__ import annotations

import logging

import grpc
from intelgraph.common.v1.pagination_pb2 import PageResponse
from intelgraph.edge.v1 import edge_service_pb2 as pb
from intelgraph.edge.v1 import edge_service_pb2_grpc

from core.errors import FailedPrecondition, InvalidArgument, quoted, uuid_field
from core.interfaces import CacheInvalidation, Notifications, ReadCache
from core.pagination import TIME_AND_ID, Page
from core.times import optional_instant, to_timestamp
from interceptors import current_principal
from interceptors.tokens import subject_hash
from servers.edge.alarms import list_leak_alarms
from servers.edge.layer import EdgeLayer
from servers.runtime import PlatformServicer, ServiceDefinition

logger = logging.getLogger(__name__)

#: Largest cap an operator may set (the machine's whole memory is not a cap).
MAX_CAP_BYTES = 64 * 1024**3


class EdgeService(PlatformServicer, edge_service_pb2_grpc.EdgeServiceServicer):
    """Cache operations for persisted GraphQL reads: invalidation, purges, caps, leak alarms."""

    @property
    def edge(self) -> EdgeLayer:
        """This process's edge layer.

        Raises:
            FailedPrecondition: The cache is turned off here (CONDUCTOR_EDGE_CACHE=false).
        """
        layer = self.runtime.component(EdgeLayer)
        if layer is None:
            raise FailedPrecondition("the edge cache is turned off on this server")
        return layer

    def _stats(self, tenant: str) -> pb.TenantCacheStats:
        cache = self.edge.cache
        space = cache.space(tenant)
        stats = space.stats
        return pb.TenantCacheStats(
            tenant_id=tenant,
            entries=len(space.entries),
            bytes=int(space.entries.currsize),
            cap_bytes=cache.cap_of(tenant),
            hits=stats.hits,
            misses=stats.misses,
            coalesced_waits=stats.coalesced_waits,
            evictions=stats.evictions,
            purges=stats.purges,
            leak_alarms=stats.leak_alarms,
            origin_calls=stats.origin_calls,
        )

    async def Purge(
        self,
        request: pb.PurgeRequest,
        context: grpc.aio.ServicerContext[pb.PurgeRequest, pb.PurgeResponse],
    ) -> pb.PurgeResponse:
        """Purge the caller's tenant's entries by tag (resource type), or all of them."""
        tenant = current_principal().tenant_id
        tags = [] if request.all else list(request.tags)
        if not request.all and not tags:
            raise InvalidArgument("name tags to purge, or set all", field="tags")
        unknown = sorted(set(tags) - self.edge.graph.known_tags)
        if unknown:
            raise InvalidArgument(
                f"no cached read is tagged {quoted(unknown[0])} (tags are resource types)",
                field="tags",
            )
        generation = await self.edge.cache.purge(tenant, tags)
        logger.info("edge cache purge tenant=%s tags=%s", tenant, ",".join(tags) or "*")
        return pb.PurgeResponse(generation=generation)

    async def PurgeEverything(
        self,
        request: pb.PurgeEverythingRequest,
        context: grpc.aio.ServicerContext[pb.PurgeEverythingRequest, pb.PurgeEverythingResponse],
    ) -> pb.PurgeEverythingResponse:
        """Every tenant's entries, on every replica."""
        generation = await self.edge.cache.purge_everything()
        logger.warning(
            "edge cache emergency purge by subject %s: %s",
            subject_hash(current_principal().subject),
            request.reason,
        )
        return pb.PurgeEverythingResponse(generation=generation)

    async def GetCacheStats(
        self,
        request: pb.GetCacheStatsRequest,
        context: grpc.aio.ServicerContext[pb.GetCacheStatsRequest, pb.GetCacheStatsResponse],
    ) -> pb.GetCacheStatsResponse:
        """The caller's tenant's counters in this server process."""
        return pb.GetCacheStatsResponse(stats=self._stats(current_principal().tenant_id))

    async def GetMutationGraph(
        self,
        request: pb.GetMutationGraphRequest,
        context: grpc.aio.ServicerContext[pb.GetMutationGraphRequest, pb.GetMutationGraphResponse],
    ) -> pb.GetMutationGraphResponse:
        """Which reads each mutating RPC invalidates, and the coverage."""
        graph = self.edge.graph
        covered, mutating = graph.coverage()
        return pb.GetMutationGraphResponse(
            mutations=[
                pb.MutationEdge(
                    method=mutation.method,
                    resource_types=sorted(mutation.resource_types),
                    invalidated_reads=list(mutation.invalidated_reads),
                )
                for mutation in sorted(graph.mutations.values(), key=lambda m: m.method)
            ],
            coverage=covered / mutating if mutating else 1.0,
            mutating_rpcs=mutating,
            covered_rpcs=covered,
        )

    async def ListLeakAlarms(
        self,
        request: pb.ListLeakAlarmsRequest,
        context: grpc.aio.ServicerContext[pb.ListLeakAlarmsRequest, pb.ListLeakAlarmsResponse],
    ) -> pb.ListLeakAlarmsResponse:
        """The caller's tenant's refused suspicious hits, newest first."""
        since = optional_instant(request, "since")
        page = Page.of(request, TIME_AND_ID, since=since.isoformat() if since else "")
        rows, token = await list_leak_alarms(
            self.runtime.database, current_principal().tenant, since, page
        )
        alarms = [
            pb.LeakAlarm(
                id=str(row.id),
                occurred_at=to_timestamp(row.occurred_at),
                operation_id=row.operation_id,
                reason=row.reason,
                cache_key_hash=row.cache_key_hash,
            )
            for row in rows
        ]
        return pb.ListLeakAlarmsResponse(alarms=alarms, page=PageResponse(next_page_token=token))

    async def SetTenantCacheCap(
        self,
        request: pb.SetTenantCacheCapRequest,
        context: grpc.aio.ServicerContext[
            pb.SetTenantCacheCapRequest, pb.SetTenantCacheCapResponse
        ],
    ) -> pb.SetTenantCacheCapResponse:
        """Set a tenant's byte cap (0: the default); applies on every replica within 2 s."""
        tenant = uuid_field(request.tenant_id, "tenant_id")
        if not 0 <= request.cap_bytes <= MAX_CAP_BYTES:
            raise InvalidArgument(
                f"cap_bytes must be between 0 (the default) and {MAX_CAP_BYTES}",
                field="cap_bytes",
            )
        await self.edge.set_cap(tenant, request.cap_bytes)
        return pb.SetTenantCacheCapResponse(stats=self._stats(str(tenant)))


SERVICE = ServiceDefinition(
    component=EdgeLayer.of,
    provides=(ReadCache, CacheInvalidation),
    needs=(Notifications,),
    name="edge",
    descriptor=pb.DESCRIPTOR.services_by_name["EdgeService"],
    servicer_class=EdgeService,
    add_to_server=edge_service_pb2_grpc.add_EdgeServiceServicer_to_server,
    capability="edge cache guardrails (issue #8)",
)
