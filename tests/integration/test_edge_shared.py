"""Two replicas sharing the edge cache's Redis tier: entries, purges, one origin call per key."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as redis
from prometheus_client import REGISTRY

from servers.app import Platform
from servers.config import load_settings
from servers.edge.layer import EdgeLayer
from tests.integration.test_edge import Tenant, api_call_price

pytestmark = pytest.mark.asyncio

#: The bound the issue sets for an emergency purge to reach every replica.
PURGE_BOUND_S = 1.0


async def start_two(tmp_path: Path, **options: object) -> list[Platform]:
    """Two replicas on one SQLite store and key directory."""
    started = []
    for _replica in ("a", "b"):
        settings = load_settings(
            grpc_port=0,
            http_port=0,
            var_dir=tmp_path / "var",
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            auto_migrate=True,
            services="access,billing,edge",
            metering=False,
            **options,
        )
        platform = Platform(settings)
        await platform.start()
        started.append(platform)
    return started


@pytest_asyncio.fixture
async def replicas(tmp_path: Path, redis_url: str) -> AsyncIterator[list[Platform]]:
    prefix = f"test:edge:{uuid.uuid4().hex[:8]}:"
    started = await start_two(tmp_path, redis_url=redis_url, edge_redis_prefix=prefix)
    yield started
    for platform in started:
        await platform.stop(grace=0)
    client = redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@contextlib.asynccontextmanager
async def one_tenant(replicas: list[Platform]) -> AsyncIterator[list[Tenant]]:
    """The same tenant, seen through replica a and replica b."""
    tenant_id = uuid.uuid4()
    seen = [Tenant(replicas[0]), Tenant(replicas[1])]
    for tenant in seen:
        tenant.id = tenant_id
    yield seen


@pytest_asyncio.fixture
async def tenants(replicas: list[Platform]) -> AsyncIterator[list[Tenant]]:
    async with one_tenant(replicas) as seen:
        yield seen


def origin_calls(platform: Platform, tenant: Tenant) -> int:
    return platform.component(EdgeLayer).cache.space(str(tenant.id)).stats.origin_calls


async def until_changed(tenant: Tenant, name: str, before: object) -> float:
    """Seconds until the replica serves something other than `before`."""
    started = time.monotonic()
    while time.monotonic() - started < 5:
        now, _ = await tenant.read(name)
        if now != before:
            return time.monotonic() - started
        await asyncio.sleep(0.005)
    return float("inf")


async def test_an_entry_filled_on_one_replica_is_served_by_the_other(
    replicas: list[Platform], tenants: list[Tenant]
) -> None:
    a, b = tenants
    filled, kind = await a.read("PriceBook")
    assert kind == "miss"
    shared, kind = await b.read("PriceBook")
    assert (shared, kind) == (filled, "shared")
    assert (await b.read("PriceBook"))[1] == "hit"
    assert origin_calls(replicas[1], b) == 0


async def test_a_mutation_on_one_replica_invalidates_the_other(tenants: list[Tenant]) -> None:
    a, b = tenants
    await a.read("PriceBook")
    before, _ = await b.read("PriceBook")
    await a.set_price(4242)
    took = await until_changed(b, "PriceBook", before)
    assert took < PURGE_BOUND_S
    assert api_call_price((await b.read("PriceBook"))[0]) == 4242


async def test_the_emergency_purge_reaches_every_replica_within_a_second(
    tenants: list[Tenant],
) -> None:
    a, b = tenants
    await b.read("SpendCap")
    assert (await b.read("SpendCap"))[1] == "hit"
    async with a.client(["platform.admin"]) as operator:
        await operator.edge.purge_everything()
    started = time.monotonic()
    while (await b.read("SpendCap"))[1] == "hit":
        assert time.monotonic() - started < PURGE_BOUND_S
        await asyncio.sleep(0.005)


async def test_a_lost_announcement_is_caught_by_polling(
    replicas: list[Platform], tenants: list[Tenant], redis_url: str
) -> None:
    b = tenants[1]
    await b.read("PriceBook")
    shared = replicas[1].component(EdgeLayer).shared
    assert shared is not None
    client = redis.from_url(redis_url)
    caught = REGISTRY.get_sample_value("edge_cache_invalidations_caught_by_poll_total") or 0
    # A purge whose announcement never arrives: the counter moves, nothing is published.
    await client.hincrby(shared.generation_key, f"t:{b.id}", 1)
    await client.aclose()
    started = time.monotonic()
    while (await b.read("PriceBook"))[1] == "hit":
        assert time.monotonic() - started < PURGE_BOUND_S
        await asyncio.sleep(0.01)
    # Both replicas caught it by polling and, no announcement of it having come, say so.
    started = time.monotonic()
    while REGISTRY.get_sample_value("edge_cache_invalidations_caught_by_poll_total") != caught + 2:
        assert time.monotonic() - started < 3.0
        await asyncio.sleep(0.05)


async def test_announced_invalidations_are_never_counted_as_lost(
    tenants: list[Tenant],
) -> None:
    a, b = tenants
    caught = REGISTRY.get_sample_value("edge_cache_invalidations_caught_by_poll_total") or 0
    for price in range(200, 220):  # mutations on both replicas, polls running meanwhile
        await (a if price % 2 else b).set_price(price)
        await b.read("PriceBook")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # past the grace in which announcements are awaited
    assert REGISTRY.get_sample_value("edge_cache_invalidations_caught_by_poll_total") == caught


async def test_invalidations_still_reach_every_replica_after_redis_lost_its_counters(
    replicas: list[Platform], tenants: list[Tenant], redis_url: str
) -> None:
    a, b = tenants
    for price in (100, 101, 102):  # counters well past 1 on both replicas
        await a.set_price(price)
        await b.read("PriceBook")
    shared = replicas[0].component(EdgeLayer).shared
    assert shared is not None
    client = redis.from_url(redis_url)
    await client.delete(shared.generation_key)  # as a Redis restarted without persistence
    await client.aclose()
    await b.read("PriceBook")
    before, outcome = await b.read("PriceBook")
    assert outcome == "hit"
    await a.set_price(4343)  # its counter must pass what the replicas have already seen
    assert await until_changed(b, "PriceBook", before) < PURGE_BOUND_S
    assert api_call_price((await b.read("PriceBook"))[0]) == 4343


async def test_concurrent_misses_across_replicas_make_one_origin_call(
    replicas: list[Platform], tenants: list[Tenant]
) -> None:
    a, b = tenants
    results = await asyncio.gather(
        *(tenant.read("Invoices", {"pageSize": 7}) for _ in range(10) for tenant in (a, b))
    )
    assert len({str(body) for body, _ in results}) == 1
    assert origin_calls(replicas[0], a) + origin_calls(replicas[1], b) == 1


async def test_without_redis_processes_share_invalidations_through_the_store(
    tmp_path: Path,
) -> None:
    replicas = await start_two(tmp_path, edge_shared_counters=True)
    try:
        async with one_tenant(replicas) as (a, b):
            before, _ = await b.read("PriceBook")
            assert (await b.read("PriceBook"))[1] == "hit"
            await a.set_price(2468)
            took = await until_changed(b, "PriceBook", before)
            assert took < PURGE_BOUND_S
            assert api_call_price((await b.read("PriceBook"))[0]) == 2468
            async with a.client(["platform.admin"]) as operator:
                await operator.edge.purge_everything()
            started = time.monotonic()
            while (await b.read("PriceBook"))[1] == "hit":
                assert time.monotonic() - started < PURGE_BOUND_S
                await asyncio.sleep(0.01)
    finally:
        for platform in replicas:
            await platform.stop(grace=0)
