"""The analytics algorithms (`servers.analytics.algorithms`) against networkx and igraph.

Graphs networkx ships (made directed both ways, with random weights) and random
ones: with dangling and isolated nodes, with parallel edges and a self-loop, and
heavy-tailed ones large enough to take the threaded and block-sweep paths. Every
input array is made read-only, as the memory-mapped snapshots are.
"""

from __future__ import annotations

import doctest
import random
from dataclasses import dataclass
from math import comb

import igraph
import networkx as nx
import numpy as np
import pytest
from numpy.typing import ArrayLike

from servers.analytics import algorithms
from servers.analytics.algorithms import (
    Csr,
    betweenness,
    communities,
    modularity,
    pagerank,
    personalized_pagerank,
)
from servers.analytics.graph import heavy_tailed

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Edges:
    """A directed weighted graph as the algorithms take it, and as networkx sees it."""

    nodes: int
    sources: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, nodes: int, sources: ArrayLike, targets: ArrayLike, weights: ArrayLike) -> Edges:
        return cls(
            nodes,
            _frozen(np.array(sources, dtype=np.int32)),
            _frozen(np.array(targets, dtype=np.int32)),
            _frozen(np.array(weights, dtype=np.float64)),
        )

    def incoming(self) -> Csr:
        return _read_only(Csr.of(self.nodes, self.targets, self.sources, self.weights))

    def outgoing(self) -> Csr:
        return _read_only(Csr.of(self.nodes, self.sources, self.targets, self.weights))

    def out_strength(self) -> np.ndarray:
        return _frozen(np.bincount(self.sources, self.weights, self.nodes))

    def networkx(self, *, directed: bool = True) -> nx.Graph:
        """networkx's view: parallel edges (undirected: either way) become one, weights added."""
        graph = nx.DiGraph() if directed else nx.Graph()
        graph.add_nodes_from(range(self.nodes))
        for u, v, w in zip(
            self.sources.tolist(), self.targets.tolist(), self.weights.tolist(), strict=True
        ):
            previous = graph.get_edge_data(u, v, {"weight": 0.0})["weight"]
            graph.add_edge(u, v, weight=previous + w)
        return graph

    def simple_undirected(self) -> nx.Graph:
        graph = self.networkx(directed=False)
        graph.remove_edges_from(list(nx.selfloop_edges(graph)))
        return graph


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _read_only(rows: Csr) -> Csr:
    return Csr(_frozen(rows.offsets), _frozen(rows.neighbours), _frozen(rows.weights))


def _both_ways(graph: nx.Graph, seed: int) -> Edges:
    """Each edge of a networkx graph in both directions, each with its own random weight."""
    index = {node: position for position, node in enumerate(graph.nodes)}
    rng = np.random.default_rng(seed)
    pairs = [(index[u], index[v]) for u, v in graph.edges]
    sources = [u for u, v in pairs] + [v for u, v in pairs]
    targets = [v for u, v in pairs] + [u for u, v in pairs]
    return Edges.of(len(index), sources, targets, rng.uniform(0.1, 1.0, len(sources)))


def _random_directed(nodes: int, edges: int, seed: int) -> Edges:
    graph = nx.gnm_random_graph(nodes, edges, seed=seed, directed=True)
    rng = np.random.default_rng(seed)
    sources, targets = zip(*graph.edges, strict=True)
    return Edges.of(nodes, sources, targets, rng.uniform(0.1, 1.0, edges))


def _with_dangling_and_isolated() -> Edges:
    """A random graph whose first 30 nodes have no out-edges and last 20 no edges at all."""
    rng = np.random.default_rng(11)
    sources = rng.integers(30, 180, 700)
    targets = rng.integers(0, 180, 700)
    keep = sources != targets
    return Edges.of(200, sources[keep], targets[keep], rng.uniform(0.1, 1.0, int(keep.sum())))


