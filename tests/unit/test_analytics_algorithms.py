"""The packs' computations on a projection against networkx; snapshots and stored rankings."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from servers.analytics import graph
from servers.analytics.compute import Projection, hop_limited_path, materialize, run_pack
from servers.analytics.graph import Snapshot, heavy_tailed
from servers.analytics.packs import PACKS, estimate, pack
from servers.analytics.rankings import Ranked

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
    return Snapshot.of(
        1,
        ids,
        np.array([position[str(u)] for u, _, _ in edges], dtype=np.int32),
        np.array([position[str(v)] for _, v, _ in edges], dtype=np.int32),
        np.array([w for _, _, w in edges], dtype=np.float64),
    )


def _rankings(graph: nx.DiGraph) -> dict[str, tuple[Ranked, dict[str, object]]]:
    done = materialize(Projection.of(_snapshot(graph)), None, seed=1, threads=1)
    return {item.pack_id: (Ranked.decode(item.payload), item.summary) for item in done}


GRAPHS = {
    "karate": _weighted(nx.karate_club_graph(), 1),
    "les_miserables": _weighted(nx.les_miserables_graph(), 2),
    "florentine": _weighted(nx.florentine_families_graph(), 3),
    "random": _weighted(nx.gnm_random_graph(300, 1500, seed=4, directed=True), 5),
}


@pytest.mark.parametrize("name", GRAPHS)
def test_materialized_pagerank_is_networkxs(name: str) -> None:
    graph = GRAPHS[name]
    ranking, summary = _rankings(graph)["analytics.pagerankTop:v1"]
    reference = nx.pagerank(graph, alpha=0.85, weight="weight", tol=1e-13, max_iter=10_000)
    ours = {entry["entity_id"]: entry["score"] for entry in ranking.page(0, len(ranking))}
    assert len(ours) == graph.number_of_nodes()
    distance = sum(abs(ours[str(node)] - score) for node, score in reference.items())
    assert distance <= float(summary["l1_error_bound"]) <= 5e-7  # type: ignore[arg-type]
    scores = ranking.scores.tolist()
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", ["karate", "florentine"])
def test_materialized_betweenness_is_exact_on_small_graphs(name: str) -> None:
    graph = GRAPHS[name]
    ranking, summary = _rankings(graph)["analytics.betweennessTop:v1"]
    assert summary["exact"] is True
    simple = nx.Graph(graph.to_undirected())
    n = simple.number_of_nodes()
    reference = nx.betweenness_centrality(simple, normalized=False)
    ours = {entry["entity_id"]: entry["score"] for entry in ranking.page(0, n)}
    for node, value in reference.items():
        assert ours[str(node)] == pytest.approx(value / (n * (n - 1) / 2), abs=1e-12)


@pytest.mark.parametrize("name", GRAPHS)
def test_materialized_degrees_count_relationships_in_and_out(name: str) -> None:
    graph = GRAPHS[name]
    ranking, _ = _rankings(graph)["analytics.degreeTop:v1"]
    ours = {entry["entity_id"]: entry["score"] for entry in ranking.page(0, len(ranking))}
    assert ours == {str(node): float(graph.degree(node)) for node in graph.nodes}


@pytest.mark.parametrize("name", GRAPHS)
def test_shortest_paths_are_identical(name: str) -> None:
    graph = GRAPHS[name]
    snapshot = _snapshot(graph)
    projection = Projection.of(snapshot)
    index = {snapshot.entity(i): i for i in range(snapshot.nodes)}
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
            assert snapshot.entities(np.asarray(path)) == [str(n) for n in expected]
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
    ranking, summary = _rankings(graph)["analytics.communities:v1"]
    undirected = nx.Graph()
    for u, v, w in graph.edges(data="weight"):
        previous = undirected.get_edge_data(u, v, {"weight": 0.0})["weight"]
        undirected.add_edge(u, v, weight=previous + w)
    louvain = nx.community.louvain_communities(undirected, weight="weight", seed=1)
    reference = nx.community.modularity(undirected, louvain, weight="weight")
    assert float(summary["modularity"]) >= reference - 0.02  # type: ignore[arg-type]
    assert ranking.communities is not None
    groups: dict[int, set[str]] = {}
    for entry in ranking.page(0, len(ranking)):
        groups.setdefault(entry["community"], set()).add(entry["entity_id"])
    assert len(groups) == summary["communities"]
    relabelled = [{node for node in graph.nodes if str(node) in group} for group in groups.values()]
    ours = nx.community.modularity(undirected, relabelled, weight="weight")
    assert ours == pytest.approx(float(summary["modularity"]), abs=1e-9)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", GRAPHS)
def test_personalized_pagerank_is_within_its_bound_of_networkxs(name: str) -> None:
    graph = GRAPHS[name]
    projection = Projection.of(_snapshot(graph))
    nodes = sorted(graph.nodes, key=str)
    for seeds in ([nodes[0]], nodes[1:4]):
        ours = run_pack(
            projection,
            "analytics.personalizedPagerank:v1",
            {"seed_ids": [str(node) for node in seeds], "top_k": 1000},
        )
        reference = nx.pagerank(
            graph,
            alpha=0.85,
            personalization=dict.fromkeys(seeds, 1.0),
            weight="weight",
            tol=1e-13,
            max_iter=10_000,
        )
        found = {entry["entity_id"]: entry["score"] for entry in ours["entities"]}
        distance = sum(abs(found.get(str(node), 0.0) - score) for node, score in reference.items())
        assert distance <= ours["accuracy"]["l1_error_bound"] + 1e-12
        assert ours["accuracy"]["l1_error_bound"] <= 1e-3


def test_unknown_seeds_are_refused_by_name() -> None:
    projection = Projection.of(_snapshot(GRAPHS["karate"]))
    with pytest.raises(LookupError, match="seed_ids: no entity 'ghost'"):
        run_pack(
            projection, "analytics.personalizedPagerank:v1", {"seed_ids": ["ghost"], "top_k": 5}
        )


def test_warm_started_pagerank_reaches_the_same_answer() -> None:
    sources, targets, weights = heavy_tailed(5_000, 30_000, seed=11)
    ids = np.array([f"e{i:05d}" for i in range(5_000)], dtype=object)
    cold = materialize(Projection.of(Snapshot.of(1, ids, sources, targets, weights)), None, seed=1)
    before = Ranked.decode(next(m for m in cold if m.pack_id == "analytics.pagerankTop:v1").payload)
    changed = weights.copy()
    changed[:100] *= 2  # a small import: 0.3 % of the relationships
    snapshot = Snapshot.of(2, ids, sources, targets, changed)
    warm = materialize(Projection.of(snapshot), (before.ids, before.scores), seed=2)
    again = materialize(Projection.of(snapshot), None, seed=2)
    (warm_item,) = [m for m in warm if m.pack_id == "analytics.pagerankTop:v1"]
    (cold_item,) = [m for m in again if m.pack_id == "analytics.pagerankTop:v1"]
    assert warm_item.summary["warm_started"] is True
    assert warm_item.summary["iterations"] < cold_item.summary["iterations"]
    warm_scores = dict(
        zip(
            Ranked.decode(warm_item.payload).ids.tolist(),
            Ranked.decode(warm_item.payload).scores,
            strict=True,
        )
    )
    cold_scores = dict(
        zip(
            Ranked.decode(cold_item.payload).ids.tolist(),
            Ranked.decode(cold_item.payload).scores,
            strict=True,
        )
    )
    apart = sum(abs(warm_scores[key] - cold_scores[key]) for key in cold_scores)
    assert apart <= warm_item.summary["l1_error_bound"] + cold_item.summary["l1_error_bound"]


# -- snapshots and stored rankings -------------------------------------------------------


def test_snapshots_map_back_in_as_they_were_saved(tmp_path: Path) -> None:
    snapshot = _snapshot(GRAPHS["les_miserables"])
    path = tmp_path / "tenant" / "1"
    graph.save(snapshot, path)
    loaded = graph.load(path)
    assert isinstance(loaded.sources, np.memmap)
    for name in ("ids", "sources", "targets", "weights", "in_offsets", "in_sources"):
        assert np.array_equal(getattr(loaded, name), getattr(snapshot, name)), name
    assert loaded.index("Valjean") == snapshot.index("Valjean") is not None
    assert loaded.index("nobody") is None
    assert loaded.entity(loaded.index("Valjean") or 0) == "Valjean"
    empty = Snapshot.of(2, np.array([], dtype=object), *(np.zeros(0),) * 3)
    graph.save(empty, tmp_path / "tenant" / "2")
    assert graph.load(tmp_path / "tenant" / "2").nodes == 0


def test_rankings_page_in_order_and_survive_encoding() -> None:
    ranking, _ = _rankings(GRAPHS["karate"])["analytics.communities:v1"]
    again = Ranked.decode(ranking.encode())
    pages = [again.page(offset, 10) for offset in range(0, len(again), 10)]
    flat = [entry for page in pages for entry in page]
    assert flat == ranking.page(0, len(ranking))
    assert len({entry["entity_id"] for entry in flat}) == 34
    assert again.page(34, 10) == []


def test_estimates_price_lookups_and_refuse_runs_over_budget() -> None:
    pagerank, path = pack("analytics.pagerankTop:v1"), pack("analytics.shortestPath:v1")
    lookup = estimate(pagerank, {"top_k": 10}, 5_000_000, 50_000_000, 3e-7, 450)
    assert (lookup.materialized, lookup.within_budget, lookup.sampling_applies) == (
        True,
        True,
        False,
    )
    assert lookup.nodes_touched == 10
    assert lookup.expected_ms < 10
    too_big = estimate(path, {"max_hops": 4}, 5_000_000, 50_000_000, 3e-7, 1)
    assert (too_big.materialized, too_big.within_budget) == (False, False)
    assert all(not spec.sample for spec in PACKS.values())  # nothing samples any more
