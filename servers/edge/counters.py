"""Invalidation counters shared through the store, for processes without Redis.

`conductor serve --workers N` (or replicas on one PostgreSQL) without Redis
still invalidate each other: a bump is an upsert that returns the counter's
new value, and every process reads the table every `POLL_S` seconds, so a
mutation on one process reaches the others' caches within that.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from servers.db import Database, insert
from servers.edge.cache import Generations
from servers.edge.store import GenerationRow

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
            values = {}
            async with self._database.platform_session() as session:
                for name in names:
                    statement = insert(session, GenerationRow).values(name=name, value=1)
                    values[name] = int(
                        await session.scalar(
                            statement.on_conflict_do_update(
                                index_elements=["name"], set_={"value": GenerationRow.value + 1}
                            ).returning(GenerationRow.value)
                        )
                        or 0
                    )
        except Exception:
            logger.exception("edge cache: could not share an invalidation; this process only")
            return {name: self._generations.bump(name) for name in names}
        return values

    async def poll(self) -> None:
        """Take every counter from the store."""
        async with self._database.platform_session(readonly=True) as session:
            rows = (await session.execute(select(GenerationRow.name, GenerationRow.value))).all()
        for name, value in rows:
            self._generations.observe(name, int(value))