def _with_parallel_edges_and_a_self_loop() -> Edges:
    rng = np.random.default_rng(12)
    sources = rng.integers(0, 60, 300)
    targets = rng.integers(0, 60, 300)
    keep = sources != targets
    sources = np.concatenate([sources[keep], sources[keep][:40], [7]])  # 40 doubled, 7 -> 7
    targets = np.concatenate([targets[keep], targets[keep][:40], [7]])
    return Edges.of(60, sources, targets, rng.uniform(0.1, 1.0, len(sources)))


def _heavy_tailed(nodes: int, edges: int, seed: int) -> Edges:
    return Edges.of(nodes, *heavy_tailed(nodes, edges, seed=seed))


GRAPHS = {
    "karate": _both_ways(nx.karate_club_graph(), 1),
    "les_miserables": _both_ways(nx.les_miserables_graph(), 2),
    "florentine": _both_ways(nx.florentine_families_graph(), 3),
    "davis_southern_women": _both_ways(nx.davis_southern_women_graph(), 4),
    "random": _random_directed(300, 1500, 5),
    "dangling_and_isolated": _with_dangling_and_isolated(),
    "parallel_and_self_loop": _with_parallel_edges_and_a_self_loop(),
}


def _vector(scores: dict[int, float], nodes: int) -> np.ndarray:
    return np.array([scores[node] for node in range(nodes)])


def _networkx_pagerank(edges: Edges, seeds: list[int] | None = None) -> np.ndarray:
    personalization = None if seeds is None else dict.fromkeys(seeds, 1.0)
    found = nx.pagerank(
        edges.networkx(),
        alpha=0.85,
        personalization=personalization,
        weight="weight",
        tol=1e-16,
        max_iter=100_000,
    )
    return _vector(found, edges.nodes)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(algorithms).failed == 0


def test_rows_keep_edge_order_within_a_row() -> None:
    rows = Csr.of(4, np.array([2, 0, 2, 0]), np.array([1, 3, 0, 2]), np.array([1.0, 2, 3, 4]))
    assert rows.nodes == 4
    assert rows.offsets.tolist() == [0, 2, 2, 4, 4]
    assert rows.neighbours.tolist() == [3, 2, 1, 0]
    assert rows.weights.tolist() == [2.0, 4.0, 1.0, 3.0]


# -- PageRank ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
def test_pagerank_is_within_its_certified_bound_of_networkx(name: str) -> None:
    edges = GRAPHS[name]
    found = pagerank(edges.incoming(), edges.out_strength())
    reference = _networkx_pagerank(edges)
    assert found.method == "power_iteration"
    assert 0 < found.l1_error_bound <= 1e-7
    assert np.abs(found.scores - reference).sum() <= found.l1_error_bound + 1e-12
    assert found.scores.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.argsort(-found.scores)[:10].tolist() == np.argsort(-reference)[:10].tolist()


@pytest.mark.parametrize("tolerance", [1e-4, 1e-10])
def test_pagerank_stops_at_the_tolerance_asked(tolerance: float) -> None:
    edges = GRAPHS["les_miserables"]
    found = pagerank(edges.incoming(), edges.out_strength(), tolerance=tolerance)
    reference = _networkx_pagerank(edges)
    assert found.l1_error_bound <= tolerance
    assert np.abs(found.scores - reference).sum() <= found.l1_error_bound + 1e-12


def test_pagerank_splits_large_graphs_over_threads_to_the_same_vector() -> None:
    edges = _heavy_tailed(50_000, 250_000, seed=3)
    assert len(edges.sources) >= algorithms.PARALLEL_MIN_EDGES
    one = pagerank(edges.incoming(), edges.out_strength(), threads=1)
    two = pagerank(edges.incoming(), edges.out_strength(), threads=2)
    assert one.iterations == two.iterations
    assert np.abs(one.scores - two.scores).sum() <= 1e-12
    converged = pagerank(edges.incoming(), edges.out_strength(), tolerance=1e-13, threads=1)
    assert np.abs(two.scores - converged.scores).sum() <= two.l1_error_bound + 1e-13


