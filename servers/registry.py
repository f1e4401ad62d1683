"""The six services, in serving order: the one place that lists them.

Each service package exports its `SERVICE` definition (`servers.runtime.ServiceDefinition`);
the composition root serves what `--services` selects and builds every
service's component.
"""

from __future__ import annotations

from servers.access import SERVICE as ACCESS
from servers.analytics import SERVICE as ANALYTICS
from servers.billing import SERVICE as BILLING
from servers.catalog import SERVICE as CATALOG
from servers.edge import SERVICE as EDGE
from servers.rag import SERVICE as RAG
from servers.runtime import ServiceDefinition

__all__ = ["ServiceDefinition", "all_services", "services_named"]

_SERVICES = (ACCESS, BILLING, EDGE, RAG, CATALOG, ANALYTICS)


def all_services() -> tuple[ServiceDefinition, ...]:
    """Every service, in serving order."""
    return _SERVICES


def services_named(names: tuple[str, ...]) -> tuple[ServiceDefinition, ...]:
    """The definitions of `names`, in serving order."""
    return tuple(service for service in all_services() if service.name in names)
