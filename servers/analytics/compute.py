"""The packs' algorithms on a projection (igraph), run inside a pack worker process.

A projection is built once per tenant graph revision; what a pack derives from
the whole graph (the PageRank vector, degrees, a sample, a partition) is kept
with it, so later runs at that revision only select from it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import igraph
import numpy as np

from servers.analytics.graph import Snapshot, heavy_tailed
from servers.analytics.packs import BETWEENNESS_PIVOTS, sampler

DAMPING = 0.85


def igraph_graph(
    nodes: int,
    sources: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    directed: bool = True,
) -> igraph.Graph:
    """An igraph graph with a "weight" edge attribute.

    The edge list goes in as Python lists: igraph reads those about three times
    faster than numpy arrays.
    """
    graph = igraph.Graph(
        n=nodes, edges=np.column_stack([sources, targets]).tolist(), directed=directed
    )
    graph.es["weight"] = weights
    return graph


@dataclass(frozen=True)
class Adjacency:
    """Compressed sparse rows: node v's neighbours are `heads[offsets[v]:offsets[v + 1]]`."""

    offsets: np.ndarray  # int64, one more than there are nodes
    heads: np.ndarray  # int32
    weights: np.ndarray  # float64, aligned with heads

    @classmethod
    def of(cls, nodes: int, tails: np.ndarray, heads: np.ndarray, weights: np.ndarray) -> Adjacency:
        """The rows of the edges `tails[i] -> heads[i]`."""
        order = np.argsort(tails, kind="stable")
        offsets = np.zeros(nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(tails, minlength=nodes), out=offsets[1:])
        return cls(offsets, heads[order], weights[order])

    def expand(self, frontier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tail, position) of every edge out of `frontier`; positions index heads/weights."""
        starts = self.offsets[frontier]
        counts = self.offsets[frontier + 1] - starts
        before = np.cumsum(counts) - counts
        positions = np.arange(int(counts.sum())) + np.repeat(starts - before, counts)
        return np.repeat(frontier, counts), positions


def _resident_bytes() -> int:
    """This process's resident memory (Linux), or 0 where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Projection:
    """A revision's graph in igraph and as adjacency rows, its id index, and what packs derived.

    `memory_bytes` is the resident memory building it added to this process.
    """

    snapshot: Snapshot
    graph: igraph.Graph
    out: Adjacency
    both: Adjacency
    index: dict[str, int]
    memory_bytes: int = 0
    derived: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Snapshot) -> Projection:
        """Build the projection of a snapshot (directed, weighted)."""
        before = _resident_bytes()
        graph = igraph_graph(snapshot.nodes, snapshot.sources, snapshot.targets, snapshot.weights)
        sources, targets, weights = snapshot.sources, snapshot.targets, snapshot.weights
        projection = cls(
            snapshot,
            graph,
            out=Adjacency.of(snapshot.nodes, sources, targets, weights),
            both=Adjacency.of(
                snapshot.nodes,
                np.concatenate([sources, targets]),
                np.concatenate([targets, sources]),
                np.concatenate([weights, weights]),
            ),
            index={entity: position for position, entity in enumerate(snapshot.ids.tolist())},
        )
        projection.memory_bytes = max(0, _resident_bytes() - before)
        return projection

    def memoized(self, key: tuple[Any, ...], compute: Any) -> Any:
        """`compute()`, once per key for the life of the projection."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]

    def position(self, entity_id: str, parameter: str) -> int:
        """The index of an entity id, or LookupError naming the parameter."""
        if entity_id not in self.index:
            raise LookupError(f"{parameter}: no entity {entity_id!r} in this graph")
        return self.index[entity_id]

    def degrees(self) -> np.ndarray:
        """Relationships in and out, per entity."""
        degrees: np.ndarray = self.memoized(("degree",), lambda: np.diff(self.both.offsets))
        return degrees

    def sample_edges(self, sample: str) -> np.ndarray:
        """The edges (positions in the snapshot) the sampler `sample` keeps, e.g. "top_edges:20%".

        top_edges: the highest endpoint-degree products; random_edges: a uniform
        draw seeded by the revision. Either way, every node stays in the graph.
        """

        def choose() -> np.ndarray:
            name, ratio = sampler(sample)
            snapshot = self.snapshot
            keep = max(1, int(np.ceil(snapshot.edges * ratio)))
            if keep >= snapshot.edges:
                return np.arange(snapshot.edges)
            if name == "random_edges":
                rng = np.random.default_rng(snapshot.revision)
                return np.sort(rng.choice(snapshot.edges, size=keep, replace=False))
            degree = self.degrees().astype(np.float64)
            score = degree[snapshot.sources] * degree[snapshot.targets]
            chosen: np.ndarray = np.argpartition(-score, keep - 1)[:keep]
            return chosen

        chosen: np.ndarray = self.memoized(("sample", sample), choose)
        return chosen

    def graph_of(self, sample: str) -> igraph.Graph:
        """The whole graph (`sample` empty) or the sampled edges, as a directed igraph graph."""
        if not sample:
            return self.graph

        def build() -> igraph.Graph:
            chosen, snapshot = self.sample_edges(sample), self.snapshot
            return igraph_graph(
                snapshot.nodes,
                snapshot.sources[chosen],
                snapshot.targets[chosen],
                snapshot.weights[chosen],
            )

        graph: igraph.Graph = self.memoized(("sample-graph", sample), build)
        return graph


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    if k == 0:
        return np.array([], dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k]
    return candidates[np.lexsort((candidates, -scores[candidates]))]


class Scored(TypedDict):
    """One entity of a ranked answer (communities add the entity's community)."""

    entity_id: str
    score: float
    community: NotRequired[int]


class PackOutput(TypedDict, total=False):
    """What a pack computes: ranked entities, or a path, and for communities the modularity."""

    entities: list[Scored]
    path: list[str]
    path_cost: float
    modularity: float


class PackResult(PackOutput):
    """A pack's output as a worker answers it: with its run time and the projection's size."""

    elapsed_ms: float
    projection_bytes: int


def _ranked(projection: Projection, scores: np.ndarray, k: int) -> list[Scored]:
    ids = projection.snapshot.ids
    return [{"entity_id": str(ids[i]), "score": float(scores[i])} for i in _top(scores, k)]


def pagerank(graph: igraph.Graph) -> np.ndarray:
    """Weighted PageRank (PRPACK), damping 0.85."""
    return np.asarray(graph.pagerank(damping=DAMPING, weights="weight"), dtype=np.float64)


def run_pack(
    projection: Projection, pack_id: str, params: Mapping[str, Any], sample: str = ""
) -> PackOutput:
    """Run one pack on the whole graph, or on the sample `sample` (e.g. "top_edges:20%").

    Raises:
        LookupError: An entity parameter names no entity of the graph.
    """
    key = (pack_id, sample)
    top_k = int(params.get("top_k", 0))
    if pack_id == "analytics.pagerankTop:v1":
        graph = projection.graph_of(sample)
        return {
            "entities": _ranked(
                projection, projection.memoized(key, lambda: pagerank(graph)), top_k
            )
        }
    if pack_id == "analytics.degreeTop:v1":
        return {"entities": _ranked(projection, projection.degrees().astype(np.float64), top_k)}
    if pack_id == "analytics.betweennessTop:v1":
        graph = projection.graph_of(sample)
        scores = projection.memoized(key, lambda: betweenness(graph, projection))
        return {"entities": _ranked(projection, scores, top_k)}
    if pack_id == "analytics.communities:v1":
        membership, modularity = projection.memoized(
            key,
            lambda: communities(
                projection,
                projection.sample_edges(sample) if sample else np.arange(projection.snapshot.edges),
            ),
        )
        degrees = projection.degrees()
        ids = projection.snapshot.ids
        return {
            "entities": [
                {
                    "entity_id": str(ids[i]),
                    "score": float(degrees[i]),
                    "community": int(membership[i]),
                }
                for i in _top(degrees.astype(np.float64), top_k)
            ],
            "modularity": modularity,
        }
    if pack_id == "analytics.shortestPath:v1":
        source = projection.position(str(params["source_id"]), "source_id")
        target = projection.position(str(params["target_id"]), "target_id")
        path, cost = hop_limited_path(projection.out, source, target, int(params["max_hops"]))
        ids = projection.snapshot.ids
        return {"path": [str(ids[i]) for i in path], "path_cost": cost if path else 0.0}
    if pack_id == "analytics.neighborhood:v1":
        source = projection.position(str(params["source_id"]), "source_id")
        return {"entities": _neighborhood(projection, source, int(params["max_hops"]), top_k)}
    raise LookupError(f"no algorithm for {pack_id}")


def betweenness(graph: igraph.Graph, projection: Projection) -> np.ndarray:
    """Betweenness (undirected) estimated from pivots, scaled to the whole graph.

    The pivots are half the highest-degree nodes and half a seeded random draw.
    """
    count = min(BETWEENNESS_PIVOTS, graph.vcount())
    hubs = np.argsort(-projection.degrees(), kind="stable")[: count // 2]
    rest = np.setdiff1d(np.arange(graph.vcount()), hubs)
    rng = np.random.default_rng(projection.snapshot.revision)
    pivots = np.concatenate([hubs, rng.choice(rest, size=count - len(hubs), replace=False)])
    scores = np.asarray(
        graph.betweenness(directed=False, sources=pivots.tolist()), dtype=np.float64
    )
    scaled: np.ndarray = scores * (graph.vcount() / max(len(pivots), 1))
    return scaled


def communities(projection: Projection, chosen: np.ndarray) -> tuple[np.ndarray, float]:
    """Leiden (modularity, one iteration, seeded) on the undirected graph of `chosen` edges.

    Only entities the edges touch take part (isolated ones would dominate the run
    time of a sparse sample); the rest get community -1. The modularity is the
    partition's on the whole graph (entities outside the sample on their own), so
    sampled and full runs compare.
    """
    snapshot = projection.snapshot
    touched, ends = np.unique(
        np.concatenate([snapshot.sources[chosen], snapshot.targets[chosen]]), return_inverse=True
    )
    half = len(chosen)
    graph = igraph_graph(
        len(touched), ends[:half], ends[half:], snapshot.weights[chosen], directed=False
    )
    random.seed(snapshot.revision)  # igraph draws from Python's generator
    partition = graph.community_leiden(
        objective_function="modularity", weights="weight", n_iterations=1
    )
    membership = np.full(snapshot.nodes, -1, dtype=np.int64)
    membership[touched] = partition.membership
    return membership, modularity(snapshot, membership)


def modularity(snapshot: Snapshot, membership: np.ndarray) -> float:
    """Newman's modularity of a partition of the graph, relationships undirected and weighted.

    Entities in community -1 count as communities of their own.
    """
    total = float(snapshot.weights.sum())
    if total == 0:
        return 0.0
    labels = membership.copy()
    loose = labels < 0
    labels[loose] = labels.max(initial=-1) + 1 + np.arange(int(loose.sum()))
    sources, targets, weights = snapshot.sources, snapshot.targets, snapshot.weights
    inside = float(weights[labels[sources] == labels[targets]].sum())
    strength = np.bincount(sources, weights, snapshot.nodes) + np.bincount(
        targets, weights, snapshot.nodes
    )
    per_community = np.bincount(labels, strength)
    return inside / total - float(((per_community / (2 * total)) ** 2).sum())


def hop_limited_path(
    out: Adjacency, source: int, target: int, max_hops: int
) -> tuple[list[int], float]:
    """The lightest path from `source` to `target` of at most `max_hops` relationships.

    Bellman-Ford cut after `max_hops` rounds; each round relaxes only the edges
    out of the nodes the previous round improved. Returns ([], inf) when no such
    path exists.
    """
    if source == target:
        return [source], 0.0
    distance = np.full(len(out.offsets) - 1, np.inf)
    distance[source] = 0.0
    frontier = np.array([source], dtype=np.int64)
    rounds: list[tuple[np.ndarray, np.ndarray]] = []  # per round: improved nodes, predecessors
    for _ in range(max_hops):
        tails, positions = out.expand(frontier)
        heads = out.heads[positions]
        candidate = distance[tails] + out.weights[positions]
        order = np.lexsort((candidate, heads))
        first = np.ones(len(order), dtype=bool)
        first[1:] = heads[order[1:]] != heads[order[:-1]]
        best = order[first]  # the lightest candidate per head, heads ascending
        improved = best[candidate[best] < distance[heads[best]]]
        if improved.size == 0:
            break
        frontier = heads[improved].astype(np.int64)
        distance[frontier] = candidate[improved]
        rounds.append((frontier, tails[improved]))
    if not np.isfinite(distance[target]):
        return [], float("inf")
    path, node = [target], target
    for improved_nodes, predecessors in reversed(rounds):
        if node == source:
            break
        at = int(np.searchsorted(improved_nodes, node))
        if at < len(improved_nodes) and improved_nodes[at] == node:
            node = int(predecessors[at])
            path.append(node)
    return list(reversed(path)), float(distance[target])


def _neighborhood(projection: Projection, source: int, hops: int, limit: int) -> list[Scored]:
    """Breadth-first by hops in either direction, stopping once `limit` entities are found."""
    both, ids = projection.both, projection.snapshot.ids
    seen = np.zeros(projection.snapshot.nodes, dtype=bool)
    seen[source] = True
    frontier = np.array([source], dtype=np.int64)
    found: list[Scored] = []
    for level in range(1, hops + 1):
        _, positions = both.expand(frontier)
        reached = np.unique(both.heads[positions])
        frontier = reached[~seen[reached]].astype(np.int64)
        if frontier.size == 0:
            break
        seen[frontier] = True
        found += [
            {"entity_id": str(ids[vertex]), "score": float(level)}
            for vertex in frontier[: limit - len(found)]
        ]
        if len(found) >= limit:
            break
    return found


def calibrate() -> float:
    """Seconds per work unit on this machine: a reference PageRank, timed."""
    sources, targets, weights = heavy_tailed(20_000, 100_000, seed=42)
    graph = igraph_graph(20_000, sources, targets, weights)
    pagerank(graph)  # warm
    started = time.perf_counter()
    pagerank(graph)
    return (time.perf_counter() - started) / (20_000 + len(sources))
