"""Invalidation counters shared through the store, for processes without Redis.

`conductor serve --workers N` (or replicas on one PostgreSQL) without Redis
still invalidate each other: a bump is an upsert that returns the counter's
new value, and every process reads the table every `POLL_S` seconds, so a
mutation on one process reaches the others' caches within that.
"""

from __future__ import annotations

import logging

from servers.db import Database
from servers.edge import store
from servers.edge.cache import Generations

logger = logging.getLogger(__name__)

#: Seconds between reads of the counters.
POLL_S = 0.5


class StoreCounters:
    """Counters in `edge_generations` (implements `servers.edge.cache.SharedCounters`)."""

    def __init__(self, database: Database, generations: Generations) -> None:
        self._database = database
        self._generations = generations

    async def bump(self, names: list[str]) -> dict[str, int]:
        """Advance the counters in the store; their new values (local only if the store fails)."""
        try:
            async with self._database.platform_session() as session:
                values = await store.bump_generations(session, names)
        except Exception:
            logger.exception("edge cache: could not share an invalidation; this process only")
            return {name: self._generations.bump(name) for name in names}
        return values

    async def poll(self) -> None:
        """Take every counter from the store."""
        async with self._database.platform_session(readonly=True) as session:
            rows = await store.generations(session)
        for name, value in rows:
            self._generations.observe(name, value)
