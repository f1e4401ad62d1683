"""What every servicer is built with: settings, the store, the signing keys."""

from __future__ import annotations

from dataclasses import dataclass

from interceptors.keys import KeyStore
from interceptors.tokens import InMemoryRevocations
from servers.config import Settings
from servers.db import Database


@dataclass(frozen=True)
class Runtime:
    """Shared, long-lived dependencies of the services in one server process."""

    settings: Settings
    database: Database
    keys: KeyStore
    revocations: InMemoryRevocations


class PlatformServicer:
    """Base of the platform's servicers: holds the runtime they were built with."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
