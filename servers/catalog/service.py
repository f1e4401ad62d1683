"""The CatalogService servicer: translates messages and calls a use case, nothing else."""

from intelgraph.catalog.v1 import catalog_service_pb2, catalog_service_pb2_grpc

from servers.runtime import PlatformServicer, ServiceDefinition


class CatalogService(PlatformServicer, catalog_service_pb2_grpc.CatalogServiceServicer):
    """Services, owners, dependencies, SLOs, what-if scenarios, CSV export and budget links.

    No RPC is built yet; each answers UNIMPLEMENTED naming its capability.
    """


SERVICE = ServiceDefinition(
    name="catalog",
    descriptor=catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    servicer_class=CatalogService,
    add_to_server=catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server,
    capability="the service catalog and SLO calculator (not scheduled yet)",
)
