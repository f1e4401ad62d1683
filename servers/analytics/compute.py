"""The packs' algorithms on a projection (igraph), run inside a pack worker process.

A projection is built once per tenant graph revision; what a pack derives from
the whole graph (the PageRank vector, degrees, a sample, a partition) is kept
with it, so later runs at that revision only select from it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import igraph
import numpy as np

from servers.analytics.graph import Snapshot, heavy_tailed
from servers.analytics.packs import BETWEENNESS_PIVOTS

DAMPING = 0.85


@dataclass
class Projection:
    """A revision's graph in igraph, its id index, and what packs derived from it."""

    snapshot: Snapshot
    graph: igraph.Graph
    index: dict[str, int]
    derived: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Snapshot) -> Projection:
        """Build the projection of a snapshot (directed, weighted)."""
        graph = igraph.Graph(
            n=snapshot.nodes,
            edges=np.column_stack([snapshot.sources, snapshot.targets]),
            directed=True,
        )
        graph.es["weight"] = snapshot.weights
        index = {entity: position for position, entity in enumerate(snapshot.ids.tolist())}
        return cls(snapshot, graph, index)

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
        degrees: np.ndarray = self.memoized(
            ("degree",), lambda: np.asarray(self.graph.degree(), dtype=np.int64)
        )
        return degrees

    def sample(self, ratio: float) -> igraph.Graph:
        """The `ratio` of edges with the highest endpoint-degree product, all nodes kept."""

        def build() -> igraph.Graph:
            degree = self.degrees().astype(np.float64)
            snapshot = self.snapshot
            keep = max(1, int(np.ceil(snapshot.edges * ratio)))
            score = degree[snapshot.sources] * degree[snapshot.targets]
            chosen = (
                np.argpartition(-score, keep - 1)[:keep]
                if keep < snapshot.edges
                else np.arange(snapshot.edges)
            )
            sampled = igraph.Graph(
                n=snapshot.nodes,
                edges=np.column_stack([snapshot.sources[chosen], snapshot.targets[chosen]]),
                directed=True,
            )
            sampled.es["weight"] = snapshot.weights[chosen]
            return sampled

        return self.memoized(("sample", ratio), build)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    if k == 0:
        return np.array([], dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k]
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def _ranked(projection: Projection, scores: np.ndarray, k: int) -> list[dict[str, Any]]:
    ids = projection.snapshot.ids
    return [{"entity_id": str(ids[i]), "score": float(scores[i])} for i in _top(scores, k)]


def pagerank(graph: igraph.Graph) -> np.ndarray:
    """Weighted PageRank (PRPACK), damping 0.85."""
    return np.asarray(graph.pagerank(damping=DAMPING, weights="weight"), dtype=np.float64)


def run_pack(
    projection: Projection, pack_id: str, params: Mapping[str, Any], sample: float
) -> dict[str, Any]:
    """Run one pack; `sample` is the share of edges to keep (1.0: the whole graph).

    Raises:
        LookupError: An entity parameter names no entity of the graph.
    """
    graph = projection.graph if sample >= 1.0 else projection.sample(sample)
    key = (pack_id, sample)
    if pack_id == "analytics.pagerankTop:v1":
        scores = projection.memoized(key, lambda: pagerank(graph))
        return {"entities": _ranked(projection, scores, int(params["top_k"]))}
    if pack_id == "analytics.degreeTop:v1":
        return {
            "entities": _ranked(
                projection, projection.degrees().astype(np.float64), int(params["top_k"])
            )
        }
    if pack_id == "analytics.betweennessTop:v1":
        return {
            "entities": _ranked(
                projection,
                projection.memoized(key, lambda: _betweenness(graph, projection)),
                int(params["top_k"]),
            )
        }
    if pack_id == "analytics.communities:v1":
        membership, modularity = projection.memoized(key, lambda: _communities(graph))
        top = _top(projection.degrees().astype(np.float64), int(params["top_k"]))
        ids = projection.snapshot.ids
        return {
            "entities": [
                {
                    "entity_id": str(ids[i]),
                    "score": float(projection.degrees()[i]),
                    "community": int(membership[i]),
                }
                for i in top
            ],
            "modularity": modularity,
        }
    if pack_id == "analytics.shortestPath:v1":
        source = projection.position(str(params["source_id"]), "source_id")
        target = projection.position(str(params["target_id"]), "target_id")
        path, cost = hop_limited_path(projection.snapshot, source, target, int(params["max_hops"]))
        ids = projection.snapshot.ids
        return {"path": [str(ids[i]) for i in path], "path_cost": cost if path else 0.0}
    if pack_id == "analytics.neighborhood:v1":
        source = projection.position(str(params["source_id"]), "source_id")
        return {
            "entities": _neighborhood(
                projection, source, int(params["max_hops"]), int(params["top_k"])
            )
        }
    raise LookupError(f"no algorithm for {pack_id}")


