"""Whole-graph results per revision, on SQLite and PostgreSQL: exact rankings, pages, freshness.

Through the SDK and GraphQL, against networkx on a graph networkx ships: the
results are computed in the background after each import (leased: one
replica), paged from one revision, flagged stale while a newer revision is
computed, warm-started after small imports, and served after a restart
without being computed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import networkx as nx
import numpy as np
import pytest
import pytest_asyncio
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token
from intelgraph.sdk import analytics as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncAnalyticsClient

from servers.analytics import graph
from servers.analytics.graph import heavy_tailed
from servers.app import Platform
from servers.db import utc_now
from servers.db.leases import acquire_lease, release_lease
from tests.support.analytics import ready, refused
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

ANALYST = ["analytics.read", "analytics.write"]
PAGERANK, DEGREE = "analytics.pagerankTop:v1", "analytics.degreeTop:v1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("var"), services="analytics", database_url=module_database_url
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def analyst_of(platform: Platform, tenant: uuid.UUID) -> AsyncIterator[AsyncAnalyticsClient]:
    token = Minter(platform.settings)(ANALYST, tenant=tenant)
    async with AsyncClient(platform.grpc_target, INSECURE, token=bearer_token(token)) as client:
        yield client.analytics


def _karate() -> nx.DiGraph:
    """Zachary's karate club, both directions of each tie, weighted (seeded)."""
    rng = np.random.default_rng(1)
    directed = nx.DiGraph()
    for u, v in nx.karate_club_graph().edges:
        directed.add_edge(f"m{u}", f"m{v}", weight=float(rng.uniform(0.1, 1.0)))
        directed.add_edge(f"m{v}", f"m{u}", weight=float(rng.uniform(0.1, 1.0)))
    return directed


def _import_of(digraph: nx.DiGraph) -> list[pb.ImportGraphRequest]:
    return [
        pb.ImportGraphRequest(
            entities=[pb.Entity(id=node, type="person") for node in digraph.nodes],
            relationships=[
                pb.Relationship(id=f"{u}>{v}", source_id=u, target_id=v, weight=w)
                for u, v, w in digraph.edges(data="weight")
            ],
        )
    ]


def _sample(nodes: int, edges: int, seed: int, first: int = 0) -> list[pb.ImportGraphRequest]:
    """The sample graph's relationships from `first` on (and all its entities), in batches."""
    sources, targets, weights = heavy_tailed(nodes, edges, seed)
    batches = [
        pb.ImportGraphRequest(
            entities=[pb.Entity(id=f"e{i}") for i in range(start, min(nodes, start + 5000))]
        )
        for start in range(0, nodes, 5000)
    ]
    relationships = [
        pb.Relationship(id=f"r{i}", source_id=f"e{s}", target_id=f"e{t}", weight=float(w))
        for i, (s, t, w) in enumerate(zip(sources, targets, weights, strict=True))
        if i >= first
    ]
    return batches + [
        pb.ImportGraphRequest(relationships=relationships[start : start + 5000])
        for start in range(0, len(relationships), 5000)
    ]


@contextlib.asynccontextmanager
async def held(platform: Platform, tenant: uuid.UUID) -> AsyncIterator[None]:
    """Another replica holds the tenant's materialization lease: its results wait."""
    name = f"analytics.materialize:{tenant}"
    for _ in range(200):  # the replica gives the lease up just after its results are ready
        if await acquire_lease(
            platform.database, name, "another-replica", timedelta(minutes=5), utc_now()
        ):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the materialization lease was never given up")
    try:
        yield
    finally:
        await release_lease(platform.database, name, "another-replica")


