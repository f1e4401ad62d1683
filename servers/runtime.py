"""What every servicer is built with: the validated settings and the store."""

from __future__ import annotations

from dataclasses import dataclass

from servers.config import Settings
from servers.db import Database


@dataclass(frozen=True)
class Runtime:
    """Shared, long-lived dependencies of the services in one server process."""

    settings: Settings
    database: Database


class PlatformServicer:
    """Base of the platform's servicers: holds the runtime they were built with."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
