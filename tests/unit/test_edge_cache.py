"""The edge cache on its own: coalescing, freshness, caps, generations, the leak detector."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from interceptors.policy import PolicyEngine
from servers.edge.cache import (
    EVERY_TENANT,
    CacheKey,
    EdgeCache,
    Freshness,
    canonical_variables,
    scope_hash,
)
from servers.edge.layer import rego_detector
from tests.support.clocks import SecondsClock

pytestmark = pytest.mark.asyncio

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())
SCOPE = scope_hash(["billing.read"], jit=False)
FRESH = Freshness(ttl_s=30.0, grace_s=10.0, tags=frozenset({"intelgraph.billing.v1.Invoice"}))


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine()


class Harness:
    """A cache, a clock, the alarms it raised and an origin that counts its calls."""

    def __init__(self, engine: PolicyEngine, **options: Any) -> None:
        self.clock = SecondsClock()
        self.alarms: list[tuple[str, str, str, str]] = []
        self.cache = EdgeCache(
            rego_detector(engine),
            lambda *alarm: self.alarms.append(alarm),
            clock=self.clock,
            **options,
        )
        self.calls = 0
        self.version = 0

    def origin(
        self, tenant: str, *, delay: float = 0.0, fail: bool = False, cacheable: bool = True
    ) -> Callable[[], Awaitable[tuple[bytes, bool]]]:
        async def call() -> tuple[bytes, bool]:
            self.calls += 1
            await asyncio.sleep(delay)
            if fail:
                raise RuntimeError("the service is down")
            body = json.dumps({"tenant": tenant, "version": self.version}).encode()
            return body, cacheable

        return call

    async def read(self, key: CacheKey, **origin: Any) -> tuple[dict[str, Any], str]:
        outcome = await self.cache.fetch(key, FRESH, self.origin(key.tenant, **origin))
        return json.loads(outcome.body), outcome.kind


def key_of(tenant: str, variables: dict[str, Any] | None = None, scope: str = SCOPE) -> CacheKey:
    return CacheKey(tenant, scope, "op:Invoices", canonical_variables(variables or {}))


async def test_concurrent_identical_misses_make_one_origin_call(engine: PolicyEngine) -> None:
    harness = Harness(engine)
    results = await asyncio.gather(*(harness.read(key_of(ALICE), delay=0.05) for _ in range(50)))
    assert harness.calls == 1
    assert sorted(kind for _, kind in results).count("coalesced") == 49
    stats = harness.cache.space(ALICE).stats
    assert (stats.misses, stats.coalesced_waits, stats.origin_calls) == (50, 49, 1)
    assert (await harness.read(key_of(ALICE)))[1] == "hit"


async def test_without_coalescing_every_miss_calls_the_origin(engine: PolicyEngine) -> None:
    harness = Harness(engine, coalescing=False)
    await asyncio.gather(*(harness.read(key_of(ALICE), delay=0.05) for _ in range(10)))
    assert harness.calls == 10


async def test_a_cancelled_first_caller_does_not_cancel_the_others(engine: PolicyEngine) -> None:
    harness = Harness(engine)
    first = asyncio.create_task(harness.read(key_of(ALICE), delay=0.1))
    await asyncio.sleep(0.01)
    others = [asyncio.create_task(harness.read(key_of(ALICE), delay=0.1)) for _ in range(5)]
    await asyncio.sleep(0.01)
    first.cancel()
    results = await asyncio.gather(*others)
    assert all(body["tenant"] == ALICE for body, _ in results)
    assert harness.calls == 1
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await harness.read(key_of(ALICE)))[1] == "hit"


async def test_an_origin_error_reaches_every_waiter_and_is_not_cached(
    engine: PolicyEngine,
) -> None:
    harness = Harness(engine)
    failures = await asyncio.gather(
        *(harness.read(key_of(ALICE), delay=0.05, fail=True) for _ in range(8)),
        return_exceptions=True,
    )
    assert all(isinstance(failure, RuntimeError) for failure in failures)
    assert harness.calls == 1
    assert (await harness.read(key_of(ALICE)))[1] == "miss"
    assert harness.calls == 2


async def test_uncacheable_results_reach_waiters_but_are_not_stored(engine: PolicyEngine) -> None:
    harness = Harness(engine)
    results = await asyncio.gather(
        *(harness.read(key_of(ALICE), delay=0.02, cacheable=False) for _ in range(4))
    )
    assert harness.calls == 1
    assert len(results) == 4
    assert (await harness.read(key_of(ALICE), cacheable=False))[1] == "miss"


async def test_fresh_then_stale_while_one_refresh_then_never_past_the_grace(
    engine: PolicyEngine,
) -> None:
    harness = Harness(engine)
    assert (await harness.read(key_of(ALICE)))[1] == "miss"
    harness.clock.now += 29.9
    assert (await harness.read(key_of(ALICE)))[1] == "hit"
    harness.version = 2
    harness.clock.now += 0.2  # 30.1 s: past the TTL, within the grace
    stale = await asyncio.gather(*(harness.read(key_of(ALICE), delay=0.02) for _ in range(5)))
    assert {kind for _, kind in stale} == {"stale"}
    assert {body["version"] for body, _ in stale} == {0}
    await harness.cache.idle()
    assert harness.calls == 2  # one background refresh for five stale hits
    body, kind = await harness.read(key_of(ALICE))
    assert (body["version"], kind) == (2, "hit")
    harness.version = 3
    harness.clock.now += 40.01  # past TTL + grace of the refreshed entry
    body, kind = await harness.read(key_of(ALICE))
    assert (body["version"], kind) == (3, "miss")


async def test_a_noisy_tenant_evicts_only_its_own_entries(engine: PolicyEngine) -> None:
    harness = Harness(engine, default_cap=20_000)
    await harness.read(key_of(BOB, {"n": 0}))
    for n in range(500):
        await harness.read(key_of(ALICE, {"n": n}))
        assert harness.cache.space(ALICE).entries.currsize <= 20_000
    alice, bob = harness.cache.space(ALICE), harness.cache.space(BOB)
    assert alice.stats.evictions > 400
    assert (bob.stats.evictions, len(bob.entries)) == (0, 1)
    assert (await harness.read(key_of(BOB, {"n": 0})))[1] == "hit"
    harness.cache.set_cap(ALICE, 1_000)
    assert alice.entries.currsize <= 1_000 < harness.cache.space(ALICE).entries.maxsize + 1


async def test_invalidation_is_by_tag_tenant_and_platform(engine: PolicyEngine) -> None:
    harness = Harness(engine)
    for tenant in (ALICE, BOB):
        await harness.read(key_of(tenant))
    await harness.cache.invalidate(ALICE, ["intelgraph.billing.v1.Invoice"])
    assert (await harness.read(key_of(ALICE)))[1] == "miss"
    assert (await harness.read(key_of(BOB)))[1] == "hit"
    await harness.cache.invalidate(ALICE, ["intelgraph.access.v1.Grant"])  # not its tag
    assert (await harness.read(key_of(ALICE)))[1] == "hit"
    await harness.cache.invalidate(EVERY_TENANT, ["intelgraph.billing.v1.Invoice"])
    assert [(await harness.read(key_of(t)))[1] for t in (ALICE, BOB)] == ["miss", "miss"]
    await harness.cache.purge(BOB)
    assert [(await harness.read(key_of(t)))[1] for t in (ALICE, BOB)] == ["hit", "miss"]
    generation = await harness.cache.purge_everything()
    assert generation == 1
    assert [(await harness.read(key_of(t)))[1] for t in (ALICE, BOB)] == ["miss", "miss"]


async def test_a_mutation_during_the_fill_keeps_its_result_out(engine: PolicyEngine) -> None:
    harness = Harness(engine)
    reading = asyncio.create_task(harness.read(key_of(ALICE), delay=0.05))
    await asyncio.sleep(0.01)
    await harness.cache.invalidate(ALICE, ["intelgraph.billing.v1.Invoice"])
    await reading
    assert (await harness.read(key_of(ALICE)))[1] == "miss"


async def test_a_lost_invalidation_is_fenced_by_ttl_and_grace(engine: PolicyEngine) -> None:
    """Chaos "purge hook lost": staleness is bounded by TTL + grace, measured here."""
    harness = Harness(engine)
    await harness.read(key_of(ALICE))
    harness.version = 1
    harness.cache.drop_invalidations = 1
    await harness.cache.invalidate(ALICE, ["intelgraph.billing.v1.Invoice"])  # lost
    changed_at = harness.clock.now
    stale_until = changed_at
    while True:
        body, _ = await harness.read(key_of(ALICE))
        await harness.cache.idle()
        if body["version"] == 1:
            break
        stale_until = harness.clock.now
        harness.clock.now += 0.5
    staleness = stale_until - changed_at
    assert 0 < staleness <= FRESH.ttl_s + FRESH.grace_s


async def test_an_entry_of_another_tenant_is_refused_and_raised(engine: PolicyEngine) -> None:
    harness = Harness(engine)
    await harness.read(key_of(ALICE))
    bobs = json.dumps({"tenant": BOB, "version": 0}).encode()
    harness.cache.corrupt(key_of(ALICE), tenant=BOB, body=bobs)  # as if a bug stored Bob's here
    body, kind = await harness.read(key_of(ALICE))
    assert (body["tenant"], kind) == (ALICE, "miss")
    assert [(tenant, reason) for tenant, _, reason, _ in harness.alarms] == [
        (ALICE, "tenant mismatch")
    ]
    assert harness.alarms[0][3] == key_of(ALICE).digest
    assert harness.cache.space(ALICE).stats.leak_alarms == 1


async def test_an_entry_of_another_scope_is_refused(engine: PolicyEngine) -> None:
    harness = Harness(engine)
    await harness.read(key_of(ALICE))
    harness.cache.corrupt(key_of(ALICE), scope_hash=scope_hash(["admin.write"], jit=False))
    assert (await harness.read(key_of(ALICE)))[1] == "miss"
    assert [reason for _, _, reason, _ in harness.alarms] == ["scope mismatch"]


async def test_ten_thousand_mixed_tenant_requests_serve_no_tenant_anothers_data(
    engine: PolicyEngine,
) -> None:
    """Fuzz: tenants' data is marked; mixed requests, invalidations, purges and corruptions."""
    harness = Harness(engine, default_cap=64_000)
    tenants = [str(uuid.uuid4()) for _ in range(12)]
    scopes = [scope_hash(["billing.read"], jit=False), scope_hash(["admin.write"], jit=False)]
    rng = random.Random(8)
    cross = 0
    planted = 0
    for step in range(10_000):
        tenant = rng.choice(tenants)
        key = key_of(tenant, {"page": rng.randrange(30)}, rng.choice(scopes))
        roll = rng.random()
        if roll < 0.02:
            await harness.cache.invalidate(tenant, ["intelgraph.billing.v1.Invoice"])
        elif roll < 0.025:
            await harness.cache.purge(tenant)
        elif roll < 0.03 and key.digest in harness.cache.space(tenant).entries:
            other = rng.choice(tenants)  # another tenant's entry, stored under this key
            marked = json.dumps({"tenant": other, "version": -1}).encode()
            harness.cache.corrupt(key, tenant=other, scope_hash=rng.choice(scopes), body=marked)
            planted += 1
        body, _ = await harness.read(key)
        cross += body["tenant"] != tenant
        harness.clock.now += rng.random() * (2.0 if step % 100 else 60.0)
    assert cross == 0
    assert planted > 0
    refused = len(harness.alarms)
    assert 0 < refused <= planted  # a planted entry that was still its own is no leak
