"""The packs' computations on a revision's projection, inside worker processes.

A projection is a revision's snapshot mapped in (`graph.load`) with its
adjacency rows as views: nothing is copied or built when a worker takes a
revision up. The whole-graph packs are computed once per revision here
(`materialize`: degree, exact PageRank, communities on the whole graph,
betweenness with its bound) and stored with the revision by the server; the
parameterised packs (`run_pack`: paths, neighbourhoods, personalised PageRank)
run per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from servers.analytics import algorithms
from servers.analytics.graph import Snapshot, heavy_tailed
from servers.analytics.packs import (
    BETWEENNESS_DELTA,
    BETWEENNESS_EPSILON,
    DAMPING,
    PAGERANK_TOLERANCE,
    PUSH_MAX_WORK,
    PUSH_TOLERANCE,
)
from servers.analytics.rankings import Materialized, Scored, ranked


@dataclass(frozen=True)
class Adjacency:
    """Compressed sparse rows: node v's neighbours are `heads[offsets[v]:offsets[v + 1]]`."""

    offsets: np.ndarray  # int64, one more than there are nodes
    heads: np.ndarray  # int32
    weights: np.ndarray  # float64, aligned with heads

    def expand(self, frontier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tail, position) of every edge out of `frontier`; positions index heads/weights."""
        starts = self.offsets[frontier]
        counts = self.offsets[frontier + 1] - starts
        before = np.cumsum(counts) - counts
        positions = np.arange(int(counts.sum())) + np.repeat(starts - before, counts)
        return np.repeat(frontier, counts), positions


@dataclass(frozen=True)
class Projection:
    """A revision's snapshot with its adjacency rows, out and in, and out-strengths."""

    snapshot: Snapshot
    out: Adjacency
    incoming: Adjacency
    out_strength: np.ndarray
    #: What runs derive from the graph alone, made once (personalised PageRank's blocks).
    derived: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, snapshot: Snapshot) -> Projection:
        """Views over a snapshot's arrays (only the out-strengths are computed)."""
        return cls(
            snapshot,
            Adjacency(snapshot.out_offsets, snapshot.targets, snapshot.weights),
            Adjacency(snapshot.in_offsets, snapshot.in_sources, snapshot.in_weights),
            np.bincount(snapshot.sources, snapshot.weights, snapshot.nodes),
        )

    @property
    def memory_bytes(self) -> int:
        """Bytes of the projection's arrays (mapped from its files, or computed)."""
        return self.snapshot.nbytes + int(self.out_strength.nbytes)

    def csr(self, rows: Adjacency) -> algorithms.Csr:
        """Rows as the algorithms take them."""
        return algorithms.Csr(rows.offsets, rows.heads, rows.weights)

    def sweep_blocks(self) -> list[algorithms.PushBlock]:
        """Personalised PageRank's sweep blocks of this graph (made on first use)."""
        if "sweep_blocks" not in self.derived:
            self.derived["sweep_blocks"] = algorithms.sweep_blocks(
                self.csr(self.out), self.out_strength, DAMPING
            )
        blocks: list[algorithms.PushBlock] = self.derived["sweep_blocks"]
        return blocks

    def degrees(self) -> np.ndarray:
        """Relationships in and out, per entity."""
        return np.diff(self.out.offsets) + np.diff(self.incoming.offsets)

    def position(self, entity_id: str, parameter: str) -> int:
        """The index of an entity id, or LookupError naming the parameter."""
        found = self.snapshot.index(entity_id)
        if found is None:
            raise LookupError(f"{parameter}: no entity {entity_id!r} in this graph")
        return found


class PackOutput(TypedDict, total=False):
    """What a parameterised pack computes: ranked entities, or a path; and its accuracy."""

    entities: list[Scored]
    path: list[str]
    path_cost: float
    accuracy: dict[str, Any]


class PackResult(PackOutput):
    """A pack's output as a worker answers it: with its run time and the projection's size."""

    elapsed_ms: float
    projection_bytes: int


# -- whole-graph packs, once per revision ----------------------------------------------


