"""The AccessService servicer: translates messages and calls the domain, nothing else."""

from intelgraph.access.v1 import access_service_pb2, access_service_pb2_grpc

from servers.registry import ServiceDefinition
from servers.runtime import PlatformServicer


class AccessService(PlatformServicer, access_service_pb2_grpc.AccessServiceServicer):
    """Access requests, approvals, time-boxed JIT grants, revocation and the audit chain.

    No RPC is built yet; each answers UNIMPLEMENTED naming its capability.
    """


SERVICE = ServiceDefinition(
    name="access",
    descriptor=access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
    servicer_class=AccessService,
    add_to_server=access_service_pb2_grpc.add_AccessServiceServicer_to_server,
    capability="access requests and just-in-time grants (issue #5)",
    capability_by_rpc={"GetJwks": "JWT authentication and signing keys (issue #3)"},
)
