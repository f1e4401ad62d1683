"""What every servicer is built with: settings, the store, keys, policies, the clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from servers.db import utc_now

if TYPE_CHECKING:
    from interceptors.keys import KeyStore
    from interceptors.policy import PolicyEngine
    from servers.access.revocation import RevocationFeed
    from servers.billing.metering import Metering
    from servers.config import Settings
    from servers.db import Database
    from servers.edge.layer import EdgeLayer


@dataclass(frozen=True)
class Runtime:
    """Shared, long-lived dependencies of the services in one server process."""

    settings: Settings
    database: Database
    keys: KeyStore
    engine: PolicyEngine
    revocation_feed: RevocationFeed
    clock: Callable[[], datetime] = field(default=utc_now)
    #: Where services count billable work (None: not metered).
    metering: Metering | None = None
    #: The edge cache of persisted GraphQL reads (None: turned off).
    edge: EdgeLayer | None = None

    async def changed(self, tenant: uuid.UUID, *resource_types: str) -> None:
        """Work outside an RPC (a job) changed these resources of `tenant`.

        The edge cache drops that tenant's cached reads of them, as it does after
        a mutating RPC.
        """
        if self.edge is not None:
            await self.edge.cache.invalidate(str(tenant), resource_types)


class PlatformServicer:
    """Base of the platform's servicers: holds the runtime they were built with."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def background_jobs(self) -> list[Callable[[], Coroutine[Any, Any, Any]]]:
        """Coroutines the platform runs beside the service until it stops (none by default)."""
        return []
