"""Analytics algorithms against networkx, and the sampler's quality."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from servers.analytics.compute import Projection, hop_limited_path, modularity, run_pack
from servers.analytics.graph import Snapshot, heavy_tailed
from servers.analytics.packs import PACKS, estimate, pack, sampler

# -- correctness against networkx ------------------------------------------------------


def _weighted(graph: nx.Graph, seed: int) -> nx.DiGraph:
    """A directed, weighted copy (both directions of undirected edges), distinct weights."""
    rng = np.random.default_rng(seed)
    directed = nx.DiGraph()
    directed.add_nodes_from(graph.nodes)
    for u, v in graph.edges:
        pairs = [(u, v)] if graph.is_directed() else [(u, v), (v, u)]
        for a, b in pairs:
            directed.add_edge(a, b, weight=float(rng.uniform(0.1, 1.0)))
    return directed


def _snapshot(graph: nx.DiGraph) -> Snapshot:
    ids = np.array(sorted(str(node) for node in graph.nodes), dtype=object)
    position = {entity: index for index, entity in enumerate(ids.tolist())}
    edges = list(graph.edges(data="weight"))
    return Snapshot(
        revision=1,
        ids=ids,
        sources=np.array([position[str(u)] for u, _, _ in edges], dtype=np.int32),
        targets=np.array([position[str(v)] for _, v, _ in edges], dtype=np.int32),
        weights=np.array([w for _, _, w in edges], dtype=np.float64),
    )


GRAPHS = {
    "karate": _weighted(nx.karate_club_graph(), 1),
    "les_miserables": _weighted(nx.les_miserables_graph(), 2),
    "florentine": _weighted(nx.florentine_families_graph(), 3),
    "random": _weighted(nx.gnm_random_graph(300, 1500, seed=4, directed=True), 5),
}


@pytest.mark.parametrize("name", GRAPHS)
def test_pagerank_matches_networkx(name: str) -> None:
    graph = GRAPHS[name]
    projection = Projection.of(_snapshot(graph))
    ours = run_pack(projection, "analytics.pagerankTop:v1", {"top_k": 1000})["entities"]
    reference = nx.pagerank(graph, alpha=0.85, weight="weight", tol=1e-13, max_iter=10_000)
    assert len(ours) == graph.number_of_nodes()
    for entity in ours:
        node = next(n for n in graph.nodes if str(n) == entity["entity_id"])
        assert entity["score"] == pytest.approx(reference[node], abs=1e-6)
    assert [e["score"] for e in ours] == sorted((e["score"] for e in ours), reverse=True)


@pytest.mark.parametrize("name", GRAPHS)
def test_shortest_paths_are_identical(name: str) -> None:
    graph = GRAPHS[name]
    snapshot = _snapshot(graph)
    projection = Projection.of(snapshot)
    index = {entity: i for i, entity in enumerate(snapshot.ids.tolist())}
    rng = np.random.default_rng(7)
    nodes = list(graph.nodes)
    compared = 0
    for _ in range(60):
        source, target = (nodes[i] for i in rng.choice(len(nodes), 2, replace=False))
        try:
            expected = nx.dijkstra_path(graph, source, target, weight="weight")
        except nx.NetworkXNoPath:
            expected = []
        path, cost = hop_limited_path(projection.out, index[str(source)], index[str(target)], 4)
        if expected and len(expected) - 1 <= 4:
            assert [snapshot.ids[i] for i in path] == [str(n) for n in expected]
            assert cost == pytest.approx(nx.path_weight(graph, expected, "weight"))
            compared += 1
        elif not expected:
            assert path == []
        else:  # the lightest path is longer than 4 hops: ours is the lightest within 4
            within = [
                nx.path_weight(graph, candidate, "weight")
                for candidate in nx.all_simple_paths(graph, source, target, cutoff=4)
            ]
            if within:
                assert len(path) - 1 <= 4
                assert cost == pytest.approx(min(within))
            else:
                assert path == []
    assert compared > 10


@pytest.mark.parametrize("name", GRAPHS)
def test_neighborhoods_match_networkx_hop_distances(name: str) -> None:
    graph = GRAPHS[name]
    snapshot = _snapshot(graph)
    projection = Projection.of(snapshot)
    undirected = graph.to_undirected(as_view=True)
    for source in list(graph.nodes)[:10]:
        for hops in (1, 2, 3):
            ours = run_pack(
                projection,
                "analytics.neighborhood:v1",
                {"source_id": str(source), "max_hops": hops, "top_k": 1000},
            )["entities"]
            reference = nx.single_source_shortest_path_length(undirected, source, cutoff=hops)
            assert {e["entity_id"]: e["score"] for e in ours} == {
                str(node): float(level) for node, level in reference.items() if node != source
            }
            assert [e["score"] for e in ours] == sorted(e["score"] for e in ours)
        nearest = run_pack(
            projection,
            "analytics.neighborhood:v1",
            {"source_id": str(source), "max_hops": 3, "top_k": 3},
        )["entities"]
        assert nearest == ours[:3]  # the nearest first, the rest cut off


@pytest.mark.parametrize("name", ["karate", "les_miserables", "florentine"])
def test_community_modularity_is_close_to_networkx_louvain(name: str) -> None:
    graph = GRAPHS[name]
    projection = Projection.of(_snapshot(graph))
    ours = run_pack(projection, "analytics.communities:v1", {"top_k": 5})["modularity"]
    undirected = nx.Graph()
    for u, v, w in graph.edges(data="weight"):
        previous = undirected.get_edge_data(u, v, {"weight": 0.0})["weight"]
        undirected.add_edge(u, v, weight=previous + w)
    louvain = nx.community.louvain_communities(undirected, weight="weight", seed=1)
    reference = nx.community.modularity(undirected, louvain, weight="weight")
    assert ours >= reference - 0.02


def test_the_default_sampler_keeps_the_pagerank_top_50() -> None:
    sources, targets, weights = heavy_tailed(20_000, 120_000, seed=11)
    ids = np.array([f"e{i:05d}" for i in range(20_000)], dtype=object)
    projection = Projection.of(Snapshot(1, ids, sources, targets, weights))
    spec = PACKS["analytics.pagerankTop:v1"]
    full = run_pack(projection, spec.id, {"top_k": 50})["entities"]
    sampled = run_pack(projection, spec.id, {"top_k": 50}, spec.sample)["entities"]
    overlap = len({e["entity_id"] for e in full} & {e["entity_id"] for e in sampled}) / 50
    assert overlap >= 0.8


def test_estimates_sample_or_refuse_over_budget() -> None:
    pagerank, path = pack("analytics.pagerankTop:v1"), pack("analytics.shortestPath:v1")
    fits = estimate(pagerank, {"top_k": 10}, 1000, 5000, 3e-7, 450)
    assert (fits.sampling_applies, fits.within_budget) == (False, True)
    big = estimate(pagerank, {"top_k": 10}, 5_000_000, 50_000_000, 3e-7, 450)
    assert big.sampling_applies
    assert big.edges_touched == 50_000_000 * sampler(big.sample)[1]
    assert not big.within_budget  # even 1.25 % of it: the service refuses it
    too_big = estimate(path, {"max_hops": 4}, 5_000_000, 50_000_000, 3e-7, 1)
    assert (too_big.sampling_applies, too_big.within_budget) == (False, False)


def test_sampled_runs_shrink_their_sample_to_fit_the_budget() -> None:
    spec = pack("analytics.pagerankTop:v1")
    ratios = []
    for budget_ms in (100_000, 5_000, 2_000, 1_500, 1_000, 10):
        found = estimate(spec, {"top_k": 10}, 1_000_000, 10_000_000, 3e-7, budget_ms)
        ratios.append(sampler(found.sample)[1] if found.sample else 1.0)
        if found.within_budget and found.sample != "top_edges:1.25%":
            assert found.expected_ms <= budget_ms / 2  # planned with room for error
    assert ratios == sorted(ratios, reverse=True)
    assert (ratios[0], ratios[-1]) == (1.0, 0.0125)  # the whole graph .. the smallest halving
    assert len(set(ratios)) >= 4


@pytest.mark.parametrize("name", ["karate", "les_miserables", "random"])
def test_modularity_matches_networkx(name: str) -> None:
    graph = GRAPHS[name]
    snapshot = _snapshot(graph)
    rng = np.random.default_rng(3)
    membership = rng.integers(-1, 4, size=snapshot.nodes)  # -1: on its own
    undirected = nx.Graph()
    undirected.add_nodes_from(range(snapshot.nodes))
    for s, t, w in zip(snapshot.sources, snapshot.targets, snapshot.weights, strict=True):
        previous = undirected.get_edge_data(s, t, {"weight": 0.0})["weight"]
        undirected.add_edge(s, t, weight=previous + w)
    groups: dict[int, set[int]] = {}
    for node, label in enumerate(membership):
        groups.setdefault(int(label) if label >= 0 else -1 - node, set()).add(node)
    reference = nx.community.modularity(undirected, groups.values(), weight="weight")
    assert modularity(snapshot, membership) == pytest.approx(reference, abs=1e-12)
