"""Graph snapshots: a tenant's graph at one revision as arrays, persisted per revision.

A snapshot holds the entity ids (sorted, as UTF-8 bytes; an entity's index is
its position) and the relationships as edge arrays sorted by source (so they
are also the out-adjacency rows), with the in-adjacency rows beside them. It is
read once from the store when a revision is materialized (`snapshots`), written to
`var/analytics/<tenant>/<revision>/` as one `.npy` file per array, and mapped
back in by any process (`load` memory-maps them: a restarted server has the
projection back in milliseconds, and the page cache is shared by its workers).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Version of the files' layout; a directory of another version is rebuilt.
LAYOUT = 1


@dataclass(frozen=True)
class Snapshot:
    """One tenant graph revision, as arrays (possibly memory-mapped, read-only)."""

    revision: int
    ids: np.ndarray  # entity ids, UTF-8 bytes (numpy "S"), sorted
    sources: np.ndarray  # int32 indexes into ids, ascending
    targets: np.ndarray  # int32
    weights: np.ndarray  # float64
    out_offsets: np.ndarray  # int64: node v's out-edges are positions out_offsets[v]:[v + 1]
    in_offsets: np.ndarray  # int64: node v's in-edges are in_sources[in_offsets[v]:[v + 1]]
    in_sources: np.ndarray  # int32
    in_weights: np.ndarray  # float64

    @property
    def nodes(self) -> int:
        """Number of entities."""
        return len(self.ids)

    @property
    def edges(self) -> int:
        """Number of relationships."""
        return len(self.sources)

    @property
    def nbytes(self) -> int:
        """Bytes of all its arrays."""
        return sum(int(array.nbytes) for array in self._arrays().values())

    def entity(self, index: int) -> str:
        """The id of the entity at `index`."""
        return bytes(self.ids[index]).decode()

    def entities(self, indexes: np.ndarray) -> list[str]:
        """The ids of the entities at `indexes`."""
        return [bytes(value).decode() for value in self.ids[indexes]]

    def index(self, entity_id: str) -> int | None:
        """The position of an entity id, or None if the graph has no such entity."""
        key = entity_id.encode()
        at = int(np.searchsorted(self.ids, key))
        if at < self.nodes and bytes(self.ids[at]) == key:
            return at
        return None

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "ids": self.ids,
            "sources": self.sources,
            "targets": self.targets,
            "weights": self.weights,
            "out_offsets": self.out_offsets,
            "in_offsets": self.in_offsets,
            "in_sources": self.in_sources,
            "in_weights": self.in_weights,
        }

    @classmethod
    def of(
        cls,
        revision: int,
        ids: np.ndarray,
        sources: np.ndarray,
        targets: np.ndarray,
        weights: np.ndarray,
    ) -> Snapshot:
        """A snapshot of entity ids (str, in any order) and edges between their positions."""
        encoded = np.asarray([str(entity).encode() for entity in ids.tolist()], dtype=bytes)
        if encoded.size == 0:
            encoded = np.zeros(0, dtype="S1")
        nodes = len(encoded)
        if nodes > 1 and not bool((encoded[:-1] <= encoded[1:]).all()):  # sort, and renumber
            order = np.argsort(encoded, kind="stable")
            renumbered = np.empty(nodes, dtype=np.int64)
            renumbered[order] = np.arange(nodes)
            encoded = encoded[order]
            sources, targets = renumbered[sources], renumbered[targets]
        order = np.argsort(sources, kind="stable")
        sources = np.asarray(sources, dtype=np.int32)[order]
        targets = np.asarray(targets, dtype=np.int32)[order]
        weights = np.asarray(weights, dtype=np.float64)[order]
        inward = np.argsort(targets, kind="stable")
        return cls(
            revision,
            encoded,
            sources,
            targets,
            weights,
            _offsets(sources, nodes),
            _offsets(targets[inward], nodes),
            sources[inward],
            weights[inward],
        )


def _offsets(rows: np.ndarray, nodes: int) -> np.ndarray:
    offsets = np.zeros(nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=nodes), out=offsets[1:])
    return offsets


def snapshot_path(directory: Path, tenant: uuid.UUID, revision: int) -> Path:
    """Where a revision's snapshot lives (a directory)."""
    return directory / str(tenant) / str(revision)


def revisions(directory: Path, tenant: uuid.UUID | str) -> list[int]:
    """The revisions of the tenant's complete snapshots here, oldest first."""
    tenant_directory = directory / str(tenant)
    if not tenant_directory.is_dir():
        return []
    return sorted(
        int(path.name)
        for path in tenant_directory.iterdir()
        if path.name.isdigit() and (path / "meta.json").exists()
    )


def prune(directory: Path, tenant: uuid.UUID, keep: int) -> None:
    """Delete the tenant's snapshots older than `keep - 1`.

    The one before `keep` stays for runs in flight and stale reads; workers keep
    what they mapped (an unlinked file stays readable while mapped).
    """
    for revision in revisions(directory, tenant):
        if revision < keep - 1:
            shutil.rmtree(snapshot_path(directory, tenant, revision), ignore_errors=True)


def save(snapshot: Snapshot, path: Path) -> None:
    """Write the snapshot's directory atomically (a reader never sees half of it).

    Snapshots hold a tenant's entity ids: their directories are 0700, the files 0600.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.parent.chmod(0o700)
    # Not a revision's name while it is written: readers and pruning look for those.
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    for name, array in snapshot._arrays().items():
        descriptor = os.open(staging / f"{name}.npy", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            np.save(file, np.ascontiguousarray(array), allow_pickle=False)
    meta = {"layout": LAYOUT, "revision": snapshot.revision, "nodes": snapshot.nodes}
    descriptor = os.open(staging / "meta.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(meta, file)
    if path.exists():  # a rebuild of the same revision: the old one goes
        shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)


def _mapped(file: Path) -> np.ndarray:
    """A saved array, memory-mapped (an empty one cannot be: it is read)."""
    try:
        array: np.ndarray = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError:  # numpy cannot map a file with no data after its header
        array = np.load(file, allow_pickle=False)
    return array


def load(path: Path) -> Snapshot:
    """Map a saved snapshot back in (read-only memory maps: no copy, no parsing).

    Raises:
        OSError: There is no complete snapshot of the current layout there.
    """
    try:
        meta = json.loads((path / "meta.json").read_text())
    except ValueError as error:
        raise OSError(f"{path}: unreadable snapshot") from error
    if meta.get("layout") != LAYOUT:
        raise OSError(f"{path}: a snapshot of another layout")
    arrays = {
        name: _mapped(path / f"{name}.npy")
        for name in (
            "ids",
            "sources",
            "targets",
            "weights",
            "out_offsets",
            "in_offsets",
            "in_sources",
            "in_weights",
        )
    }
    return Snapshot(revision=int(meta["revision"]), **arrays)


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
