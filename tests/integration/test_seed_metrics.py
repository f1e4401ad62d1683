"""The seed's metrics move with the actions they count, by exactly what those actions should add.

One platform serves every service these metrics belong to; each test scrapes
`/metrics` before and after its action and asserts the difference (counters
are process-global), or, for a gauge, the value the action sets. The metrics
do not depend on the store, so the platform runs on SQLite only: each
service's own tests cover PostgreSQL.

What-if usage (`catalog_whatif_total`) is asserted the same way in
`test_catalog.py::test_what_if_usage_is_counted_on_metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import AsyncClient, ConductorError, upload_document_async
from intelgraph.sdk import analytics as analytics_pb
from intelgraph.sdk import billing as billing_pb
from intelgraph.sdk.money import Money

from core.interfaces import CachedAnswer, CallerScope, Origin
from servers.access.workflow import AccessWorkflow
from servers.app import Platform
from servers.billing import reconciliation, records
from servers.billing.usage import record_usage
from servers.edge.cache import CacheKey, canonical_variables, scope_hash
from servers.edge.graph import Mutation, MutationGraph
from servers.edge.layer import EdgeLayer
from servers.facade.operations import operation_id
from tests.integration.test_edge import OPERATIONS, READER
from tests.integration.test_edge import Tenant as GraphQLTenant
from tests.support.clients import SdkClients
from tests.support.clocks import Clock
from tests.support.principals import principal
from tests.support.scrapes import metric_moves, scrape
from tests.support.serving import all_permissions, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("var"),
        services="access,analytics,billing,edge,rag",
        metering=False,
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def clients(platform: Platform) -> AsyncIterator[SdkClients]:
    async with contextlib.AsyncExitStack() as closing:
        yield SdkClients(platform.grpc_target, closing)


@dataclasses.dataclass
class Tenant:
    """A fresh tenant: its GraphQL reads, and SDK clients of its people."""

    graphql: GraphQLTenant
    clients: SdkClients

    @property
    def id(self) -> uuid.UUID:
        return self.graphql.id

    def as_(self, subject: str, scopes: list[str] | None = None) -> AsyncClient:
        """An SDK client of `subject` holding `scopes` (every permission when None)."""
        token = self.graphql.token(all_permissions() if scopes is None else scopes, subject)
        return self.clients.bearing(token)


@pytest.fixture
def tenant(platform: Platform, clients: SdkClients) -> Tenant:
    return Tenant(GraphQLTenant(platform), clients)


def usd(minor_units: int) -> Money:
    return Money(minor_units=minor_units, currency_code="USD")


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# -- edge ------------------------------------------------------------------------------------


async def test_concurrent_identical_reads_wait_on_one_origin_call_and_count_as_coalesced(
    platform: Platform, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = platform.component(EdgeLayer)
    answer = layer.answer
    released = asyncio.Event()

    async def held(
        caller: CallerScope,
        operation: str,
        reads: Sequence[MethodDescriptor],
        variables: Mapping[str, Any],
        origin: Origin,
    ) -> CachedAnswer | None:
        async def held_origin() -> tuple[bytes, bool]:
            await released.wait()  # the first read's origin call stays in flight till released
            return await origin()

        return await answer(caller, operation, reads, variables, held_origin)

    monkeypatch.setattr(layer, "answer", held)
    stats = layer.cache.space(str(tenant.id)).stats
    token = tenant.graphql.token(READER)
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http,
        metric_moves(platform) as moved,
    ):
        reads = [
            asyncio.create_task(tenant.graphql.read("PriceBook", http=http, token=token))
            for _ in range(10)
        ]
        async with asyncio.timeout(10):
            # Every other read waits on the first one's call; the cache only counts them.
            while stats.coalesced_waits < 9:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
        released.set()
        kinds = Counter(kind for _, kind in await asyncio.gather(*reads))
    assert kinds == {"miss": 1, "coalesced": 9}
    assert moved("edge_cache_requests_total", outcome="coalesced") == 9
    assert moved("edge_cache_requests_total", outcome="miss") == 1
    assert moved("edge_cache_origin_calls_total") == 1


async def test_a_refused_planted_entry_counts_one_leak_alarm(
    platform: Platform, tenant: Tenant
) -> None:
    layer = platform.component(EdgeLayer)
    await tenant.graphql.read("PriceBook")
    key = CacheKey(
        str(tenant.id),
        scope_hash(READER, jit=False),
        f"{operation_id(OPERATIONS['PriceBook'])}:",
        canonical_variables({}),
    )
    layer.cache.corrupt(key, tenant=str(uuid.uuid4()))
    async with metric_moves(platform) as moved:
        assert (await tenant.graphql.read("PriceBook"))[1] == "miss"  # refused, not served
        assert (await tenant.graphql.read("PriceBook"))[1] == "hit"  # the refill is clean
    assert moved("edge_cache_leak_alarms_total") == 1


async def test_coverage_is_the_share_of_mutations_that_invalidate_a_read(
    platform: Platform,
) -> None:
    served = platform.component(EdgeLayer)
    assert (await scrape(platform)).value("edge_invalidation_coverage_ratio") == 1.0
    covered, mutating = served.graph.coverage()
    assert covered == mutating > 20
    # A contract gains a mutation that touches no type a read is tagged with.
    orphan = "/intelgraph.orphan.v1.OrphanService/Forget"
    graph = MutationGraph(
        reads=dict(served.graph.reads),
        mutations={
            **served.graph.mutations,
            orphan: Mutation(orphan, frozenset(), invalidated_reads=(), implemented=True),
        },
    )
    try:
        EdgeLayer(platform.database, platform.runtime.engine, graph)
        ratio = (await scrape(platform)).value("edge_invalidation_coverage_ratio")
        assert ratio == pytest.approx(mutating / (mutating + 1))
    finally:  # the served contracts again: the gauge is process-global
        EdgeLayer(platform.database, platform.runtime.engine, served.graph)
    assert (await scrape(platform)).value("edge_invalidation_coverage_ratio") == 1.0


# -- billing ---------------------------------------------------------------------------------


async def invoice_of(tenant: Tenant, quantity: int) -> billing_pb.Invoice:
    """A finalized invoice of `quantity` API calls at $0.01."""
    operator = tenant.as_("operator")
    await operator.billing.set_rollout(
        tenant_id=str(tenant.id), stage=billing_pb.ROLLOUT_STAGE_PILOT
    )
    await operator.billing.set_price(
        tenant_id=str(tenant.id), meter="api.call", unit_price=usd(1), per_quantity=1
    )
    recorded = await operator.billing.record_usage(
        event_id=uuid.uuid4().hex, meter="api.call", quantity=quantity
    )
    finalized = await operator.billing.finalize_invoice(id=recorded.event.invoice_id)
    assert finalized.invoice.status == billing_pb.INVOICE_STATUS_FINALIZED
    return finalized.invoice


async def test_credit_notes_issued_count_each_note_once(platform: Platform, tenant: Tenant) -> None:
    invoice = await invoice_of(tenant, 500)
    billing = tenant.as_("alice").billing
    note = billing_pb.CreateCreditNoteRequest(
        invoice_id=invoice.id,
        amount=usd(100),
        reason=billing_pb.CREDIT_NOTE_REASON_OTHER,
        idempotency_key="once",
    )
    async with metric_moves(platform) as moved:
        await billing.preview_credit_note(
            invoice_id=invoice.id, amount=usd(100), reason=billing_pb.CREDIT_NOTE_REASON_OTHER
        )
        first = await billing.create_credit_note(note)
        again = await billing.create_credit_note(note)  # a retry: the same note
        assert again.credit_note.id == first.credit_note.id
        with pytest.raises(ConductorError):  # more than is left to credit: refused
            await billing.create_credit_note(
                invoice_id=invoice.id,
                amount=usd(10**6),
                reason=billing_pb.CREDIT_NOTE_REASON_OTHER,
            )
        await billing.create_credit_note(
            invoice_id=invoice.id, amount=usd(50), reason=billing_pb.CREDIT_NOTE_REASON_OTHER
        )
    assert moved("billing_credit_notes_issued_total") == 2


#: Rated usage of seven reconciled days before the day under test, in cents.
HISTORY = [1000, 1020, 1040, 1000, 1020, 1040, 1000]


async def test_reconciliation_sets_the_tenants_variance_zscore_and_drift(
    platform: Platform, tenant: Tenant
) -> None:
    operator = tenant.as_("operator")
    await operator.billing.set_price(
        tenant_id=str(tenant.id), meter="api.call", unit_price=usd(1), per_quantity=1
    )
    # The history is booked at noon of the days before today, through the billing domain:
    # the platform's clock is the wall's, and only a day's own usage makes its total.
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for days_ago, quantity in zip(range(len(HISTORY), 0, -1), HISTORY, strict=True):
        at = noon - timedelta(days=days_ago)
        async with platform.database.tenant_session(tenant.id) as session:
            await record_usage(session, tenant.id, uuid.uuid4().hex, "api.call", quantity, at, at)
            await reconciliation.reconcile(session, tenant.id, at.date(), at)
    recorded = await operator.billing.record_usage(
        event_id="outlier", meter="api.call", quantity=9000
    )
    day = recorded.event.recorded_at.ToDatetime().date().isoformat()
    labels = {"tenant": str(tenant.id)}
    report = (await operator.billing.run_reconciliation(day=day)).report
    assert report.drift.minor_units == 0
    after = await scrape(platform)
    # Robust z: 0.6745 (x - median) / MAD; median 1020, MAD 20 (deviations 0,0,20,20,20,20,20).
    assert statistics.median(HISTORY) == 1020
    assert after.value("billing_variance_zscore", **labels) == pytest.approx(
        0.6745 * (9000 - 1020) / 20
    )
    assert after.value("billing_reconciliation_drift_minor_units", **labels) == 0
    # A usage entry booked without its event: the ledger drifts 7 cents from what was metered.
    async with platform.database.tenant_session(tenant.id) as session:
        records.ledger(
            session,
            tenant.id,
            "usage",
            7,
            "USD",
            uuid.UUID(recorded.event.invoice_id),
            "stray",
            recorded.event.recorded_at.ToDatetime(tzinfo=UTC),
        )
    report = (await operator.billing.run_reconciliation(day=day)).report
    assert (report.drift.minor_units, report.alert) == (7, True)
    after = await scrape(platform)
    assert after.value("billing_reconciliation_drift_minor_units", **labels) == 7
    assert after.value("billing_variance_zscore", **labels) == pytest.approx(
        0.6745 * (9007 - 1020) / 20  # the stray entry is billed usage too
    )


# -- rag -------------------------------------------------------------------------------------


async def test_summaries_are_counted_per_purpose_each_time_one_is_written(
    platform: Platform, tenant: Tenant
) -> None:
    rag = tenant.as_("alice", ["rag.read", "rag.write"]).rag
    text = b"# Review\n\nThe upgrade was paused. The cluster recovered. Latency stayed high.\n"
    uploaded = await upload_document_async(rag, text, filename="review.md", chunk_bytes=256)
    document = uploaded.document
    async with metric_moves(platform) as moved:
        for purpose in ("support", "support", "legal-review"):
            await rag.summarize(document_id=document.id, purpose=purpose)
        with pytest.raises(ConductorError):  # an unknown purpose writes nothing
            await rag.summarize(document_id=document.id, purpose="gossip")
    assert moved("rag_summaries_total", purpose="support") == 2
    assert moved("rag_summaries_total", purpose="legal-review") == 1


# -- access ----------------------------------------------------------------------------------

HOUR = timedelta(hours=1)


async def test_grant_decision_time_is_observed_once_per_decision(
    platform: Platform, tenant: Tenant
) -> None:
    alice = tenant.as_("alice", ["catalog.read"]).access
    bob, carol = (tenant.as_(name, ["admin.write"]).access for name in ("bob", "carol"))
    started = time.perf_counter()
    async with metric_moves(platform) as moved:
        ends = timestamp(datetime.now(UTC) + HOUR)
        twice = (
            await alice.request_access(scope=["billing.write"], expires_at=ends, reason="month end")
        ).access_request
        assert twice.approvals_required == 2
        first = await bob.approve_access(id=twice.id)
        assert not first.HasField("grant")  # not a decision yet
        assert (await carol.approve_access(id=twice.id)).HasField("grant")
        denied = (
            await alice.request_access(scope=["catalog.read"], expires_at=ends, reason="on call")
        ).access_request
        await carol.deny_access(id=denied.id)
    elapsed = time.perf_counter() - started
    assert moved("access_grant_decision_seconds_count") == 2
    assert 0 < moved("access_grant_decision_seconds_sum") <= 2 * elapsed


async def test_grant_decision_time_is_the_time_since_the_request(
    platform: Platform, tenant: Tenant
) -> None:
    clock = Clock()
    flow = AccessWorkflow(dataclasses.replace(platform.runtime, clock=clock))
    alice = principal(tenant.id, "alice", ["catalog.read"])
    bob = principal(tenant.id, "bob", ["admin.write"])
    async with metric_moves(platform) as moved:
        request = await flow.request_access(alice, ["catalog.read"], clock() + HOUR, "on call")
        clock.advance(90)
        _, _, grant = await flow.approve(bob, str(request.id), None, "")
        assert grant is not None
    assert moved("access_grant_decision_seconds_count") == 1
    assert moved("access_grant_decision_seconds_sum") == 90
    assert moved("access_grant_decision_seconds_bucket", le="60.0") == 0
    assert moved("access_grant_decision_seconds_bucket", le="300.0") == 1


# -- analytics -------------------------------------------------------------------------------

PACK = "analytics.degreeTop:v1"


async def test_each_pack_run_is_one_latency_observation_of_its_pack(
    platform: Platform, tenant: Tenant
) -> None:
    analytics = tenant.as_("alice", ["analytics.read", "analytics.write"]).analytics
    graph = analytics_pb.ImportGraphRequest(
        entities=[analytics_pb.Entity(id=f"e{i}", type="person") for i in range(3)],
        relationships=[
            analytics_pb.Relationship(id="r1", source_id="e0", target_id="e1", weight=1.0),
            analytics_pb.Relationship(id="r2", source_id="e1", target_id="e2", weight=1.0),
        ],
    )
    async with metric_moves(platform) as moved:
        with pytest.raises(ConductorError):  # no graph yet: refused, not timed
            await analytics.run_pack(pack_id=PACK)
    assert moved("analytics_pack_seconds_count", pack=PACK) == 0
    await analytics.import_graph(iter([graph]))
    await analytics.run_pack(pack_id=PACK)  # the workers' first start is not what is measured
    async with metric_moves(platform) as moved:
        started = time.perf_counter()
        await analytics.run_pack(pack_id=PACK)
        elapsed = time.perf_counter() - started
    assert moved("analytics_pack_seconds_count", pack=PACK) == 1
    assert 0 < moved("analytics_pack_seconds_sum", pack=PACK) <= elapsed
    # The p95 the alert reads comes from the buckets: the run is in every one at or above it.
    bounds = [
        dict(labels)["le"]
        for name, labels in moved.after.samples
        if name == "analytics_pack_seconds_bucket" and ("pack", PACK) in labels
    ]
    above = [le for le in bounds if float(le) >= elapsed]
    assert "+Inf" in above
    for le in above:
        assert moved("analytics_pack_seconds_bucket", pack=PACK, le=le) == 1, le