def test_a_warm_start_converges_to_the_same_vector_in_fewer_iterations() -> None:
    edges = GRAPHS["random"]
    cold = pagerank(edges.incoming(), edges.out_strength())
    reference = _networkx_pagerank(edges)
    rng = np.random.default_rng(0)
    previous = reference * rng.uniform(0.95, 1.05, edges.nodes) * 3  # need not sum to 1
    previous[:5] = [0.0, -0.01, 0.0, np.nan, 0.0]  # negatives and NaN count as 0
    previous.setflags(write=False)
    warm = pagerank(edges.incoming(), edges.out_strength(), start=previous)
    assert warm.iterations < cold.iterations
    assert np.abs(warm.scores - reference).sum() <= warm.l1_error_bound + 1e-12
    zeros = pagerank(edges.incoming(), edges.out_strength(), start=np.zeros(edges.nodes))
    assert np.array_equal(zeros.scores, cold.scores)  # nothing to start from: uniform


def test_pagerank_refuses_what_it_cannot_compute() -> None:
    edges = GRAPHS["karate"]
    with pytest.raises(ValueError, match="damping"):
        pagerank(edges.incoming(), edges.out_strength(), damping=1.0)
    with pytest.raises(ValueError, match="out_strength"):
        pagerank(edges.incoming(), edges.out_strength()[1:])
    with pytest.raises(ValueError, match="start"):
        pagerank(edges.incoming(), edges.out_strength(), start=np.ones(3))
    empty = pagerank(
        Csr.of(0, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)), np.zeros(0)
    )
    assert len(empty.scores) == 0


# -- personalised PageRank ---------------------------------------------------------------


def _seeded_vector(found: algorithms.Seeded, nodes: int) -> np.ndarray:
    vector = np.zeros(nodes)
    vector[found.nodes] = found.scores
    return vector


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("seed_count", [1, 3])
def test_personalized_pagerank_is_within_its_bound_of_networkx(name: str, seed_count: int) -> None:
    edges = GRAPHS[name]
    seeds = np.random.default_rng(seed_count).choice(
        min(edges.nodes, 180), seed_count, replace=False
    )
    found = personalized_pagerank(edges.outgoing(), edges.out_strength(), seeds)
    reference = _networkx_pagerank(edges, seeds.tolist())
    ours = _seeded_vector(found, edges.nodes)
    assert found.l1_error_bound <= 1e-4  # small graphs reach the tolerance
    # The estimate is the exact vector less the residual's PageRank: below it everywhere,
    # by exactly the residual's mass in all.
    assert np.all(ours <= reference + 1e-12)
    assert np.abs(ours - reference).sum() == pytest.approx(found.l1_error_bound, abs=1e-10)
    assert np.all(found.scores > 0)
    assert np.all(np.diff(found.nodes) > 0)


def test_personalized_pagerank_from_a_dangling_seed() -> None:
    edges = GRAPHS["dangling_and_isolated"]
    seeds = np.array([3, 40])  # node 3 has no out-edges: its walks restart at the seeds
    assert edges.out_strength()[3] == 0
    found = personalized_pagerank(edges.outgoing(), edges.out_strength(), seeds, tolerance=1e-9)
    reference = _networkx_pagerank(edges, [3, 40])
    assert found.l1_error_bound <= 1e-9
    assert np.abs(_seeded_vector(found, edges.nodes) - reference).sum() <= 1e-9 + 1e-12
    alone = personalized_pagerank(edges.outgoing(), edges.out_strength(), np.array([3, 3]))
    assert alone.nodes.tolist() == [3]  # a seed alone with itself keeps all of its rank
    assert alone.scores[0] == pytest.approx(1.0, abs=1e-4)


