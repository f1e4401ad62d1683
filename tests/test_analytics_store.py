"""The tenant graph in the store, on SQLite and PostgreSQL: imports, revisions, snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest
from intelgraph.analytics.v1 import analytics_service_pb2 as pb

from servers.analytics.graph import build_snapshot, heavy_tailed
from servers.analytics.service import import_batches
from servers.db import Database
from servers.db.migrate import upgrade
from servers.errors import InvalidArgument
from tests.conftest import OTHER_TENANT, TENANT


async def _stream(batches: Iterable[pb.ImportGraphRequest]) -> AsyncIterator[pb.ImportGraphRequest]:
    for batch in batches:
        yield batch


def _graph(nodes: int, edges: int, seed: int, prefix: str) -> list[pb.ImportGraphRequest]:
    sources, targets, weights = heavy_tailed(nodes, edges, seed)
    return [
        pb.ImportGraphRequest(
            entities=[pb.Entity(id=f"{prefix}{i}", type="person") for i in range(nodes)]
        ),
        pb.ImportGraphRequest(
            relationships=[
                pb.Relationship(
                    id=f"r{i}",
                    source_id=f"{prefix}{s}",
                    target_id=f"{prefix}{t}",
                    weight=float(w),
                )
                for i, (s, t, w) in enumerate(zip(sources, targets, weights, strict=True))
            ]
        ),
    ]


def _edges(batches: list[pb.ImportGraphRequest]) -> set[tuple[str, str, float]]:
    return {(r.source_id, r.target_id, r.weight) for b in batches for r in b.relationships}


async def test_imports_and_snapshots_stay_within_their_tenant(database: Database) -> None:
    await upgrade(database.engine)
    ours, theirs = _graph(300, 1500, 1, "a"), _graph(40, 100, 2, "b")
    async with database.tenant_session(TENANT) as session:
        assert (await import_batches(session, TENANT, _stream(ours)))[2] == 1
    async with database.tenant_session(OTHER_TENANT) as session:
        await import_batches(session, OTHER_TENANT, _stream(theirs))
    snapshot = await build_snapshot(database, TENANT)
    assert (snapshot.revision, snapshot.nodes) == (1, 300)
    assert list(snapshot.ids) == sorted(f"a{i}" for i in range(300))
    rebuilt = {
        (snapshot.ids[s], snapshot.ids[t], w)
        for s, t, w in zip(snapshot.sources, snapshot.targets, snapshot.weights, strict=True)
    }
    assert rebuilt == _edges(ours)  # the same ids "r0".. in the other tenant stay theirs
    other = await build_snapshot(database, OTHER_TENANT)
    assert (
        other.nodes,
        {(other.ids[s], other.ids[t]) for s, t in zip(other.sources, other.targets, strict=True)},
    ) == (
        40,
        {(s, t) for s, t, _ in _edges(theirs)},
    )


async def test_a_failed_import_leaves_nothing_behind(database: Database) -> None:
    await upgrade(database.engine)
    async with database.tenant_session(TENANT) as session:
        await import_batches(session, TENANT, _stream(_graph(50, 200, 3, "a")))
    before = await build_snapshot(database, TENANT)
    bad = [
        *_graph(60, 300, 4, "c"),  # new entities and relationships, then a dangling one
        pb.ImportGraphRequest(
            relationships=[pb.Relationship(id="x", source_id="c1", target_id="nobody", weight=1)]
        ),
    ]
    with pytest.raises(InvalidArgument):
        async with database.tenant_session(TENANT) as session:
            await import_batches(session, TENANT, _stream(bad))
    after = await build_snapshot(database, TENANT)
    assert (after.revision, after.nodes, after.edges) == (1, before.nodes, before.edges)
    assert list(after.ids) == list(before.ids)
