"""The six services: what each serves, and how unbuilt RPCs answer.

Each service package exports a `SERVICE` definition. Building it completes the
servicer: every RPC of the contract that the servicer does not implement
answers UNIMPLEMENTED with a message (and `ErrorInfo` metadata) naming the
capability that will bring it. None is faked, and none falls back to gRPC's
anonymous "Method not implemented!".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from core.errors import NotBuilt
from servers.runtime import PlatformServicer, Runtime

#: Suffix of the modules grpcio-tools generates servicer base classes into.
_GENERATED_MODULE_SUFFIX = "_pb2_grpc"


@dataclass(frozen=True)
class ServiceDefinition:
    """One service of the platform.

    Attributes:
        name: Short name used by `--services`, e.g. "access".
        descriptor: The service's descriptor from gen/.
        servicer_class: The servicer, a subclass of the generated base and of
            `PlatformServicer`.
        add_to_server: The generated `add_<Service>Servicer_to_server`.
        capability: What the service's unbuilt RPCs arrive with.
        capability_by_rpc: Exceptions to `capability` for single RPCs.
    """

    name: str
    descriptor: ServiceDescriptor
    servicer_class: type[PlatformServicer]
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    capability: str
    capability_by_rpc: Mapping[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        """Fully qualified service name, e.g. "intelgraph.access.v1.AccessService"."""
        return self.descriptor.full_name

    def unbuilt_rpcs(self) -> list[str]:
        """RPCs of the contract that the servicer does not implement."""
        return [
            method.name
            for method in self.descriptor.methods
            if _defining_module(self.servicer_class, method.name).endswith(_GENERATED_MODULE_SUFFIX)
        ]

    def build(self, runtime: Runtime) -> PlatformServicer:
        """The servicer, with every unbuilt RPC answering UNIMPLEMENTED and why."""
        fillers = {
            name: _not_built(
                f"/{self.full_name}/{name}", self.capability_by_rpc.get(name, self.capability)
            )
            for name in self.unbuilt_rpcs()
        }
        completed = type(self.servicer_class.__name__, (self.servicer_class,), fillers)
        return cast(PlatformServicer, completed(runtime))

    def register(self, server: grpc.aio.Server, runtime: Runtime) -> PlatformServicer:
        """Build the servicer, add it to `server` and return it."""
        servicer = self.build(runtime)
        self.add_to_server(servicer, server)
        return servicer


def _defining_module(cls: type, attribute: str) -> str:
    for klass in cls.__mro__:
        if attribute in vars(klass):
            return klass.__module__
    return ""


def _not_built(method: str, capability: str) -> Callable[..., Any]:
    async def rpc(_self: object, _request: object, _context: object) -> None:
        raise NotBuilt(
            f"{method} is not built yet: it arrives with {capability}",
            metadata={"method": method, "capability": capability},
        )

    return rpc


def all_services() -> tuple[ServiceDefinition, ...]:
    """Every service, in serving order."""
    # Imported here: the service modules import this one.
    from servers.access.service import SERVICE as ACCESS  # noqa: PLC0415
    from servers.analytics.service import SERVICE as ANALYTICS  # noqa: PLC0415
    from servers.billing.service import SERVICE as BILLING  # noqa: PLC0415
    from servers.catalog.service import SERVICE as CATALOG  # noqa: PLC0415
    from servers.edge.service import SERVICE as EDGE  # noqa: PLC0415
    from servers.rag.service import SERVICE as RAG  # noqa: PLC0415

    return (ACCESS, BILLING, EDGE, RAG, CATALOG, ANALYTICS)


def services_named(names: tuple[str, ...]) -> tuple[ServiceDefinition, ...]:
    """The definitions of `names`, in serving order."""
    return tuple(service for service in all_services() if service.name in names)