def test_an_exhausted_budget_reports_the_mass_still_missing() -> None:
    edges = GRAPHS["les_miserables"]
    seeds = np.array([11])
    tight = personalized_pagerank(edges.outgoing(), edges.out_strength(), seeds, max_work=500)
    assert tight.edges_scanned <= 500
    assert tight.l1_error_bound > 1e-4
    reference = _networkx_pagerank(edges, [11])
    ours = _seeded_vector(tight, edges.nodes)
    assert np.abs(ours - reference).sum() == pytest.approx(tight.l1_error_bound, abs=1e-10)
    more = personalized_pagerank(edges.outgoing(), edges.out_strength(), seeds, max_work=5_000)
    assert more.l1_error_bound < tight.l1_error_bound


def test_personalized_pagerank_sweeps_large_graphs_block_by_block() -> None:
    edges = _heavy_tailed(20_000, 100_000, seed=5)
    seeds = np.array([17, 4_242])
    found = personalized_pagerank(
        edges.outgoing(), edges.out_strength(), seeds, tolerance=1e-7, max_work=10**9
    )
    assert found.l1_error_bound <= 1e-7
    assert found.edges_scanned > 10 * 100_000  # it went over the whole graph many times
    reference = _networkx_pagerank(edges, seeds.tolist())
    ours = _seeded_vector(found, edges.nodes)
    assert np.abs(ours - reference).sum() <= found.l1_error_bound + 1e-12
    budget = personalized_pagerank(edges.outgoing(), edges.out_strength(), seeds, max_work=400_000)
    assert budget.edges_scanned <= 400_000
    ours = _seeded_vector(budget, edges.nodes)
    assert np.abs(ours - reference).sum() == pytest.approx(budget.l1_error_bound, abs=1e-10)


def test_personalized_pagerank_refuses_bad_seeds() -> None:
    edges = GRAPHS["karate"]
    for seeds in (np.array([], dtype=np.int64), np.array([edges.nodes]), np.array([-1])):
        with pytest.raises(ValueError, match="seed"):
            personalized_pagerank(edges.outgoing(), edges.out_strength(), seeds)


# -- betweenness -------------------------------------------------------------------------


def _networkx_betweenness(edges: Edges) -> np.ndarray:
    found = nx.betweenness_centrality(edges.simple_undirected(), normalized=False)
    return _vector(found, edges.nodes) / comb(edges.nodes, 2)


@pytest.mark.parametrize("name", GRAPHS)
def test_exact_betweenness_is_networkx_share_of_pairs(name: str) -> None:
    edges = GRAPHS[name]
    found = betweenness(edges.nodes, edges.sources, edges.targets)
    assert (found.exact, found.method, found.epsilon) == (True, "brandes", 0.0)
    assert np.abs(found.scores - _networkx_betweenness(edges)).max() <= 1e-12


@pytest.mark.parametrize(
    "edges",
    [
        pytest.param(_random_directed(400, 1600, 6), id="gnm-400-1600"),
        pytest.param(_heavy_tailed(2_000, 8_000, seed=9), id="heavy-tailed-2000-8000"),
    ],
)
def test_kadabra_is_within_epsilon_of_the_exact_scores(edges: Edges) -> None:
    exact = betweenness(edges.nodes, edges.sources, edges.targets).scores
    found = betweenness(
        edges.nodes, edges.sources, edges.targets, epsilon=0.01, delta=0.1, exact_limit=0
    )
    assert (found.exact, found.method) == (False, "kadabra")
    assert (found.epsilon, found.delta) == (0.01, 0.1)
    assert np.abs(found.scores - exact).max() <= 0.01
    one, again = (
        betweenness(
            edges.nodes, edges.sources, edges.targets, epsilon=0.01, exact_limit=0, threads=1
        )
        for _ in range(2)
    )
    assert np.array_equal(again.scores, one.scores)  # seeded: one thread repeats
    assert np.abs(one.scores - exact).max() <= 0.01


