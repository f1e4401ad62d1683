"""A realistic sample tenancy: a heavy-tailed, typed graph, deterministic from a seed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import numpy as np
from intelgraph.analytics.v1 import analytics_service_pb2 as pb

from servers.analytics.graph import heavy_tailed
from servers.analytics.imports import import_graph
from servers.db import Database

ENTITY_TYPES = ("person", "organization", "account", "device", "location")
RELATIONSHIP_TYPES = ("knows", "owns", "transfers", "located_at")
BATCH = 5_000


async def _batches(nodes: int, edges: int, seed: int) -> AsyncIterator[pb.ImportGraphRequest]:
    rng = np.random.default_rng(seed + 1)
    kinds = rng.integers(0, len(ENTITY_TYPES), size=nodes)
    for start in range(0, nodes, BATCH):
        yield pb.ImportGraphRequest(
            entities=[
                pb.Entity(id=f"e{index}", type=ENTITY_TYPES[kinds[index]], label=f"Entity {index}")
                for index in range(start, min(nodes, start + BATCH))
            ]
        )
    sources, targets, weights = heavy_tailed(nodes, edges, seed)
    kinds = rng.integers(0, len(RELATIONSHIP_TYPES), size=len(sources))
    for start in range(0, len(sources), BATCH):
        yield pb.ImportGraphRequest(
            relationships=[
                pb.Relationship(
                    id=f"r{index}",
                    source_id=f"e{sources[index]}",
                    target_id=f"e{targets[index]}",
                    type=RELATIONSHIP_TYPES[kinds[index]],
                    weight=float(weights[index]),
                )
                for index in range(start, min(len(sources), start + BATCH))
            ]
        )


async def seed_tenant(
    database: Database,
    tenant: uuid.UUID,
    nodes: int,
    edges: int,
    seed: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Import the sample graph into `tenant` (idempotent: the same ids every time).

    Args:
        database: The store.
        tenant: Whose graph it becomes.
        nodes: Entities.
        edges: Relationships (heavy-tailed degrees).
        seed: The same seed, the same graph.
        progress: Told how many more entities and relationships were read, batch by batch.

    Returns:
        The graph revision the import made.
    """

    async def counted() -> AsyncIterator[pb.ImportGraphRequest]:
        async for batch in _batches(nodes, edges, seed):
            yield batch
            if progress is not None:
                progress(len(batch.entities) + len(batch.relationships))

    imported = await import_graph(database, tenant, counted())
    return imported.revision
