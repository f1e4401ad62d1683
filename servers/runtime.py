"""What the runtime composes: service definitions, their components, the servicers' runtime.

A service package exports one `ServiceDefinition`: its servicer, what its
unbuilt RPCs answer, the interfaces it provides and needs (`core.interfaces`),
and optionally a `Component` factory for what it runs beside its servicer on
every replica — background work, interceptors it adds to the chain, the
interfaces it provides. Work that belongs to serving the service (jobs under a
lease, say) is the servicer's own `background_jobs`, run only where it is served.
The composition root (`servers.app`) builds every
service's component and servicer from these definitions and never names a
service's classes; services find what they need on the `Runtime` (`metering`, `read_cache`,
`notifications`, `changed`, `component`); a component that needs another service's interface
takes it when the runtime is composed (`Component.attach`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from core.errors import NotBuilt
from core.interfaces import CacheInvalidation, CostBudgets, Notifications, ReadCache, UsageMeter
from servers.db import utc_now
from servers.switches import SwitchBoard
from servers.tracing import Tracing

if TYPE_CHECKING:
    from interceptors import ServerInterceptor
    from interceptors.keys import KeyStore
    from interceptors.policy import PolicyEngine
    from interceptors.tokens import InMemoryRevocations
    from servers.config import Settings
    from servers.db import Database

#: A coroutine the platform runs beside the services until it stops.
Job = Callable[[], Coroutine[Any, Any, Any]]
ComponentT = TypeVar("ComponentT", bound="Component")

#: Suffix of the modules grpcio-tools generates servicer base classes into.
_GENERATED_MODULE_SUFFIX = "_pb2_grpc"


class Component:
    """What a service runs beside its servicer, for as long as the process serves.

    Components are built for every service, served here or not: a replica
    serving only Analytics still refuses revoked tokens and still meters.
    Override what applies; the defaults do nothing.
    """

    def interceptors(self) -> Sequence[ServerInterceptor]:
        """Interceptors this component adds to the chain, innermost of the platform's."""
        return ()

    def background_jobs(self) -> list[Job]:
        """Coroutines to run until the platform stops."""
        return []

    def attach(self, runtime: Runtime) -> None:
        """Take what this component uses of other services, once every component is built.

        `Runtime.compose` calls it, before `start`: components are built one by
        one from the `Foundation`, so one providing an interface another needs
        (`runtime.notifications`, say) may not exist yet when that one is built.
        """

    async def start(self) -> None:
        """Prepare before the platform reports SERVING (after the store is open)."""

    async def close(self) -> None:
        """Release what the component holds, after its jobs are cancelled."""


@dataclass(frozen=True)
class Foundation:
    """What exists before any service: the platform's own parts, shared by all."""

    settings: Settings
    database: Database
    keys: KeyStore
    engine: PolicyEngine
    #: Revoked token ids this process refuses (the authentication interceptor reads it).
    revocations: InMemoryRevocations
    #: Every service of the platform, served here or not.
    services: tuple[ServiceDefinition, ...]
    clock: Callable[[], datetime] = field(default=utc_now)
    #: Where spans go (nowhere unless tracing is configured).
    tracing: Tracing = field(default_factory=Tracing)
    #: The backout switches, as this process sees them (None: none are kept here).
    switches: SwitchBoard | None = None