def _aligned(snapshot: Snapshot, previous: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The previous revision's scores moved onto this revision's entities (0 for new ones)."""
    previous_ids, previous_scores = previous
    order = np.argsort(previous_ids, kind="stable")
    known, scores = previous_ids[order], previous_scores[order]
    at = np.minimum(np.searchsorted(known, snapshot.ids), max(len(known) - 1, 0))
    if len(known) == 0:
        return np.zeros(snapshot.nodes)
    hit = known[at] == snapshot.ids
    return np.where(hit, scores[at], 0.0)


def materialize(
    projection: Projection,
    previous_pagerank: tuple[np.ndarray, np.ndarray] | None,
    *,
    seed: int,
    threads: int = 2,
) -> list[Materialized]:
    """Every whole-graph pack's ranking on the projection, exactly (betweenness: bounded).

    Args:
        projection: The revision's projection.
        previous_pagerank: The previous revision's ranked ids and PageRank scores, to
            start from (a small change since), or None to start cold.
        seed: Seeds the randomised algorithms (Leiden, KADABRA): the same revision
            gives the same results.
        threads: Threads the algorithms may use.
    """
    snapshot = projection.snapshot
    ids = snapshot.ids
    done: list[Materialized] = []

    def timed(pack_id: str, compute: Callable[[], tuple[Any, dict[str, Any]]]) -> None:
        started = time.perf_counter()
        ranking, summary = compute()
        summary["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
        done.append(Materialized(pack_id, ranking.encode(), summary))

    degrees = projection.degrees().astype(np.float64)

    def degree() -> tuple[Any, dict[str, Any]]:
        return ranked(ids, degrees), {"method": "degree", "exact": True}

    def pagerank() -> tuple[Any, dict[str, Any]]:
        start = None if previous_pagerank is None else _aligned(snapshot, previous_pagerank)
        found = algorithms.pagerank(
            projection.csr(projection.incoming),
            projection.out_strength,
            damping=DAMPING,
            tolerance=PAGERANK_TOLERANCE,
            start=start,
            threads=threads,
        )
        return ranked(ids, found.scores), {
            "method": found.method,
            "exact": True,
            "l1_error_bound": found.l1_error_bound,
            "iterations": found.iterations,
            "warm_started": start is not None,
        }

    def betweenness() -> tuple[Any, dict[str, Any]]:
        found = algorithms.betweenness(
            snapshot.nodes,
            np.asarray(snapshot.sources),
            np.asarray(snapshot.targets),
            epsilon=BETWEENNESS_EPSILON,
            delta=BETWEENNESS_DELTA,
            seed=seed,
            threads=threads,
        )
        return ranked(ids, found.scores), {
            "method": found.method,
            "exact": found.exact,
            "epsilon": found.epsilon,
            "delta": found.delta,
        }

    def communities() -> tuple[Any, dict[str, Any]]:
        partition = algorithms.communities(
            snapshot.nodes,
            np.asarray(snapshot.sources),
            np.asarray(snapshot.targets),
            np.asarray(snapshot.weights),
            seed=seed,
        )
        return ranked(ids, degrees, partition.membership), {
            "method": "leiden",
            "exact": False,  # Leiden is a heuristic: its modularity is what to judge it by
            "modularity": partition.modularity,
            "communities": partition.count,
        }

    timed("analytics.degreeTop:v1", degree)
    timed("analytics.pagerankTop:v1", pagerank)
    timed("analytics.communities:v1", communities)
    timed("analytics.betweennessTop:v1", betweenness)
    return done


# -- parameterised packs, per call -------------------------------------------------------


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    if k == 0:
        return np.array([], dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k]
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def run_pack(projection: Projection, pack_id: str, params: Mapping[str, Any]) -> PackOutput:
    """Run one parameterised pack.

    Raises:
        LookupError: An entity parameter names no entity of the graph, or the pack is
            not one that runs per call.
    """
    snapshot = projection.snapshot
    top_k = int(params.get("top_k", 0))
    if pack_id == "analytics.shortestPath:v1":
        source = projection.position(str(params["source_id"]), "source_id")
        target = projection.position(str(params["target_id"]), "target_id")
        path, cost = hop_limited_path(projection.out, source, target, int(params["max_hops"]))
        return {
            "path": snapshot.entities(np.asarray(path, dtype=np.int64)),
            "path_cost": cost if path else 0.0,
            "accuracy": {"method": "hop_limited_bellman_ford", "exact": True},
        }
    if pack_id == "analytics.neighborhood:v1":
        source = projection.position(str(params["source_id"]), "source_id")
        return {
            "entities": _neighborhood(projection, source, int(params["max_hops"]), top_k),
            "accuracy": {"method": "breadth_first", "exact": True},
        }
    if pack_id == "analytics.personalizedPagerank:v1":
        seeds = np.array(
            sorted({projection.position(entity, "seed_ids") for entity in params["seed_ids"]}),
            dtype=np.int64,
        )
        found = algorithms.personalized_pagerank(
            projection.csr(projection.out),
            projection.out_strength,
            seeds,
            damping=DAMPING,
            tolerance=PUSH_TOLERANCE,
            max_work=PUSH_MAX_WORK,
            blocks=projection.sweep_blocks(),
        )
        chosen = _top(found.scores, top_k)
        best = found.nodes[chosen]
        return {
            "entities": [
                {"entity_id": entity, "score": score}
                for entity, score in zip(
                    snapshot.entities(best), found.scores[chosen].tolist(), strict=True
                )
            ],
            "accuracy": {
                "method": "forward_push",
                "exact": False,
                "l1_error_bound": found.l1_error_bound,
            },
        }
    raise LookupError(f"{pack_id} is not a pack that runs per call")


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
    snapshot = projection.snapshot
    seen = np.zeros(snapshot.nodes, dtype=bool)
    seen[source] = True
    frontier = np.array([source], dtype=np.int64)
    found: list[Scored] = []
    for level in range(1, hops + 1):
        reached = np.unique(
            np.concatenate(
                [
                    rows.heads[rows.expand(frontier)[1]]
                    for rows in (projection.out, projection.incoming)
                ]
            )
        )
        frontier = reached[~seen[reached]].astype(np.int64)
        if frontier.size == 0:
            break
        seen[frontier] = True
        kept = frontier[: limit - len(found)]
        found += [
            {"entity_id": entity, "score": float(level)} for entity in snapshot.entities(kept)
        ]
        if len(found) >= limit:
            break
    return found


def calibrate() -> float:
    """Seconds per work unit on this machine: a reference PageRank (igraph's PRPACK), timed.

    The cost model's units were fitted against this reference (bench/analytics_estimates.py).
    """
    import igraph  # noqa: PLC0415 - only the calibration and the algorithms need it

    sources, targets, weights = heavy_tailed(20_000, 100_000, seed=42)
    graph = igraph.Graph(
        n=20_000, edges=np.column_stack([sources, targets]).tolist(), directed=True
    )
    graph.es["weight"] = weights
    graph.pagerank(damping=DAMPING, weights="weight")  # warm
    started = time.perf_counter()
    graph.pagerank(damping=DAMPING, weights="weight")
    return (time.perf_counter() - started) / (20_000 + len(sources))