async def test_pagerank_pages_through_networkxs_ranking_exactly(platform: Platform) -> None:
    karate = _karate()
    async with analyst_of(platform, uuid.uuid4()) as analytics:
        imported = await analytics.import_graph(iter(_import_of(karate)))
        await ready(analytics, imported.graph_revision)
        ranked = [
            entity async for entity in analytics.iter_run_pack(pack_id=PAGERANK, page_size=10)
        ]
        first = await analytics.run_pack(pack_id=PAGERANK, parameters=pb.PackParameters(top_k=5))
    reference = nx.pagerank(karate, alpha=0.85, weight="weight", tol=1e-13, max_iter=10_000)
    expected = sorted(reference, key=lambda node: (-reference[node], node))
    assert [entity.entity_id for entity in ranked] == expected  # every entity, once, in order
    assert sum(abs(entity.score - reference[entity.entity_id]) for entity in ranked) <= 1e-6
    result = first.result
    assert [entity.entity_id for entity in result.entities] == expected[:5]
    assert (result.accuracy.exact, result.accuracy.method) == (True, "power_iteration")
    assert 0 < result.accuracy.l1_error_bound <= 1e-6
    assert result.freshness.revision == imported.graph_revision
    assert not result.freshness.stale
    assert result.estimate.materialized
    assert first.page.next_page_token


async def test_exact_betweenness_and_communities_on_a_small_graph(platform: Platform) -> None:
    karate = _karate()
    async with analyst_of(platform, uuid.uuid4()) as analytics:
        await analytics.import_graph(iter(_import_of(karate)))
        await ready(analytics, 1)
        betweenness = await analytics.run_pack(
            pack_id="analytics.betweennessTop:v1", parameters=pb.PackParameters(top_k=34)
        )
        communities = await analytics.run_pack(pack_id="analytics.communities:v1")
    simple = nx.karate_club_graph()
    reference = nx.betweenness_centrality(simple, normalized=False)
    pairs = 34 * 33 / 2
    for entity in betweenness.result.entities:
        assert entity.score == pytest.approx(reference[int(entity.entity_id[1:])] / pairs)
    assert betweenness.result.accuracy.exact
    assert betweenness.result.accuracy.method == "brandes"
    assert communities.result.modularity > 0.35
    assert communities.result.communities >= 2
    assert len({entity.community for entity in communities.result.entities}) >= 2


async def test_pages_stay_on_their_revision_while_newer_ones_come(platform: Platform) -> None:
    async with analyst_of(platform, uuid.uuid4()) as analytics:
        await analytics.import_graph(iter(_sample(300, 1500, 1)))
        await ready(analytics, 1)
        first = await analytics.run_pack(pack_id=DEGREE, page=PageRequest(page_size=100))
        await analytics.import_graph(iter(_sample(600, 3000, 2)))  # revision 2: new entities
        await ready(analytics, 2)
        second = await analytics.run_pack(
            pack_id=DEGREE, page=PageRequest(page_size=100, page_token=first.page.next_page_token)
        )
        third = await analytics.run_pack(
            pack_id=DEGREE, page=PageRequest(page_size=500, page_token=second.page.next_page_token)
        )
        newest = await analytics.run_pack(pack_id=DEGREE)
        another_pack = await refused(
            analytics.run_pack(
                pack_id=PAGERANK, page=PageRequest(page_token=first.page.next_page_token)
            )
        )
    revision_one = [*first.result.entities, *second.result.entities, *third.result.entities]
    assert len(revision_one) == len({entity.entity_id for entity in revision_one}) == 300
    assert {second.result.freshness.revision, third.result.freshness.revision} == {1}
    assert second.result.freshness.latest_revision == 2
    assert not third.page.next_page_token  # the end of revision 1's ranking
    assert newest.result.freshness.revision == 2
    assert another_pack.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_reads_answer_from_the_previous_revision_while_the_next_is_computed(
    platform: Platform,
) -> None:
    tenant = uuid.uuid4()
    async with analyst_of(platform, tenant) as analytics:
        await analytics.import_graph(iter(_sample(200, 800, 3)))
        await ready(analytics, 1)
        async with held(platform, tenant):
            await analytics.import_graph(iter(_sample(400, 1600, 4)))
            status = await analytics.get_graph_status()
            stale = await analytics.run_pack(pack_id=DEGREE)
            related = await analytics.run_pack(
                pack_id="analytics.personalizedPagerank:v1",
                parameters=pb.PackParameters(seed_ids=["e1"]),
            )
        fresh_status = await ready(analytics, 2)
        fresh = await analytics.run_pack(pack_id=DEGREE)
    assert (status.revision, status.ready_revision) == (2, 1)
    assert status.state == pb.MATERIALIZATION_STATE_PENDING
    assert status.expected_ready_at.seconds > 0
    freshness = stale.result.freshness
    assert (freshness.revision, freshness.latest_revision, freshness.stale) == (1, 2, True)
    assert freshness.expected_ready_at.seconds > 0
    assert related.result.freshness.revision <= 2
    assert fresh_status.state == pb.MATERIALIZATION_STATE_READY
    assert (fresh.result.freshness.revision, fresh.result.freshness.stale) == (2, False)
    assert not fresh.result.freshness.HasField("expected_ready_at")


