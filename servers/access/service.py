"""The AccessService servicer: translates messages and calls the domain, nothing else."""

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.access.v1 import access_service_pb2, access_service_pb2_grpc

from interceptors import current_principal
from servers.registry import ServiceDefinition
from servers.runtime import PlatformServicer


class AccessService(PlatformServicer, access_service_pb2_grpc.AccessServiceServicer):
    """Access requests, approvals, time-boxed JIT grants, revocation and the audit chain.

    Built so far: the public key set (GetJwks) and GetCaller. The request and
    grant workflow answers UNIMPLEMENTED naming its capability.
    """

    async def GetJwks(
        self, request: access_service_pb2.GetJwksRequest, context: Any
    ) -> access_service_pb2.GetJwksResponse:
        """The public signing keys (current and previous) as a standard JWKS."""
        ring = self.runtime.keys.ring()
        return access_service_pb2.GetJwksResponse(
            keys=[access_service_pb2.Jwk(**jwk) for jwk in ring.jwks()]
        )

    async def GetCaller(
        self, request: access_service_pb2.GetCallerRequest, context: Any
    ) -> access_service_pb2.GetCallerResponse:
        """Who the verified token says the caller is."""
        principal = current_principal()
        expires_at = Timestamp()
        expires_at.FromDatetime(principal.expires)
        return access_service_pb2.GetCallerResponse(
            subject=principal.subject,
            tenant_id=str(principal.tenant),
            scopes=list(principal.scopes),
            jit=principal.jit,
            token_id=principal.token_id,
            expires_at=expires_at,
        )


SERVICE = ServiceDefinition(
    name="access",
    descriptor=access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
    servicer_class=AccessService,
    add_to_server=access_service_pb2_grpc.add_AccessServiceServicer_to_server,
    capability="access requests and just-in-time grants (issue #5)",
)