def _betweenness(graph: igraph.Graph, projection: Projection) -> np.ndarray:
    """Betweenness (undirected) estimated from pivots, scaled to the whole graph.

    The pivots are half the highest-degree nodes and half a seeded random draw.
    """
    count = min(BETWEENNESS_PIVOTS, graph.vcount())
    hubs = np.argsort(-projection.degrees())[: count // 2]
    rest = np.setdiff1d(np.arange(graph.vcount()), hubs)
    rng = np.random.default_rng(projection.snapshot.revision)
    pivots = np.concatenate([hubs, rng.choice(rest, size=count - len(hubs), replace=False)])
    scores = np.asarray(
        graph.betweenness(directed=False, sources=pivots.tolist()), dtype=np.float64
    )
    scaled: np.ndarray = scores * (graph.vcount() / max(len(pivots), 1))
    return scaled


def _communities(graph: igraph.Graph) -> tuple[np.ndarray, float]:
    undirected = graph.as_undirected(mode="collapse", combine_edges="sum")
    partition = undirected.community_leiden(
        objective_function="modularity", weights="weight", n_iterations=-1
    )
    modularity = float(undirected.modularity(partition.membership, weights="weight"))
    return np.asarray(partition.membership, dtype=np.int64), modularity


def hop_limited_path(
    snapshot: Snapshot, source: int, target: int, max_hops: int
) -> tuple[list[int], float]:
    """The lightest path from `source` to `target` of at most `max_hops` relationships.

    Bellman-Ford cut after `max_hops` rounds, vectorised over the edge arrays;
    returns ([], inf) when no such path exists.
    """
    if source == target:
        return [source], 0.0
    distance = np.full(snapshot.nodes, np.inf)
    distance[source] = 0.0
    predecessors = []
    for _ in range(max_hops):
        candidate = distance[snapshot.sources] + snapshot.weights
        best = np.full(snapshot.nodes, np.inf)
        np.minimum.at(best, snapshot.targets, candidate)
        improved = best < distance
        predecessor = np.full(snapshot.nodes, -1, dtype=np.int64)
        if improved.any():
            winners = np.flatnonzero(
                improved[snapshot.targets] & (candidate == best[snapshot.targets])
            )
            predecessor[snapshot.targets[winners]] = snapshot.sources[winners]
        predecessor[~improved] = -2  # unchanged: keep the previous round's predecessor
        distance = np.where(improved, best, distance)
        predecessors.append(predecessor)
    if not np.isfinite(distance[target]):
        return [], float("inf")
    path, node = [target], target
    for predecessor in reversed(predecessors):
        if node == source:
            break
        step = predecessor[node]
        if step == -2:
            continue
        path.append(int(step))
        node = int(step)
    return list(reversed(path)), float(distance[target])


def _neighborhood(
    projection: Projection, source: int, hops: int, limit: int
) -> list[dict[str, Any]]:
    graph = projection.graph
    layers = graph.bfs(source, mode="all")
    order, starts = layers[0], layers[1]
    found: list[dict[str, Any]] = []
    ids = projection.snapshot.ids
    for level in range(1, hops + 1):
        if level >= len(starts) - 1:
            break
        for vertex in order[starts[level] : starts[level + 1]]:
            if len(found) == limit:
                return found
            found.append({"entity_id": str(ids[vertex]), "score": float(level)})
    return found


def calibrate() -> float:
    """Seconds per work unit on this machine: a reference PageRank, timed."""
    sources, targets, weights = heavy_tailed(20_000, 100_000, seed=42)
    graph = igraph.Graph(n=20_000, edges=np.column_stack([sources, targets]), directed=True)
    graph.es["weight"] = weights
    pagerank(graph)  # warm
    started = time.perf_counter()
    pagerank(graph)
    return (time.perf_counter() - started) / (20_000 + len(sources))