async def test_a_first_revision_not_ready_in_time_says_when_it_will_be(platform: Platform) -> None:
    tenant = uuid.uuid4()
    async with analyst_of(platform, tenant) as analytics:
        async with held(platform, tenant):
            await analytics.import_graph(iter(_sample(100, 300, 5)))
            waiting = await refused(analytics.run_pack(pack_id=PAGERANK, timeout=2.0))
        await ready(analytics, 1)
        answered = await analytics.run_pack(pack_id=PAGERANK)
    assert waiting.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "being computed" in waiting.details
    assert waiting.metadata["revision"] == "1"
    assert waiting.metadata["expected_ready_at"]
    assert answered.result.freshness.revision == 1


async def test_small_imports_warm_start_pagerank(platform: Platform) -> None:
    async with analyst_of(platform, uuid.uuid4()) as analytics:
        await analytics.import_graph(iter(_sample(2000, 10_000, 6)))
        await ready(analytics, 1)
        cold = await analytics.run_pack(pack_id=PAGERANK)
        # 50 relationships again (0.5 %): new weights for the same ids.
        sources, targets, _ = heavy_tailed(2000, 10_000, 6)
        small = pb.ImportGraphRequest(
            relationships=[
                pb.Relationship(
                    id=f"r{i}", source_id=f"e{sources[i]}", target_id=f"e{targets[i]}", weight=5.0
                )
                for i in range(50)
            ]
        )
        await analytics.import_graph(iter([small]))
        await ready(analytics, 2)
        warm = await analytics.run_pack(pack_id=PAGERANK)
        await analytics.import_graph(iter(_sample(2000, 10_000, 7)))  # most of it changes
        await ready(analytics, 3)
        again = await analytics.run_pack(pack_id=PAGERANK)
    assert not cold.result.freshness.warm_started
    assert warm.result.freshness.warm_started
    assert warm.result.accuracy.l1_error_bound <= 1e-6
    assert not again.result.freshness.warm_started


async def test_tenants_see_only_their_own_results(platform: Platform) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    async with analyst_of(platform, ours) as analytics, analyst_of(platform, theirs) as other:
        await analytics.import_graph(iter(_import_of(_karate())))
        await ready(analytics, 1)
        page = await analytics.run_pack(pack_id=DEGREE, page=PageRequest(page_size=5))
        assert (await other.get_graph_status()).revision == 0
        none_yet = await refused(other.run_pack(pack_id=DEGREE))
        await other.import_graph(iter(_sample(50, 100, 8)))
        await ready(other, 1)
        # A token carries no tenant: theirs reads their own ranking with it.
        followed = await other.run_pack(
            pack_id=DEGREE, page=PageRequest(page_size=5, page_token=page.page.next_page_token)
        )
    assert none_yet.code is grpc.StatusCode.FAILED_PRECONDITION
    assert all(entity.entity_id.startswith("e") for entity in followed.result.entities)


