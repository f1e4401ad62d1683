"""The edge cache through the platform: GraphQL reads cached, mutations invalidate, Edge RPCs."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    ConductorError,
    ErrorReason,
    bearer_token,
)
from intelgraph.sdk import edge as pb
from intelgraph.sdk.money import Money

from core.times import rfc3339
from servers.app import Platform
from servers.edge.cache import CacheKey, canonical_variables, scope_hash
from servers.edge.layer import EdgeLayer
from servers.facade import DEFAULT_OPERATIONS_DIR
from servers.facade.endpoint import read_fields
from servers.facade.operations import operation_id
from tests.support.serving import Minter, serving
from tests.support.webhooks import Webhook

pytestmark = pytest.mark.asyncio(loop_scope="module")

READER = ["billing.read", "edge.read"]
OPERATIONS = {
    path.stem: path.read_text() for path in Path(DEFAULT_OPERATIONS_DIR).glob("*.graphql")
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def webhook() -> AsyncIterator[Webhook]:
    """Where the platform pushes its leak alarms (every tenant's: filter by `tenant_id`)."""
    hook = Webhook()
    async with hook:
        yield hook


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, webhook: Webhook
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("var"),
        database_url=module_database_url,
        services="access,billing,edge",
        metering=False,
        webhook_urls=webhook.url,
    ) as running:
        yield running


