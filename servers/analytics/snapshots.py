"""This replica's snapshots: built from the store when a revision is first needed, kept on disk.

A snapshot is read from the store once per revision and replica (by the
materializer, or by the first parameterised run that needs it), written under
`var/analytics/`, and mapped in by the workers; it survives a restart. Only the
newest two revisions of a tenant are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import numpy as np
import structlog
from opentelemetry.trace import Tracer

from servers.analytics import graph, store
from servers.db import Database

logger = logging.getLogger(__name__)
#: Structured events operators follow (each names the request that caused it).
_events = structlog.get_logger("conductor.analytics")


#: Rows fetched and converted at a time while building a snapshot (the event loop runs
#: other calls between batches).
SNAPSHOT_BATCH = 10_000


def _indexed(names: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """The entity ids in order, and each one's position among them."""
    ids = np.array(sorted(names), dtype=object)
    return ids, {entity: index for index, entity in enumerate(ids.tolist())}


async def build_snapshot(database: Database, tenant: uuid.UUID) -> graph.Snapshot:
    """Read the tenant's graph (one consistent, read-only transaction) into arrays.

    Rows are streamed in batches, so a large graph does not hold up the server's
    other calls while it is read.
    """
    async with store.snapshot_session(database, tenant) as session:
        revision = await store.revision(session)
        names: list[str] = []
        async for batch in store.entity_ids(session, SNAPSHOT_BATCH):
            names += batch
        # Sorting and indexing a large graph's ids takes a while: not on the event loop.
        ids, position = await asyncio.to_thread(_indexed, names)
        sources: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        async for part in store.relationship_edges(session, SNAPSHOT_BATCH):
            sources.append(np.fromiter((position[row[0]] for row in part), np.int32, len(part)))
            targets.append(np.fromiter((position[row[1]] for row in part), np.int32, len(part)))
            weights.append(np.fromiter((row[2] for row in part), np.float64, len(part)))

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return await asyncio.to_thread(
        graph.Snapshot.of,
        revision,
        ids,
        joined(sources, np.int32),
        joined(targets, np.int32),
        joined(weights, np.float64),
    )


class Snapshots:
    """The tenants' snapshots on this replica's disk.

    Args:
        database: The store they are read from.
        directory: Where they are kept (`var/analytics`).
        tracer: Spans for the builds.
    """

    def __init__(self, database: Database, directory: Path, tracer: Tracer) -> None:
        self._database = database
        self.directory = directory
        self.tracer = tracer
        self._building: dict[uuid.UUID, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    def path(self, tenant: uuid.UUID, revision: int) -> Path:
        """Where the tenant's snapshot of `revision` is (or would be)."""
        return graph.snapshot_path(self.directory, tenant, revision)

    def newest(self, tenant: uuid.UUID, at_most: int) -> int | None:
        """The newest revision up to `at_most` this replica has a snapshot of."""
        kept = [
            revision for revision in graph.revisions(self.directory, tenant) if revision <= at_most
        ]
        return kept[-1] if kept else None

    def recent(self, budget_bytes: int) -> list[Path]:
        """Each tenant's newest snapshot here, most recently written first, within a budget.

        What a restarted replica maps back in first.
        """
        newest = []
        if self.directory.is_dir():
            for tenant_directory in self.directory.iterdir():
                kept = graph.revisions(self.directory, tenant_directory.name)
                if kept:
                    path = tenant_directory / str(kept[-1])
                    newest.append((path.stat().st_mtime, path))
        chosen, total = [], 0
        for _, path in sorted(newest, reverse=True):
            size = sum(file.stat().st_size for file in path.iterdir())
            if total + size > budget_bytes:
                break
            chosen.append(path)
            total += size
        return chosen

    async def ensure(self, tenant: uuid.UUID, revision: int) -> tuple[Path, int]:
        """A snapshot of at least `revision`: (its path, its revision), built if need be.

        A build reads the newest revision (which may be newer than asked).
        """
        lock = self._building.setdefault(tenant, asyncio.Lock())
        async with lock:
            found = graph.revisions(self.directory, tenant)
            if found and found[-1] >= revision:
                return self.path(tenant, found[-1]), found[-1]
            return await self._build(tenant)

    async def _build(self, tenant: uuid.UUID) -> tuple[Path, int]:
        with self.tracer.start_as_current_span("build snapshot"):
            started = time.perf_counter()
            snapshot = await build_snapshot(self._database, tenant)
            path = self.path(tenant, snapshot.revision)
            await asyncio.to_thread(graph.save, snapshot, path)
            graph.prune(self.directory, tenant, snapshot.revision)
        # Inside the call that needed it, or the job that started it.
        _events.info(
            "analytics snapshot built",
            tenant=str(tenant),
            revision=snapshot.revision,
            entities=snapshot.nodes,
            relationships=snapshot.edges,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return path, snapshot.revision

    def prebuild(self, tenant: uuid.UUID, revision: int) -> None:
        """Build the snapshot of `revision` in the background (if not already under way)."""
        lock = self._building.get(tenant)
        if lock is not None and lock.locked():
            return

        async def build() -> None:
            try:
                await self.ensure(tenant, revision)
            except Exception:
                logger.exception(
                    "building the snapshot of tenant %s, revision %s", tenant, revision
                )

        task = asyncio.create_task(build())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
