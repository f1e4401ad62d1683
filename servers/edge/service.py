"""The EdgeService servicer: translates messages and calls the domain, nothing else."""

from intelgraph.edge.v1 import edge_service_pb2, edge_service_pb2_grpc

from servers.registry import ServiceDefinition
from servers.runtime import PlatformServicer


class EdgeService(PlatformServicer, edge_service_pb2_grpc.EdgeServiceServicer):
    """Cache operations for persisted GraphQL reads: invalidation, purges, caps, leak alarms.

    No RPC is built yet; each answers UNIMPLEMENTED naming its capability.
    """


SERVICE = ServiceDefinition(
    name="edge",
    descriptor=edge_service_pb2.DESCRIPTOR.services_by_name["EdgeService"],
    servicer_class=EdgeService,
    add_to_server=edge_service_pb2_grpc.add_EdgeServiceServicer_to_server,
    capability="edge cache guardrails (issue #8)",
)