async def test_graphql_reads_status_and_fresh_exact_results(platform: Platform) -> None:
    tenant = uuid.uuid4()
    async with analyst_of(platform, tenant) as analytics:
        await analytics.import_graph(iter(_import_of(_karate())))
        await ready(analytics, 1)
    token = Minter(platform.settings)(["analytics.read"], tenant=tenant)
    query = """
      query Status { graphStatus { revision readyRevision state } }
    """
    mutation = """
      mutation Rank {
        runPack(packId: "analytics.betweennessTop:v1", parameters: {topK: 3}) {
          result {
            entities { entityId score }
            freshness { revision stale computedAt }
            accuracy { exact method epsilon }
          }
          page { nextPageToken }
        }
      }
    """
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        headers = {"authorization": f"Bearer {token}"}
        status = (await http.post("/graphql", json={"query": query}, headers=headers)).json()
        ranked = (await http.post("/graphql", json={"query": mutation}, headers=headers)).json()
    assert status == {
        "data": {"graphStatus": {"revision": "1", "readyRevision": "1", "state": "READY"}}
    }
    result = ranked["data"]["runPack"]["result"]
    assert next(entity["entityId"] for entity in result["entities"]) == "m0"
    assert result["freshness"]["revision"] == "1"
    assert result["freshness"]["stale"] is False
    assert result["accuracy"] == {"exact": True, "method": "brandes", "epsilon": 0.0}
    assert ranked["data"]["runPack"]["page"]["nextPageToken"]


async def test_a_restarted_server_serves_the_stored_results_at_once(
    tmp_path: Path, module_database_url: str
) -> None:
    tenant = uuid.uuid4()
    options: dict[str, Any] = {"services": "analytics", "database_url": module_database_url}
    async with serving(tmp_path, **options) as first, analyst_of(first, tenant) as analytics:
        await analytics.import_graph(iter(_sample(3000, 15_000, 9)))
        await ready(analytics, 1)
        before = await analytics.run_pack(pack_id=PAGERANK)
    snapshot = graph.snapshot_path(tmp_path / "analytics", tenant, 1) / "ids.npy"
    built_at = snapshot.stat().st_mtime_ns
    async with serving(tmp_path, **options) as second, analyst_of(second, tenant) as analytics:
        after = await analytics.run_pack(pack_id=PAGERANK)
        related = await analytics.run_pack(
            pack_id="analytics.personalizedPagerank:v1",
            parameters=pb.PackParameters(seed_ids=["e3"]),
        )
        status = await analytics.get_graph_status()
    assert list(after.result.entities) == list(before.result.entities)
    assert after.result.freshness.computed_at == before.result.freshness.computed_at
    assert status.ready_revision == 1  # not computed again
    assert related.result.entities
    assert snapshot.stat().st_mtime_ns == built_at  # mapped back in, not rebuilt


async def test_two_replicas_share_one_computation(tmp_path: Path, module_database_url: str) -> None:
    tenant = uuid.uuid4()
    options: dict[str, Any] = {"services": "analytics", "database_url": module_database_url}
    async with (
        serving(tmp_path / "a", **options) as one,
        serving(tmp_path / "b", **options) as two,
        analyst_of(one, tenant) as first,
        analyst_of(two, tenant) as second,
    ):
        await first.import_graph(iter(_sample(500, 2000, 10)))
        await ready(second, 1)
        answers = [await client.run_pack(pack_id=PAGERANK) for client in (first, second)]
        paths = [
            await client.run_pack(
                pack_id="analytics.neighborhood:v1",
                parameters=pb.PackParameters(source_id="e1", max_hops=2, top_k=20),
            )
            for client in (first, second)
        ]
    assert answers[0].result.entities == answers[1].result.entities
    # Computed once, by whichever replica took the lease; both read the stored results.
    assert answers[0].result.freshness.computed_at == answers[1].result.freshness.computed_at
    assert paths[0].result.entities == paths[1].result.entities