@dataclass(frozen=True)
class Runtime:
    """Shared, long-lived dependencies of the services in one server process."""

    settings: Settings
    database: Database
    keys: KeyStore
    engine: PolicyEngine
    clock: Callable[[], datetime] = field(default=utc_now)
    #: Every service's component (see `Component`).
    components: tuple[Component, ...] = ()
    #: Where spans go: services take tracers from it for spans of their own.
    tracing: Tracing = field(default_factory=Tracing)
    #: The backout switches (`servers.switches`): services read them to back a lane out.
    switches: SwitchBoard | None = None

    @classmethod
    def compose(cls, foundation: Foundation, components: Sequence[Component]) -> Runtime:
        """The runtime of `foundation` with these components, each attached to it."""
        runtime = cls(
            settings=foundation.settings,
            database=foundation.database,
            keys=foundation.keys,
            engine=foundation.engine,
            clock=foundation.clock,
            components=tuple(components),
            tracing=foundation.tracing,
            switches=foundation.switches,
        )
        for component in runtime.components:
            component.attach(runtime)
        return runtime

    def component(self, kind: type[ComponentT]) -> ComponentT | None:
        """This process's component of class `kind` (a service asks for its own)."""
        for component in self.components:
            if isinstance(component, kind):
                return component
        return None

    def _provider(self, interface: type) -> Any:
        """The first component that provides `interface` (a runtime-checkable Protocol)."""
        return next((c for c in self.components if isinstance(c, interface)), None)

    @cached_property
    def metering(self) -> UsageMeter | None:
        """Where billable work is counted (None: not metered here)."""
        meter: UsageMeter | None = self._provider(UsageMeter)
        return meter

    @cached_property
    def read_cache(self) -> ReadCache | None:
        """Where persisted reads are cached (None: no cache here)."""
        cache: ReadCache | None = self._provider(ReadCache)
        return cache

    @cached_property
    def cost_budgets(self) -> CostBudgets | None:
        """Where cost budgets are read (None: nowhere here)."""
        budgets: CostBudgets | None = self._provider(CostBudgets)
        return budgets

    @cached_property
    def notifications(self) -> Notifications | None:
        """Where notifications are put for the platform's webhooks (None: nowhere here)."""
        outbox: Notifications | None = self._provider(Notifications)
        return outbox

    @cached_property
    def _invalidations(self) -> tuple[CacheInvalidation, ...]:
        return tuple(c for c in self.components if isinstance(c, CacheInvalidation))

    async def changed(self, tenant: uuid.UUID, *resource_types: str) -> None:
        """Work outside an RPC (a job) changed these resources of `tenant`.

        Cached reads of them are dropped for that tenant, as after a mutating RPC.
        """
        for invalidation in self._invalidations:
            await invalidation.changed(tenant, resource_types)


class PlatformServicer:
    """Base of the platform's servicers: holds the runtime they were built with."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def background_jobs(self) -> list[Job]:
        """Coroutines run beside the service where it is served, until it stops (none by default).

        What must run on every replica, served or not, belongs to the service's `Component`.
        """
        return []


@dataclass(frozen=True)
class ServiceDefinition:
    """One service of the platform, as the runtime composes it.

    Attributes:
        name: Short name used by `--services`, e.g. "access".
        descriptor: The service's descriptor from gen/.
        servicer_class: The servicer, a subclass of the generated base and of
            `PlatformServicer`.
        add_to_server: The generated `add_<Service>Servicer_to_server`.
        capability: What the service's unbuilt RPCs arrive with.
        capability_by_rpc: Exceptions to `capability` for single RPCs.
        component: Builds what the service runs beside its servicer (None: nothing).
        provides: The `core.interfaces` its component implements for other services.
        needs: The `core.interfaces` it uses when some service provides them (each is
            optional at run time: metering, for one, can be turned off).
    """

    name: str
    descriptor: ServiceDescriptor
    servicer_class: type[PlatformServicer]
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    capability: str
    capability_by_rpc: Mapping[str, str] = field(default_factory=dict)
    component: Callable[[Foundation], Component | None] | None = None
    provides: tuple[type, ...] = ()
    needs: tuple[type, ...] = ()

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

    def built_paths(self) -> list[str]:
        """Wire paths of the RPCs the servicer implements, "/package.Service/Method"."""
        unbuilt = set(self.unbuilt_rpcs())
        return [
            f"/{self.full_name}/{method.name}"
            for method in self.descriptor.methods
            if method.name not in unbuilt
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
