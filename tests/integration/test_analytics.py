"""The analytics packs through the SDK: import, materialized results, runs, refusals, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import stat
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token
from intelgraph.sdk import analytics as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncAnalyticsClient

from core.errors import Conflict
from servers.analytics import graph, metrics
from servers.analytics import packs as packs_module
from servers.analytics.graph import heavy_tailed
from servers.analytics.packs import PACKS
from servers.analytics.workers import PackWorkers
from servers.app import Platform
from tests.support.analytics import ready, refused
from tests.support.clients import SdkClients
from tests.support.serving import Minter, serving

# -- through the SDK -------------------------------------------------------------------

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("var"), services="analytics") as running:
        yield running


ANALYST = ["analytics.read", "analytics.write"]


@dataclass
class Analyst:
    """An analyst of `tenant`, calling AnalyticsService through SDK clients."""

    minter: Minter
    tenant: uuid.UUID
    #: One per tenant and scopes, all closed after the test.
    clients: SdkClients

    @property
    def analytics(self) -> AsyncAnalyticsClient:
        """AnalyticsService with both analytics scopes."""
        return self.holding(ANALYST)

    def holding(self, scopes: list[str]) -> AsyncAnalyticsClient:
        """AnalyticsService with a token of `scopes` (one token and client per tenant, scopes)."""
        tenant = self.tenant
        key = (tenant, *scopes)
        return self.clients.keyed(key, lambda: self.minter(scopes, tenant=tenant)).analytics


@pytest_asyncio.fixture(loop_scope="module")
async def analyst(platform: Platform) -> AsyncIterator[Analyst]:
    async with contextlib.AsyncExitStack() as closing:
        clients = SdkClients(platform.grpc_target, closing)
        yield Analyst(Minter(platform.settings), uuid.uuid4(), clients)


def _batches(nodes: int, edges: int, seed: int) -> list[pb.ImportGraphRequest]:
    """The sample graph as import batches of at most 5,000 items (the contract's bound)."""
    sources, targets, weights = heavy_tailed(nodes, edges, seed)
    batches = [
        pb.ImportGraphRequest(
            entities=[
                pb.Entity(id=f"e{i}", type="person")
                for i in range(start, min(nodes, start + 5_000))
            ]
        )
        for start in range(0, nodes, 5_000)
    ]
    relationships = [
        pb.Relationship(
            id=f"r{i}", source_id=f"e{s}", target_id=f"e{t}", type="knows", weight=float(w)
        )
        for i, (s, t, w) in enumerate(zip(sources, targets, weights, strict=True))
    ]
    batches += [
        pb.ImportGraphRequest(relationships=relationships[start : start + 5_000])
        for start in range(0, len(relationships), 5_000)
    ]
    return batches


async def test_importing_is_idempotent_by_id_and_bumps_the_revision(analyst: Analyst) -> None:
    first = await analyst.analytics.import_graph(iter(_batches(200, 800, 1)))
    again = await analyst.analytics.import_graph(iter(_batches(200, 800, 1)))
    assert (first.entities_upserted, first.graph_revision, again.graph_revision) == (200, 1, 2)
    status = await analyst.analytics.get_graph_status()
    assert (status.revision, status.entities) == (2, 200)  # not 400: the same ids
    dangling = pb.ImportGraphRequest(
        relationships=[pb.Relationship(id="x", source_id="e1", target_id="ghost", weight=1.0)]
    )
    unknown = await refused(analyst.analytics.import_graph(iter([dangling])))
    assert unknown.code is grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.metadata["unknown_entity"] == "ghost"


async def test_every_pack_runs_with_analytics_read(analyst: Analyst) -> None:
    await analyst.analytics.import_graph(iter(_batches(2000, 10_000, 2)))
    listed = await analyst.analytics.list_packs()
    assert {spec.id for spec in listed.packs} == set(PACKS)
    reader = analyst.holding(["analytics.read"])
    for spec in listed.packs:
        parameters = pb.PackParameters(
            top_k=5, max_hops=3, source_id="e1", target_id="e2", seed_ids=["e1", "e7"]
        )
        run = await reader.run_pack(pack_id=spec.id, parameters=parameters)
        result = run.result
        assert result.pack_id == spec.id
        assert result.graph_revision == result.freshness.revision == 1
        assert not result.freshness.stale
        assert result.freshness.computed_at.seconds > 0
        assert not result.sampling.sampled
        assert result.estimate.materialized == PACKS[spec.id].materialized
        assert result.accuracy.method
        if spec.id != "analytics.shortestPath:v1":
            assert 0 < len(result.entities) <= 5
            assert all(entity.entity_id.startswith("e") for entity in result.entities)
        if PACKS[spec.id].materialized:
            assert run.page.next_page_token  # 2,000 entities: the ranking goes on
    communities = await reader.run_pack(pack_id="analytics.communities:v1")
    assert communities.result.modularity > 0.3
    assert communities.result.communities > 1
    betweenness = await reader.run_pack(pack_id="analytics.betweennessTop:v1")
    assert betweenness.result.accuracy.exact  # small enough for Brandes
    related = await reader.run_pack(
        pack_id="analytics.personalizedPagerank:v1", parameters=pb.PackParameters(seed_ids=["e1"])
    )
    assert 0 <= related.result.accuracy.l1_error_bound <= 1e-3
    writer_only = await refused(
        analyst.holding(["analytics.write"]).run_pack(pack_id="analytics.degreeTop:v1")
    )
    assert writer_only.code is grpc.StatusCode.PERMISSION_DENIED


async def test_bad_runs_are_refused_clearly(analyst: Analyst) -> None:
    analytics = analyst.analytics
    none_yet = await refused(analytics.run_pack(pack_id="analytics.degreeTop:v1"))
    assert none_yet.code is grpc.StatusCode.FAILED_PRECONDITION
    await analytics.import_graph(iter(_batches(100, 300, 3)))
    unknown = await refused(analytics.run_pack(pack_id="analytics.adhoc:v1"))
    assert unknown.code is grpc.StatusCode.NOT_FOUND
    too_many = await refused(
        analytics.run_pack(
            pack_id="analytics.pagerankTop:v1", parameters=pb.PackParameters(top_k=5000)
        )
    )
    assert too_many.metadata == {"field": "parameters.top_k"}
    ghost = await refused(
        analytics.run_pack(
            pack_id="analytics.neighborhood:v1", parameters=pb.PackParameters(source_id="ghost")
        )
    )
    assert ghost.code is grpc.StatusCode.INVALID_ARGUMENT
    personalized = "analytics.personalizedPagerank:v1"
    seedless = await refused(analytics.run_pack(pack_id=personalized))
    assert seedless.metadata == {"field": "parameters.seed_ids"}
    ghosts = await refused(
        analytics.run_pack(
            pack_id=personalized, parameters=pb.PackParameters(seed_ids=["e1", "ghost"])
        )
    )
    assert (ghosts.code, "ghost" in ghosts.details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    forged = await refused(
        analytics.run_pack(
            pack_id="analytics.degreeTop:v1", page=PageRequest(page_token="bm90IG91cnM=")
        )
    )
    assert forged.code is grpc.StatusCode.INVALID_ARGUMENT
    unpaged = await refused(
        analytics.run_pack(
            pack_id="analytics.neighborhood:v1",
            parameters=pb.PackParameters(source_id="e1"),
            page=PageRequest(page_size=10),
        )
    )
    assert unpaged.metadata == {"field": "page"}


def _kills(pack_id: str) -> float:
    return float(metrics.DEADLINE_KILLS.labels(pack_id)._value.get())


#: How late past its deadline a stopped run may be answered here. The server promises 50 ms
#: (about 35 ms on an idle 2-core machine), but this test shares the cores with the server,
#: the worker being replaced and whatever else the machine runs, so a bound near the promise
#: fails on a loaded machine. What shows the run was stopped rather than finished is the
#: DEADLINE_EXCEEDED answer and the killed worker; this bound only catches an answer that hangs.
ANSWER_SLACK_ON_A_LOADED_MACHINE_S = 2.0
#: A lightest path of up to four hops across the larger graph: about 27 ms here, so a 5 ms
#: deadline always stops it.
SLOW = "analytics.shortestPath:v1"
SLOW_PARAMETERS = pb.PackParameters(source_id="e0", target_id="e29999", max_hops=4)


async def _expires_in_time(
    analyst: Analyst, deadline_s: float, *, call_deadline_s: float | None = None
) -> None:
    """A slow run stopped at `deadline_s`, answered in time, its worker killed and replaced.

    `call_deadline_s` is the call's own deadline (None: the SDK's RunPack default).
    """
    analytics = analyst.analytics
    for _ in range(5):  # a loaded machine can spend a short call deadline before the run starts
        kills = _kills(SLOW)
        started = time.perf_counter()
        expired = await refused(
            analytics.run_pack(pack_id=SLOW, parameters=SLOW_PARAMETERS, timeout=call_deadline_s)
        )
        elapsed = time.perf_counter() - started
        assert expired.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert elapsed < deadline_s + ANSWER_SLACK_ON_A_LOADED_MACHINE_S
        for _ in range(20):  # the server killed the worker, and replaces it
            if _kills(SLOW) > kills:
                break
            await asyncio.sleep(0.05)
        if _kills(SLOW) > kills:
            break
    assert _kills(SLOW) == kills + 1
    after = await analytics.run_pack(
        pack_id=SLOW, parameters=pb.PackParameters(source_id="e1", target_id="e2", max_hops=1)
    )
    assert after.result.accuracy.exact
    assert after.result.projection_bytes > 1_000_000  # a fresh worker mapped it in again


@pytest.fixture
def underpriced(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The slow pack priced far too low: only the deadline can stop it."""

    def patch(timeout_ms: int) -> None:
        spec = dataclasses.replace(PACKS[SLOW], cost_per_unit=1e-9, timeout_ms=timeout_ms)
        monkeypatch.setitem(packs_module.PACKS, spec.id, spec)
        monkeypatch.setattr(packs_module, "FIXED_UNITS", 0)

    return patch


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def larger_graph(platform: Platform) -> uuid.UUID:
    """A tenant with a 30k-entity, 200k-relationship graph (imported once), mapped in."""
    tenant = uuid.uuid4()
    token = Minter(platform.settings)(ANALYST, tenant=tenant)
    async with AsyncClient(platform.grpc_target, INSECURE, token=bearer_token(token)) as importer:
        await importer.analytics.import_graph(iter(_batches(30_000, 200_000, 4)))
        # The projection is mapped in (paid once per revision, outside any deadline).
        await importer.analytics.run_pack(
            pack_id=SLOW, parameters=pb.PackParameters(source_id="e1", target_id="e2", max_hops=1)
        )
    return tenant


@pytest.mark.slow
async def test_a_run_past_its_timeout_is_killed_and_answered_in_time(
    analyst: Analyst, larger_graph: uuid.UUID, underpriced: Any
) -> None:
    analyst.tenant = larger_graph
    underpriced(timeout_ms=5)
    await _expires_in_time(analyst, 0.005)


@pytest.mark.slow
async def test_a_run_past_the_calls_deadline_is_killed_and_answered_in_time(
    analyst: Analyst, larger_graph: uuid.UUID, underpriced: Any
) -> None:
    analyst.tenant = larger_graph
    underpriced(timeout_ms=60_000)
    await _expires_in_time(analyst, 0.015, call_deadline_s=0.015)


async def test_a_run_over_budget_is_refused_with_the_hint(
    analyst: Analyst, monkeypatch: pytest.MonkeyPatch
) -> None:
    await analyst.analytics.import_graph(iter(_batches(1000, 5000, 6)))
    costly = dataclasses.replace(PACKS["analytics.shortestPath:v1"], cost_per_unit=1e6)
    monkeypatch.setitem(packs_module.PACKS, costly.id, costly)
    hinted = await refused(
        analyst.analytics.run_pack(
            pack_id=costly.id, parameters=pb.PackParameters(source_id="e1", target_id="e2")
        )
    )
    assert hinted.code is grpc.StatusCode.FAILED_PRECONDITION
    assert float(hinted.metadata["expected_ms"]) > float(hinted.metadata["budget_ms"]) == 450
    assert "over its 450 ms budget" in hinted.details


async def test_estimates_answer_without_running(
    analyst: Analyst, monkeypatch: pytest.MonkeyPatch
) -> None:
    await analyst.analytics.import_graph(iter(_batches(1000, 5000, 5)))

    # Any run would reach a worker: refuse them all (a wall-clock bound would also refuse a
    # loaded machine).
    async def no_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("EstimatePack ran the pack")

    monkeypatch.setattr(PackWorkers, "run", no_run)
    monkeypatch.setattr(PackWorkers, "materialize", no_run)
    found = await analyst.analytics.estimate_pack(pack_id="analytics.pagerankTop:v1")
    assert found.estimate.materialized  # a lookup, priced as one
    assert 0 < found.estimate.expected_ms < 10
    assert found.estimate.nodes_touched == 50
    assert found.estimate.memory_bytes > 0
    assert found.estimate.within_budget
    related = await analyst.analytics.estimate_pack(
        pack_id="analytics.personalizedPagerank:v1",
        parameters=pb.PackParameters(seed_ids=["e1"]),
    )
    assert not related.estimate.materialized
    assert related.estimate.expected_ms > 0


async def test_snapshots_are_built_after_imports_and_old_ones_pruned(
    analyst: Analyst, platform: Platform
) -> None:
    directory = platform.settings.var_dir / "analytics"
    for seed in range(3):
        await analyst.analytics.import_graph(iter(_batches(100, 300 + seed, seed + 20)))
    await ready(analyst.analytics, 3)  # built in the background: no run asked for them
    revisions = graph.revisions(directory, analyst.tenant)
    assert 3 in revisions
    assert min(revisions) >= 2  # older ones pruned
    # They hold the tenant's entity ids: its owner's only.
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    snapshot_directory = graph.snapshot_path(directory, analyst.tenant, 3)
    assert stat.S_IMODE(snapshot_directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((snapshot_directory / "ids.npy").stat().st_mode) == 0o600
    latest = graph.load(snapshot_directory)
    stored = await analyst.analytics.get_graph_status()
    assert (latest.revision, latest.nodes, latest.edges) == (
        3,
        stored.entities,
        stored.relationships,
    )


async def test_a_snapshot_pruned_before_loading_asks_for_a_retry(tmp_path: Path) -> None:
    workers = PackWorkers(1)
    await workers.start()
    try:
        parameters = {"source_id": "e01", "max_hops": 1, "top_k": 3}
        with pytest.raises(Conflict):
            await workers.run(tmp_path / "gone", "analytics.neighborhood:v1", parameters, 1.0)
        # The worker is still usable.
        sources, targets, weights = heavy_tailed(50, 200, seed=1)
        ids = np.array([f"e{i:02d}" for i in range(50)], dtype=object)
        path = tmp_path / "one"
        graph.save(graph.Snapshot.of(1, ids, sources, targets, weights), path)
        result = await workers.run(path, "analytics.neighborhood:v1", parameters, 5.0)
        assert 0 < len(result["entities"]) <= 3
    finally:
        await workers.close()