def test_kadabra_scores_are_not_lifted_by_its_warm_up() -> None:
    # networkit's scores (halved) overshoot by the share of warm-up samples, 1.2 to 1.6 %
    # here; the total's own noise is 0.23 % a run (measured over 40 seeds), so the mean of
    # four (one thread: they repeat) is within 0.5 % only if nothing lifts them.
    edges = _random_directed(300, 900, 3)
    exact = betweenness(edges.nodes, edges.sources, edges.targets).scores
    totals = [
        betweenness(
            edges.nodes,
            edges.sources,
            edges.targets,
            epsilon=0.01,
            exact_limit=0,
            seed=seed,
            threads=1,
        ).scores.sum()
        for seed in range(4)
    ]
    assert np.mean(totals) / exact.sum() == pytest.approx(1.0, abs=0.005)


def test_betweenness_of_cliques_and_tiny_graphs_is_zero() -> None:
    matching = np.arange(0, 40, 2), np.arange(1, 40, 2)  # KADABRA never ends on diameter 1
    for sources, targets in (matching, (np.array([0, 1, 2]), np.array([1, 2, 0]))):
        found = betweenness(50, sources, targets, exact_limit=0)
        assert found.exact
        assert not found.scores.any()
    assert betweenness(50, np.zeros(0, np.int32), np.zeros(0, np.int32), exact_limit=0).exact
    assert betweenness(2, np.array([0]), np.array([1])).scores.tolist() == [0.0, 0.0]
    cycle = np.arange(6), (np.arange(6) + 1) % 6  # every degree the same, yet no clique
    estimated = betweenness(6, *cycle, epsilon=0.05, exact_limit=0)
    assert estimated.method == "kadabra"
    assert np.abs(estimated.scores - 2 / 15).max() <= 0.05  # 2 of the 15 pairs each


def test_betweenness_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        betweenness(5, np.array([0]), np.array([1]), epsilon=0.0)
    with pytest.raises(ValueError, match="outside"):
        betweenness(5, np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="length"):
        betweenness(5, np.array([0, 1]), np.array([1]))


# -- communities -------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
def test_community_modularity_is_igraphs_and_networkxs(name: str) -> None:
    edges = GRAPHS[name]
    found = communities(edges.nodes, edges.sources, edges.targets, edges.weights, seed=1)
    labels = found.membership
    assert labels.min() == 0
    assert found.count == len(np.unique(labels)) == labels.max() + 1
    graph = igraph.Graph(
        n=edges.nodes, edges=list(zip(edges.sources.tolist(), edges.targets.tolist(), strict=True))
    )
    by_igraph = graph.modularity(labels.tolist(), weights=edges.weights.tolist(), directed=False)
    groups = [set(np.flatnonzero(labels == label).tolist()) for label in range(found.count)]
    by_networkx = nx.community.modularity(edges.networkx(directed=False), groups, weight="weight")
    assert found.modularity == pytest.approx(by_igraph, abs=1e-9)
    assert found.modularity == pytest.approx(by_networkx, abs=1e-9)


def test_communities_of_karate_are_good_and_reproducible() -> None:
    edges = GRAPHS["karate"]
    state = random.getstate()
    found = communities(edges.nodes, edges.sources, edges.targets, edges.weights, seed=7)
    assert random.getstate() == state  # Python's generator is put back
    again = communities(edges.nodes, edges.sources, edges.targets, edges.weights, seed=7)
    assert found.modularity > 0.35
    assert np.array_equal(found.membership, again.membership)


def test_modularity_of_a_graph_without_weight_is_zero() -> None:
    labels = np.zeros(3, dtype=np.int64)
    assert modularity(3, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0), labels) == 0.0
    assert communities(0, np.zeros(0), np.zeros(0), np.zeros(0)).count == 0
