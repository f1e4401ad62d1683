"""Client streams and the store: idle or endless streams hold nothing, and end on time.

An ImportGraph stream used to keep its write transaction open for as long as
the client liked: on SQLite another tenant's write waited 30 s and failed, on
PostgreSQL sixteen idle streams took the whole pool. Streams now stage each
batch in a transaction of its own, end after an idle timeout and an overall
deadline, and one tenant's transactions hold at most their share of the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from intelgraph.analytics.v1 import analytics_service_pb2 as pb
from intelgraph.analytics.v1 import analytics_service_pb2_grpc
from intelgraph.billing.v1 import billing_service_pb2 as billing
from intelgraph.billing.v1 import billing_service_pb2_grpc
from intelgraph.sdk import ConductorError, ErrorReason, from_grpc_error
from sqlalchemy import func, select

from core.errors import ResourceExhausted
from servers.analytics.store import GraphRevisionRow, StagedEntityRow
from servers.app import Platform
from servers.db import Database
from servers.db.database import TenantShares
from servers.db.migrate import upgrade
from tests.support.serving import OTHER_TENANT, TENANT, Minter, serving

ENTITIES = pb.ImportGraphRequest(entities=[pb.Entity(id=f"e{i}", type="t") for i in range(50)])


@contextlib.asynccontextmanager
async def platform_on(url: str, tmp_path: Path, **options: Any) -> AsyncIterator[Platform]:
    async with serving(tmp_path / "var", database_url=url, **options) as platform:
        yield platform


class HeldStream:
    """An ImportGraph call whose requests the test feeds, and can leave idle."""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._queue: asyncio.Queue[pb.ImportGraphRequest | None] = asyncio.Queue()
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        self.call = stub.ImportGraph(self._requests(), metadata=metadata)

    async def _requests(self) -> AsyncIterator[pb.ImportGraphRequest]:
        while (request := await self._queue.get()) is not None:
            yield request

    def send(self, request: pb.ImportGraphRequest) -> None:
        self._queue.put_nowait(request)

    def close(self) -> None:
        """End the request stream (so its generator finishes even after the call did)."""
        self._queue.put_nowait(None)

    async def finish(self) -> Any:
        self.close()
        return await self.call


async def _record_usage(channel: grpc.aio.Channel, minter: Minter, tenant: uuid.UUID) -> float:
    """Seconds one RecordUsage of `tenant` takes (a write on another tenant's behalf)."""
    stub = billing_service_pb2_grpc.BillingServiceStub(channel)
    started = time.perf_counter()
    await stub.RecordUsage(
        billing.RecordUsageRequest(event_id=uuid.uuid4().hex, meter="api.call", quantity=1),
        metadata=minter.metadata(["billing.usage.write"], tenant=tenant),
        timeout=20,
    )
    return time.perf_counter() - started


async def _staged(database: Database, tenant: uuid.UUID) -> int:
    async with database.tenant_session(tenant, readonly=True) as session:
        return int(await session.scalar(select(func.count()).select_from(StagedEntityRow)) or 0)


async def _until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_an_idle_import_stream_holds_no_transaction(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        platform_on(database_url, tmp_path) as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as channel,
    ):
        minter = Minter(platform.settings)
        held = HeldStream(channel, minter.metadata(["analytics.write"], tenant=TENANT))
        held.send(ENTITIES)

        async def staged() -> bool:
            return await _staged(platform.database, TENANT) == 50

        await _until(staged)
        # The stream is idle now; another tenant writes as if it were not there.
        assert await _record_usage(channel, minter, OTHER_TENANT) < 5
        done = await held.finish()
        assert (done.entities_upserted, done.graph_revision) == (50, 1)
        assert await _staged(platform.database, TENANT) == 0


@pytest.mark.postgres
async def test_idle_streams_cannot_take_the_pool(postgres_schema_url: str, tmp_path: Path) -> None:
    async with (
        platform_on(postgres_schema_url, tmp_path) as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as channel,
    ):
        minter = Minter(platform.settings)
        streams = [
            HeldStream(channel, minter.metadata(["analytics.write"], tenant=uuid.uuid4()))
            for _ in range(16)
        ]
        for stream in streams:
            stream.send(ENTITIES)
        await asyncio.sleep(1.0)  # every stream has staged its batch and waits for more
        assert await _record_usage(channel, minter, OTHER_TENANT) < 5
        for stream in streams:
            assert (await stream.finish()).graph_revision == 1


async def _refusal(call: Any) -> ConductorError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return from_grpc_error(raised.value)


async def test_a_stream_idle_past_its_timeout_ends_and_leaves_nothing(tmp_path: Path) -> None:
    async with (
        serving(tmp_path / "var", stream_idle_timeout=0.5) as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as channel,
    ):
        held = HeldStream(channel, Minter(platform.settings).metadata(["analytics.write"]))
        held.send(ENTITIES)
        started = time.perf_counter()
        error = await _refusal(held.call)
        held.close()
        assert time.perf_counter() - started < 5
        assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert error.reason == ErrorReason.ERROR_REASON_DEADLINE_EXCEEDED
        assert "no message on the request stream" in error.details

        async def cleaned() -> bool:
            return await _staged(platform.database, TENANT) == 0

        await _until(cleaned)


async def test_a_stream_past_its_overall_deadline_ends(tmp_path: Path) -> None:
    async with (
        serving(tmp_path / "var", stream_idle_timeout=5, stream_max_duration=1) as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as channel,
    ):
        held = HeldStream(channel, Minter(platform.settings).metadata(["analytics.write"]))

        async def trickle() -> None:
            for index in range(100):
                held.send(pb.ImportGraphRequest(entities=[pb.Entity(id=f"t{index}", type="t")]))
                await asyncio.sleep(0.2)

        feeding = asyncio.create_task(trickle())
        try:
            error = await _refusal(held.call)
        finally:
            feeding.cancel()
            held.close()
        assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "longer than 1 s" in error.details


async def test_every_message_of_a_stream_is_held_to_its_bounds(tmp_path: Path) -> None:
    async with (
        serving(tmp_path / "var") as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as channel,
    ):
        metadata = Minter(platform.settings).metadata(["analytics.write"])
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        infinite = pb.Relationship(
            id="r", source_id="e1", target_id="e2", type="t", weight=float("inf")
        )
        huge = pb.Relationship(id="h", source_id="e1", target_id="e2", type="t", weight=1.7e308)
        fine = pb.Relationship(id="f", source_id="e1", target_id="e2", type="t", weight=1.0)
        cases = {
            "relationships[0].weight": [ENTITIES, pb.ImportGraphRequest(relationships=[infinite])],
            "relationships[1].weight": [
                ENTITIES,
                pb.ImportGraphRequest(relationships=[fine, huge]),
            ],
            "entities[0].id": [pb.ImportGraphRequest(entities=[pb.Entity(id="x" * 129)])],
            "entities": [
                pb.ImportGraphRequest(entities=[pb.Entity(id=f"e{i}") for i in range(5_001)])
            ],
        }
        for field, requests in cases.items():
            error = await _refusal(stub.ImportGraph(iter(requests), metadata=metadata))
            assert (error.code, error.metadata["field"]) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                field,
            )
            assert "inf" not in error.details
            assert "xxxx" not in error.details
        assert await _staged(platform.database, TENANT) == 0


