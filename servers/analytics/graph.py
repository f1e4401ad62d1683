"""Graph snapshots: a tenant's graph at one revision as arrays, saved once, loaded by workers.

A snapshot holds the entity ids (sorted; an entity's index is its position)
and three edge arrays (source index, target index, weight). Built from the
store when a revision is first needed, written to `var/analytics/`, and read by
the pack workers with `numpy.load`; the igraph projection is built from it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servers.analytics import store
from servers.db import Database


@dataclass(frozen=True)
class Snapshot:
    """One tenant graph revision, as arrays."""

    revision: int
    ids: np.ndarray  # entity ids (str), sorted
    sources: np.ndarray  # int32 indexes into ids
    targets: np.ndarray  # int32
    weights: np.ndarray  # float64

    @property
    def nodes(self) -> int:
        """Number of entities."""
        return len(self.ids)

    @property
    def edges(self) -> int:
        """Number of relationships."""
        return len(self.sources)


def snapshot_path(directory: Path, tenant: uuid.UUID, revision: int) -> Path:
    """Where a revision's snapshot lives."""
    return directory / f"{tenant}-{revision}.npz"


def prune(directory: Path, tenant: uuid.UUID, keep: int) -> None:
    """Delete the tenant's snapshots older than `keep - 1`.

    The one before `keep` stays for runs in flight; workers keep what they loaded.
    """
    for path in directory.glob(f"{tenant}-*.npz"):
        revision = path.name.removeprefix(f"{tenant}-").removesuffix(".npz")
        if revision.isdigit() and int(revision) < keep - 1:
            path.unlink(missing_ok=True)


#: Rows fetched and converted at a time while building a snapshot (the event loop runs
#: other calls between batches).
SNAPSHOT_BATCH = 10_000


def _indexed(names: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """The entity ids in order, and each one's position among them."""
    ids = np.array(sorted(names), dtype=object)
    return ids, {entity: index for index, entity in enumerate(ids.tolist())}


async def build_snapshot(database: Database, tenant: uuid.UUID) -> Snapshot:
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

    return Snapshot(
        revision,
        ids,
        joined(sources, np.int32),
        joined(targets, np.int32),
        joined(weights, np.float64),
    )


def save(snapshot: Snapshot, path: Path) -> None:
    """Write atomically (a worker never reads half a file), readable by its owner only.

    Snapshots hold a tenant's entity ids: their directory is 0700, the files 0600.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Not named *.npz while it is written: readers and pruning glob for those.
    staging = path.with_name(path.name + ".partial")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        np.savez(
            file,
            revision=np.array([snapshot.revision]),
            ids=snapshot.ids.astype(str),
            sources=snapshot.sources,
            targets=snapshot.targets,
            weights=snapshot.weights,
        )
    staging.replace(path)


def load(path: Path) -> Snapshot:
    """Read a saved snapshot."""
    with np.load(path, allow_pickle=False) as arrays:
        return Snapshot(
            int(arrays["revision"][0]),
            arrays["ids"].astype(object),
            arrays["sources"],
            arrays["targets"],
            arrays["weights"],
        )


def heavy_tailed(
    nodes: int, edges: int, seed: int, mixing: float = 0.3, community_size: int = 500
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A deterministic graph with heavy-tailed degrees and communities (for demos, benchmarks).

    Each entity has a Zipf-like popularity (weight ∝ rank^-0.8 over a random
    permutation) and one of nodes // community_size communities. A relationship
    starts at a popular entity and ends, with probability 1 - mixing, at a popular
    entity of the same community, else at one anywhere; self-loops are dropped,
    weights are uniform in [0.1, 1).

    >>> sources, targets, weights = heavy_tailed(100, 500, seed=1)
    >>> bool((sources != targets).all()), len(sources) <= 500
    (True, True)
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, nodes + 1) ** 0.8
    popularity = popularity[rng.permutation(nodes)] / popularity.sum()
    drawn_edges = int(edges * 1.2) + 10
    sources = rng.choice(nodes, size=drawn_edges, p=popularity)
    targets = rng.choice(nodes, size=drawn_edges, p=popularity)
    community = rng.integers(0, max(1, nodes // community_size), size=nodes)
    grouped = np.argsort(community, kind="stable")  # entities, community by community
    cumulative = np.cumsum(popularity[grouped])
    first = np.searchsorted(community[grouped], np.arange(community.max() + 1))
    last = np.append(first[1:], nodes) - 1
    before = np.where(first > 0, cumulative[np.maximum(first - 1, 0)], 0.0)
    inside = np.flatnonzero(rng.random(drawn_edges) >= mixing)
    home = community[sources[inside]]
    drawn = before[home] + rng.random(len(inside)) * (cumulative[last[home]] - before[home])
    position = np.minimum(np.searchsorted(cumulative, drawn, side="right"), last[home])
    targets[inside] = grouped[position]
    keep = np.flatnonzero(sources != targets)[:edges]
    weights = rng.uniform(0.1, 1.0, size=len(keep))
    return sources[keep].astype(np.int32), targets[keep].astype(np.int32), weights
