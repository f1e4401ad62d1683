"""The AnalyticsService servicer: translates messages and calls the domain, nothing else."""

from intelgraph.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc

from servers.registry import ServiceDefinition
from servers.runtime import PlatformServicer


class AnalyticsService(PlatformServicer, analytics_service_pb2_grpc.AnalyticsServiceServicer):
    """Persisted graph analytics packs with cost hints, sampling and deadlines.

    No RPC is built yet; each answers UNIMPLEMENTED naming its capability.
    """


SERVICE = ServiceDefinition(
    name="analytics",
    descriptor=analytics_service_pb2.DESCRIPTOR.services_by_name["AnalyticsService"],
    servicer_class=AnalyticsService,
    add_to_server=analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server,
    capability="graph analytics packs (issue #6)",
)