async def test_one_tenant_holds_at_most_its_share_of_connections(database: Database) -> None:
    await upgrade(database.engine)
    database.shares = TenantShares(2, wait_s=0.3)
    release = asyncio.Event()
    opened = asyncio.Semaphore(0)

    async def hold(tenant: uuid.UUID) -> None:
        async with database.tenant_session(tenant, readonly=True):
            opened.release()
            await release.wait()

    holders = [asyncio.create_task(hold(TENANT)) for _ in range(2)]
    for _ in holders:
        await opened.acquire()
    # The tenant's share is taken: its third transaction is refused, others are not.
    with pytest.raises(ResourceExhausted):
        async with database.tenant_session(TENANT, readonly=True):
            pass
    async with database.tenant_session(OTHER_TENANT, readonly=True):
        pass
    release.set()
    await asyncio.gather(*holders)
    async with database.tenant_session(TENANT, readonly=True):
        pass


async def _revision(database: Database, tenant: uuid.UUID) -> int:
    async with database.tenant_session(tenant, readonly=True) as session:
        row = await session.get(GraphRevisionRow, tenant)
    return 0 if row is None else row.revision


@pytest.mark.parametrize("how", ["cancelled", "deadline"])
async def test_an_abandoned_import_commits_nothing(tmp_path: Path, how: str) -> None:
    """grpc ends an abandoned request stream as if the client had finished: it must not commit."""
    async with (
        serving(tmp_path / "var") as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as channel,
    ):
        metadata = Minter(platform.settings).metadata(["analytics.write"])
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        sent = asyncio.Event()

        async def one_batch_then_wait() -> AsyncIterator[pb.ImportGraphRequest]:
            yield ENTITIES
            sent.set()
            await asyncio.Event().wait()

        call = stub.ImportGraph(
            one_batch_then_wait(), metadata=metadata, timeout=1.0 if how == "deadline" else None
        )

        async def staged() -> bool:
            return await _staged(platform.database, TENANT) == 50

        await sent.wait()
        await _until(staged)
        if how == "cancelled":
            call.cancel()
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            await call

        async def cleaned() -> bool:
            return await _staged(platform.database, TENANT) == 0

        await _until(cleaned)
        assert await _revision(platform.database, TENANT) == 0
