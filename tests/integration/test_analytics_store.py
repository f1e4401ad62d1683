"""The tenant graph in the store, on SQLite and PostgreSQL: imports, revisions, snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import timedelta

import numpy as np
import psycopg
import pytest
from intelgraph.analytics.v1 import analytics_service_pb2 as pb
from sqlalchemy import event

from core.errors import InvalidArgument
from servers.analytics.graph import heavy_tailed
from servers.analytics.imports import GraphImport, import_graph, sweep_abandoned
from servers.analytics.snapshots import build_snapshot
from servers.analytics.store import GraphRevisionRow, results
from servers.db import Database, utc_now
from servers.db.migrate import upgrade
from tests.support.serving import OTHER_TENANT, TENANT, libpq_url


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
    assert (await import_graph(database, TENANT, _stream(ours))).revision == 1
    await import_graph(database, OTHER_TENANT, _stream(theirs))
    snapshot = await build_snapshot(database, TENANT)
    assert (snapshot.revision, snapshot.nodes) == (1, 300)
    assert snapshot.entities(np.arange(300)) == sorted(f"a{i}" for i in range(300))
    rebuilt = {
        (snapshot.entity(s), snapshot.entity(t), w)
        for s, t, w in zip(snapshot.sources, snapshot.targets, snapshot.weights, strict=True)
    }
    assert rebuilt == _edges(ours)  # the same ids "r0".. in the other tenant stay theirs
    other = await build_snapshot(database, OTHER_TENANT)
    pairs = zip(other.sources, other.targets, strict=True)
    assert (other.nodes, {(other.entity(s), other.entity(t)) for s, t in pairs}) == (
        40,
        {(s, t) for s, t, _ in _edges(theirs)},
    )
    # Each import queued its revision's whole-graph results, in its own tenant.
    async with database.tenant_session(TENANT, readonly=True) as session:
        queued = (await results.status(session)).latest
    assert queued is not None
    assert (queued.revision, queued.state, queued.relationships_imported) == (
        1,
        results.State.PENDING,
        snapshot.edges,
    )
    async with database.platform_session() as session:
        wanted = await results.wanted(session, max_attempts=3)
    assert sorted(wanted) == sorted([(TENANT, 1), (OTHER_TENANT, 1)])


async def test_a_failed_import_leaves_nothing_behind(database: Database) -> None:
    await upgrade(database.engine)
    await import_graph(database, TENANT, _stream(_graph(50, 200, 3, "a")))
    before = await build_snapshot(database, TENANT)
    bad = [
        *_graph(60, 300, 4, "c"),  # new entities and relationships, then a dangling one
        pb.ImportGraphRequest(
            relationships=[pb.Relationship(id="x", source_id="c1", target_id="nobody", weight=1)]
        ),
    ]
    with pytest.raises(InvalidArgument):
        await import_graph(database, TENANT, _stream(bad))
    after = await build_snapshot(database, TENANT)
    assert (after.revision, after.nodes, after.edges) == (1, before.nodes, before.edges)
    assert list(after.ids) == list(before.ids)


async def test_relationships_cannot_name_another_tenants_entities(database: Database) -> None:
    await upgrade(database.engine)
    await import_graph(database, OTHER_TENANT, _stream(_graph(10, 20, 5, "b")))
    across = pb.ImportGraphRequest(
        entities=[pb.Entity(id="a0", type="person")],
        relationships=[pb.Relationship(id="x", source_id="a0", target_id="b1", weight=1)],
    )
    with pytest.raises(InvalidArgument) as refused:
        await import_graph(database, TENANT, _stream([across]))
    assert refused.value.metadata["unknown_entity"] == "b1"
    async with database.tenant_session(TENANT, readonly=True) as session:
        assert await session.get(GraphRevisionRow, TENANT) is None


async def test_abandoned_staging_is_swept(database: Database) -> None:
    await upgrade(database.engine)
    staging = GraphImport(database, TENANT, clock=lambda: utc_now() - timedelta(hours=3))
    await staging.stage(_graph(5, 5, 6, "s")[0])
    fresh = GraphImport(database, TENANT)
    await fresh.stage(_graph(7, 5, 6, "f")[0])
    assert await sweep_abandoned(database, timedelta(hours=2)) == 5
    assert (await fresh.commit()).entities == 7


@pytest.mark.postgres
async def test_status_never_says_running_of_a_ready_revision(postgres_schema_url: str) -> None:
    """A revision made ready between status's two statements is reported ready."""
    database = Database(postgres_schema_url)
    try:
        await upgrade(database.engine)
        now = utc_now()
        async with database.tenant_session(TENANT) as session:
            await results.request(session, 1, 10, now)
            await results.request(session, 2, 10, now)
        async with database.tenant_session(TENANT) as session:
            (await results.materialization(session, 1)).state = results.State.READY  # type: ignore[union-attr]
            (await results.materialization(session, 2)).state = results.State.RUNNING  # type: ignore[union-attr]
        statements: list[str] = []

        def finish_after_the_first(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
            if "graph_materializations" not in statement:
                return
            statements.append(statement)
            if len(statements) == 1:  # another replica finishes revision 2 right now
                with psycopg.connect(libpq_url(postgres_schema_url), autocommit=True) as other:
                    other.execute(
                        "UPDATE graph_materializations SET state = %s WHERE revision = 2",
                        (results.State.READY,),
                    )

        event.listen(database.engine.sync_engine, "after_cursor_execute", finish_after_the_first)
        async with database.tenant_session(TENANT, readonly=True) as session:
            status = await results.status(session)
        event.remove(database.engine.sync_engine, "after_cursor_execute", finish_after_the_first)
    finally:
        await database.dispose()
    assert len(statements) >= 2
    assert status.latest is not None
    assert status.ready is not None
    assert (status.latest.revision, status.latest.state) == (2, results.State.READY)
    assert status.ready.revision == 2
