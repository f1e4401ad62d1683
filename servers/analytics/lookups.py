"""Reading materialized results: the tenant's graph state, and its stored rankings (an LRU).

A ranking is fetched from the store and decoded once per process, then paged
by slicing; entries are bounded in bytes across tenants, least recently used
first out.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import LRUCache

from servers.analytics import store
from servers.analytics.rankings import Ranked
from servers.analytics.store import results
from servers.analytics.store.results import Materialization
from servers.db import Database

#: Payloads larger than this are decoded off the event loop.
DECODE_IN_THREAD_BYTES = 1 << 20


@dataclass(frozen=True)
class GraphState:
    """A tenant's graph revision and sizes, and where its whole-graph results are."""

    revision: int
    entities: int
    relationships: int
    latest: Materialization | None
    ready: Materialization | None

    @property
    def stale(self) -> bool:
        """Whether the newest revision's results are not ready yet (reads get older ones)."""
        return self.ready is None or self.ready.revision < self.revision


@dataclass(frozen=True)
class Loaded:
    """A stored ranking, decoded."""

    revision: int
    computed_at: datetime
    ranked: Ranked
    summary: dict[str, Any]


async def graph_state(database: Database, tenant: uuid.UUID) -> GraphState | None:
    """The tenant's graph state, or None before its first import."""
    async with database.tenant_session(tenant, readonly=True) as session:
        size = await store.graph_size(session, tenant)
        if size is None:
            return None
        status = await results.status(session)
    revision, entities, relationships = size
    return GraphState(revision, entities, relationships, status.latest, status.ready)


class Lookups:
    """Stored rankings of every tenant, decoded on first use and kept in an LRU.

    Args:
        database: The store.
        cache_bytes: Bytes of decoded rankings kept.
    """

    def __init__(self, database: Database, cache_bytes: int) -> None:
        self._database = database
        self._cache: LRUCache[tuple[uuid.UUID, int, str], Loaded] = LRUCache(
            maxsize=max(cache_bytes, 1), getsizeof=lambda loaded: max(loaded.ranked.nbytes, 1)
        )
        self._loading: dict[tuple[uuid.UUID, int, str], asyncio.Lock] = {}

    async def ranking(self, tenant: uuid.UUID, revision: int, pack_id: str) -> Loaded | None:
        """The tenant's ranking of `pack_id` at `revision`, or None if it is not stored."""
        key = (tenant, revision, pack_id)
        found = self._cache.get(key)
        if found is not None:
            return found
        lock = self._loading.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # one fetch and decode per ranking, however many ask at once
                found = self._cache.get(key)
                if found is not None:
                    return found
                async with self._database.tenant_session(tenant, readonly=True) as session:
                    stored = await results.result(session, revision, pack_id)
                if stored is None:
                    return None
                if len(stored.payload) > DECODE_IN_THREAD_BYTES:
                    ranked = await asyncio.to_thread(Ranked.decode, stored.payload)
                else:
                    ranked = Ranked.decode(stored.payload)
                loaded = Loaded(revision, stored.computed_at, ranked, stored.summary)
                if loaded.ranked.nbytes < self._cache.maxsize:
                    self._cache[key] = loaded
                return loaded
        finally:
            if not lock.locked():
                self._loading.pop(key, None)