class Tenant:
    """One tenant: persisted GraphQL reads over HTTP, and SDK clients with minted tokens."""

    def __init__(self, platform: Platform) -> None:
        self.id = uuid.uuid4()
        self.platform = platform
        self.minter = Minter(platform.settings)

    def token(self, scopes: list[str], subject: str = "alice") -> str:
        return self.minter(scopes, tenant=self.id, subject=subject)

    @contextlib.asynccontextmanager
    async def client(self, scopes: list[str]) -> AsyncIterator[AsyncClient]:
        """An SDK client calling with a token of `scopes` (alice's), closed on leaving."""
        token = bearer_token(self.token(scopes))
        async with AsyncClient(self.platform.grpc_target, INSECURE, token=token) as client:
            yield client

    async def read(
        self,
        name: str,
        variables: dict[str, Any] | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        token: str = "",
        **who: Any,
    ) -> tuple[dict[str, Any], str]:
        """Run a persisted operation: (the response, how the cache answered it)."""
        token = token or self.token(who.pop("scopes", READER), **who)
        async with contextlib.AsyncExitStack() as stack:
            if http is None:
                http = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.platform.http_port}")
                )
            response = await http.post(
                "/graphql",
                json={"id": operation_id(OPERATIONS[name]), "variables": variables or {}},
                headers={"authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.text
        return response.json(), response.headers.get("x-cache", "none")

    async def set_price(self, minor_units: int) -> None:
        async with self.client(["platform.admin"]) as operator:
            await operator.billing.set_price(
                tenant_id=str(self.id),
                meter="api.call",
                unit_price=Money(minor_units=minor_units, currency_code="USD"),
            )


@pytest.fixture
def tenant(platform: Platform) -> Tenant:
    return Tenant(platform)


def api_call_price(response: dict[str, Any]) -> int:
    prices = response["data"]["priceBook"]["prices"]
    return int(next(p for p in prices if p["meter"] == "api.call")["unitPrice"]["minorUnits"])


async def test_a_read_is_cached_and_a_mutation_over_grpc_invalidates_it(tenant: Tenant) -> None:
    first, kind = await tenant.read("PriceBook")
    assert kind == "miss"
    again, kind = await tenant.read("PriceBook")
    assert (again, kind) == (first, "hit")
    await tenant.set_price(777)
    changed, kind = await tenant.read("PriceBook")
    assert (api_call_price(changed), kind) == (777, "miss")  # read-your-write
    assert (await tenant.read("PriceBook"))[1] == "hit"
    async with tenant.client(READER) as reader:
        stats = (await reader.edge.get_cache_stats()).stats
    assert (stats.hits, stats.misses, stats.entries, stats.origin_calls) == (2, 2, 1, 2)
    assert 0 < stats.bytes <= stats.cap_bytes == 512 * 1024 * 1024


async def test_tenants_and_scopes_never_share_entries(platform: Platform, tenant: Tenant) -> None:
    other = Tenant(platform)
    await other.set_price(555)
    await tenant.set_price(333)
    for _ in range(2):
        mine, _ = await tenant.read("PriceBook")
        theirs, _ = await other.read("PriceBook")
        assert (api_call_price(mine), api_call_price(theirs)) == (333, 555)
    assert (await tenant.read("PriceBook", scopes=["billing.read"]))[1] == "miss"


async def test_a_mutation_through_the_facade_invalidates_per_caller_reads(tenant: Tenant) -> None:
    approver: dict[str, Any] = {"scopes": ["admin.write"], "subject": "bob"}
    listed, kind = await tenant.read("AccessRequests", **approver)
    assert (listed["data"]["accessRequests"], kind) == ([], "miss")
    assert (await tenant.read("AccessRequests", **approver))[1] == "hit"
    ends = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    made, kind = await tenant.read(
        "RequestAccess",
        {"scope": ["catalog.read"], "expiresAt": ends, "reason": "on call"},
        scopes=[],
        subject="alice",
    )
    assert kind == "none"  # mutations are never cached
    assert made["data"]["requestAccess"]
    listed, kind = await tenant.read("AccessRequests", **approver)
    assert (len(listed["data"]["accessRequests"]), kind) == (1, "miss")


async def test_purges_by_tag_and_whole_tenant(tenant: Tenant) -> None:
    await tenant.read("PriceBook")
    await tenant.read("SpendCap")
    async with tenant.client(["admin.write"]) as admin:
        purged = await admin.edge.purge(tags=["intelgraph.billing.v1.Price"])
        assert purged.generation >= 1
        reads = [(await tenant.read(name))[1] for name in ("PriceBook", "SpendCap")]
        assert reads == ["miss", "hit"]
        await admin.edge.purge(all=True)
        reads = [(await tenant.read(name))[1] for name in ("PriceBook", "SpendCap")]
        assert reads == ["miss", "miss"]
        for request, field in (
            (pb.PurgeRequest(tags=["intelgraph.billing.v1.Nothing"]), "tags"),
            (pb.PurgeRequest(), "tags"),
        ):
            with pytest.raises(ConductorError) as refused:
                await admin.edge.purge(request)
            assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.metadata["field"] == field


async def test_the_emergency_purge_needs_platform_admin_and_reaches_every_tenant(
    platform: Platform, tenant: Tenant
) -> None:
    await tenant.read("PriceBook")
    async with tenant.client(["admin.write"]) as admin:
        with pytest.raises(ConductorError) as refused:
            await admin.edge.purge_everything()
    assert refused.value.reason == ErrorReason.ERROR_REASON_PERMISSION_DENIED
    async with tenant.client(["platform.admin"]) as operator:
        done = await operator.edge.purge_everything(reason="drill")
    assert done.generation >= 1
    assert (await tenant.read("PriceBook"))[1] == "miss"


async def test_caps_are_set_by_operators_and_hold(platform: Platform, tenant: Tenant) -> None:
    async with (
        tenant.client(["admin.write"]) as admin,
        tenant.client(["platform.admin"]) as operator,
        tenant.client(READER) as reader,
    ):
        with pytest.raises(ConductorError) as refused:
            await admin.edge.set_tenant_cache_cap(tenant_id=str(tenant.id), cap_bytes=1)
        assert refused.value.reason == ErrorReason.ERROR_REASON_PERMISSION_DENIED
        await tenant.read("PriceBook")
        one = (await reader.edge.get_cache_stats()).stats
        cap = one.bytes + 100  # room for the one entry, not for another beside it
        stats = (
            await operator.edge.set_tenant_cache_cap(tenant_id=str(tenant.id), cap_bytes=cap)
        ).stats
        assert stats.cap_bytes == cap
        for name in ("PriceBook", "SpendCap", "PriceBook", "SpendCap"):
            await tenant.read(name)
        stats = (await reader.edge.get_cache_stats()).stats
        assert stats.bytes <= cap
        assert stats.evictions >= 2
        await operator.edge.set_tenant_cache_cap(tenant_id=str(tenant.id), cap_bytes=0)
    assert platform.component(EdgeLayer).cache.cap_of(str(tenant.id)) == 512 * 1024 * 1024


async def planted_foreign_entry(layer: EdgeLayer, tenant: Tenant) -> CacheKey:
    """The key of the tenant's cached PriceBook, its entry altered to say another tenant's."""
    await tenant.read("PriceBook")
    key = CacheKey(
        str(tenant.id),
        scope_hash(READER, jit=False),
        f"{operation_id(OPERATIONS['PriceBook'])}:",
        canonical_variables({}),
    )
    layer.cache.corrupt(key, tenant=str(uuid.uuid4()))
    return key


async def test_a_planted_entry_of_another_tenant_is_refused_listed_and_counted(
    platform: Platform, tenant: Tenant
) -> None:
    layer = platform.component(EdgeLayer)
    key = await planted_foreign_entry(layer, tenant)
    served, kind = await tenant.read("PriceBook")
    assert kind == "miss"
    assert "errors" not in served
    await layer.settled()
    async with tenant.client(READER) as reader:
        alarms = (await reader.edge.list_leak_alarms()).alarms
        assert [(alarm.reason, alarm.cache_key_hash) for alarm in alarms] == [
            ("tenant mismatch", key.digest)
        ]
        assert alarms[0].operation_id.startswith(operation_id(OPERATIONS["PriceBook"]))
        stats = (await reader.edge.get_cache_stats()).stats
    assert stats.leak_alarms == 1


async def test_a_leak_alarm_is_pushed_to_the_webhooks_without_the_entry_or_token(
    platform: Platform, tenant: Tenant, webhook: Webhook
) -> None:
    layer = platform.component(EdgeLayer)
    key = await planted_foreign_entry(layer, tenant)
    await tenant.read("PriceBook")
    await layer.settled()
    async with tenant.client(READER) as reader:
        (alarm,) = (await reader.edge.list_leak_alarms()).alarms
    (body,) = await webhook.received(
        1, lambda body: body["kind"] == "edge_leak_alarm" and body["tenant_id"] == str(tenant.id)
    )
    assert body == {
        "id": body["id"],
        "recipient": "operators",
        "kind": "edge_leak_alarm",
        "tenant_id": str(tenant.id),
        "alarm_id": alarm.id,
        "operation_id": alarm.operation_id,
        "reason": "tenant mismatch",
        "cache_key_hash": key.digest,
        "occurred_at": rfc3339(alarm.occurred_at.ToDatetime(tzinfo=UTC)),
    }
    assert webhook.idempotency_keys[webhook.bodies.index(body)] == body["id"]


async def test_the_graph_and_the_metrics_report_coverage(
    platform: Platform, tenant: Tenant
) -> None:
    async with tenant.client(READER) as reader:
        graph = await reader.edge.get_mutation_graph()
    assert graph.coverage == 1.0
    assert graph.covered_rpcs == graph.mutating_rpcs > 20
    approve = next(m for m in graph.mutations if m.method.endswith("/ApproveAccess"))
    assert "/intelgraph.access.v1.AccessService/ListAccessRequests" in approve.invalidated_reads
    assert "intelgraph.access.v1.AuditEvent" in approve.resource_types
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        text = (await http.get("/metrics")).text
    assert "edge_invalidation_coverage_ratio 1.0" in text
    for family in ("edge_cache_requests_total", "edge_cache_leak_alarms_total", "edge_cache_bytes"):
        assert f"# TYPE {family} " in text, family


async def test_uncacheable_reads_go_to_the_services(tenant: Tenant) -> None:
    denied, kind = await tenant.read("PriceBook", scopes=["edge.read"])
    assert kind == "none"
    assert denied["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    caller, kind = await tenant.read("Caller", subject="carol")
    assert (caller["data"]["caller"]["subject"], kind) == ("carol", "miss")
    caller, kind = await tenant.read("Caller", subject="dave")  # per caller: not carol's entry
    assert (caller["data"]["caller"]["subject"], kind) == ("dave", "miss")


@pytest.mark.slow
async def test_mixed_tenant_traffic_never_serves_another_tenants_or_stale_data(
    platform: Platform,
) -> None:
    """Fuzz through the platform: each tenant's price and cap are its marks; marks change."""
    rng = random.Random(5)
    tenants = [Tenant(platform) for _ in range(6)]
    marks: dict[uuid.UUID, tuple[int, int]] = {}

    async def mark(tenant: Tenant) -> None:
        price, cap = rng.randrange(1, 10**6), rng.randrange(1, 10**6)
        await tenant.set_price(price)
        async with tenant.client(["admin.write"]) as admin:
            await admin.billing.set_spend_cap(cap=Money(minor_units=cap, currency_code="USD"))
        marks[tenant.id] = (price, cap)

    for tenant in tenants:
        await mark(tenant)
    scopes = [READER, ["billing.read"], ["billing.read", "admin.write"]]
    tokens = {(t.id, index): t.token(s) for t in tenants for index, s in enumerate(scopes)}
    wrong = 0
    kinds: Counter[str] = Counter()
    base = f"http://127.0.0.1:{platform.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(50):  # 50 rounds of 20 concurrent reads: 1,000 requests
            asked = [
                (rng.choice(tenants), rng.choice(["PriceBook", "SpendCap"]), rng.randrange(3))
                for _ in range(20)
            ]
            answers = await asyncio.gather(
                *(
                    tenant.read(name, http=http, token=tokens[tenant.id, scope])
                    for tenant, name, scope in asked
                )
            )
            for (tenant, name, _), (response, kind) in zip(asked, answers, strict=True):
                kinds[kind] += 1
                price, cap = marks[tenant.id]
                if name == "PriceBook":
                    wrong += api_call_price(response) != price
                else:
                    held = response["data"]["spendCap"]["spendCap"]["cap"]["minorUnits"]
                    wrong += int(held) != cap
            if rng.random() < 0.3:
                await mark(rng.choice(tenants))  # read-your-write: the next round sees it
    assert wrong == 0
    assert kinds["hit"] > 500


async def test_a_second_token_of_the_same_caller_sees_its_own_token_id(tenant: Tenant) -> None:
    """The persisted Caller once answered a second token with the first one's id and expiry."""
    first, second = tenant.token(READER), tenant.token(READER)
    answers = []
    for token in (first, second, first, second):
        answer, _ = await tenant.read("Caller", token=token)
        answers.append(answer["data"]["caller"])
    ids = [tokens_id(token) for token in (first, second, first, second)]
    assert [caller["tokenId"] for caller in answers] == ids
    assert answers[0] == answers[2]  # the same token is still served from the cache


def tokens_id(token: str) -> str:
    import jwt  # noqa: PLC0415 - only this helper reads tokens

    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return str(claims["jti"])


async def test_no_cached_read_depends_on_the_token_beyond_its_key(
    platform: Platform, tenant: Tenant
) -> None:
    """For every persisted read the cache serves: answered uncached to two tokens of the same
    subject and scopes, the results are the same, or the contract keys it per token."""
    layer = platform.component(EdgeLayer)
    await tenant.set_price(123)
    scopes = [*READER, "admin.write", "catalog.read"]
    first, second = tenant.token(scopes), tenant.token(scopes)
    registry = platform.operations
    assert registry is not None
    checked = []
    for name, text in sorted(OPERATIONS.items()):
        persisted = registry.get(operation_id(text))
        if persisted is None:
            continue
        reads = read_fields(persisted.ast, None, platform.graphql_roots)
        plan = layer.plan(persisted.id, [root.method for root in reads]) if reads else None
        if plan is None:
            continue  # mutations and uncached reads
        await layer.cache.purge_everything()
        one, _ = await tenant.read(name, token=first)
        await layer.cache.purge_everything()
        two, _ = await tenant.read(name, token=second)
        assert "errors" not in one, (name, one)
        assert one == two or plan.per_token, f"{name} depends on the token but is shared"
        checked.append(name)
    assert "Caller" in checked
