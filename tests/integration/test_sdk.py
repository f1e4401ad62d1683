"""The generated SDK against a live platform, over the sync and the async client alike."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    Client,
    ErrorReason,
    JitExpiredError,
    JitGrant,
    JitRefusedError,
    JitTimeoutError,
    NotFoundError,
    Retry,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    access,
    analytics,
    bearer_token,
    billing,
    rag,
    request_jit,
    request_jit_async,
)

from servers.app import Platform
from tests.support.serving import TENANT, Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

KINDS = ["sync", "async"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("sdk")) as served:
        yield served


@pytest.fixture(scope="module")
def minter(platform: Platform) -> Minter:
    return Minter(platform.settings)


async def call(kind: str, target: str, token: str | None, use: Any) -> Any:
    """Run `use(client)` on a sync client (in a thread) or an async one; its result."""
    source = bearer_token(token) if token is not None else None
    if kind == "sync":

        def run() -> Any:
            with Client(target, INSECURE, token=source) as client:
                return use(client)

        return await asyncio.to_thread(run)
    async with AsyncClient(target, INSECURE, token=source) as client:
        outcome = use(client)
        return await outcome if asyncio.iscoroutine(outcome) else outcome


@pytest.mark.parametrize("kind", KINDS)
async def test_who_am_i(platform: Platform, minter: Minter, kind: str) -> None:
    caller = await call(
        kind, platform.grpc_target, minter(["catalog.read"]), lambda c: c.access.get_caller()
    )
    assert caller.subject == "alice"
    assert caller.tenant_id == str(TENANT)
    assert list(caller.scopes) == ["catalog.read"]


#: One read per service, the scope it needs, and what a new tenant gets (None: the RPC is
#: not built yet and must say so).
READS: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], bool] | None]] = {
    "access": ("audit.read", lambda c: c.access.verify_audit_chain(), lambda r: r.valid),
    "billing": ("billing.read", lambda c: c.billing.get_price_book(), lambda r: len(r.prices) > 0),
    "edge": ("edge.read", lambda c: c.edge.get_cache_stats(), lambda r: r.stats.entries == 0),
    "analytics": ("analytics.read", lambda c: c.analytics.list_packs(), lambda r: len(r.packs) > 0),
    "catalog": ("catalog.read", lambda c: c.catalog.list_entities(), lambda r: not r.entities),
    "rag": ("rag.read", lambda c: c.rag.list_purpose_templates(), lambda r: len(r.templates) > 2),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("service", sorted(READS))
async def test_every_service_answers_over_both_clients(
    platform: Platform, minter: Minter, kind: str, service: str
) -> None:
    scope, read, holds = READS[service]
    token = minter([scope], tenant=uuid.uuid4())
    if holds is None:
        with pytest.raises(UnimplementedError) as raised:
            await call(kind, platform.grpc_target, token, read)
        assert raised.value.reason is ErrorReason.ERROR_REASON_NOT_IMPLEMENTED
        return
    assert holds(await call(kind, platform.grpc_target, token, read))


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failure_raises_the_typed_error_of_its_reason(
    platform: Platform, kind: str
) -> None:
    with pytest.raises(UnauthenticatedError) as raised:
        await call(kind, platform.grpc_target, None, lambda c: c.access.get_caller())
    assert raised.value.reason == ErrorReason.ERROR_REASON_TOKEN_MISSING


@pytest.mark.parametrize("kind", KINDS)
async def test_keyword_fields_build_the_request(
    platform: Platform, minter: Minter, kind: str
) -> None:
    token = minter(["admin.write"])
    by_fields = await call(
        kind,
        platform.grpc_target,
        token,
        lambda c: c.access.list_access_requests(status=access.ACCESS_REQUEST_STATUS_PENDING),
    )
    by_message = await call(
        kind,
        platform.grpc_target,
        token,
        lambda c: c.access.list_access_requests(
            access.ListAccessRequestsRequest(status=access.ACCESS_REQUEST_STATUS_PENDING)
        ),
    )
    assert by_fields == by_message
    with pytest.raises(TypeError, match="not both"):
        await call(
            kind,
            platform.grpc_target,
            token,
            lambda c: c.access.list_access_requests(
                access.ListAccessRequestsRequest(), requester="x"
            ),
        )


def _batches() -> Iterator[analytics.ImportGraphRequest]:
    ids = [f"e{i}" for i in range(30)]
    yield analytics.ImportGraphRequest(
        entities=[analytics.Entity(id=i, type="person") for i in ids]
    )
    yield analytics.ImportGraphRequest(
        relationships=[
            analytics.Relationship(
                id=f"r{i}", source_id=ids[i], target_id=ids[(i * 7 + 1) % 30], weight=1.0
            )
            for i in range(30)
        ]
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_a_client_stream_in_and_a_pack_run(
    platform: Platform, minter: Minter, kind: str
) -> None:
    tenant = uuid.uuid4()
    token = minter(["analytics.read", "analytics.write"], tenant=tenant)

    def sync_use(client: Client) -> Any:
        imported = client.analytics.import_graph(_batches())
        ran = client.analytics.run_pack(
            pack_id="analytics.degreeTop:v1", parameters=analytics.PackParameters(top_k=3)
        )
        return imported, ran

    async def async_use(client: AsyncClient) -> Any:
        async def batches() -> AsyncIterator[analytics.ImportGraphRequest]:
            for batch in _batches():
                yield batch

        imported = await client.analytics.import_graph(batches())
        ran = await client.analytics.run_pack(
            pack_id="analytics.degreeTop:v1", parameters=analytics.PackParameters(top_k=3)
        )
        return imported, ran

    imported, ran = await call(
        kind, platform.grpc_target, token, sync_use if kind == "sync" else async_use
    )
    assert (imported.entities_upserted, imported.relationships_upserted) == (30, 30)
    assert len(ran.result.entities) == 3


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_stream_raises_typed_errors_while_iterating(
    platform: Platform, minter: Minter, kind: str
) -> None:
    token = minter(["rag.read"])
    missing = rag.ExportDocumentRequest(document_id=str(uuid.uuid4()), purpose="support")

    def sync_use(client: Client) -> Any:
        return list(client.rag.export_document(missing))

    async def async_use(client: AsyncClient) -> Any:
        return [chunk async for chunk in client.rag.export_document(missing)]

    with pytest.raises(NotFoundError):
        await call(kind, platform.grpc_target, token, sync_use if kind == "sync" else async_use)


async def test_plaintext_is_only_by_name() -> None:
    with pytest.raises(ValueError, match="insecure"):
        Client("127.0.0.1:1", "plaintext")


@pytest.mark.parametrize("kind", KINDS)
async def test_an_iterator_follows_the_page_tokens_to_the_end(
    platform: Platform, minter: Minter, kind: str
) -> None:
    tenant = uuid.uuid4()
    requester = minter(["catalog.read"], tenant=tenant, subject="carol")
    until = datetime.now(UTC) + timedelta(hours=1)

    async def request(client: AsyncClient) -> str:
        made = await client.access.request_access(scope=["catalog.read"], expires_at=_stamp(until))
        return made.access_request.id

    made = await call("async", platform.grpc_target, requester, lambda c: _five(request, c))
    admin = minter(["admin.write"], tenant=tenant, subject="dave")

    def sync_use(client: Client) -> list[str]:
        return [request.id for request in client.access.iter_access_requests(page_size=2)]

    async def async_use(client: AsyncClient) -> list[str]:
        return [r.id async for r in client.access.iter_access_requests(page_size=2)]

    listed = await call(
        kind, platform.grpc_target, admin, sync_use if kind == "sync" else async_use
    )
    assert sorted(listed) == sorted(made)
    assert len(listed) == len(set(listed)) == 5


@pytest.mark.parametrize("kind", KINDS)
async def test_an_import_from_iterables_is_batched_within_the_contract(
    platform: Platform, minter: Minter, kind: str
) -> None:
    tenant = uuid.uuid4()
    token = minter(["analytics.write"], tenant=tenant)
    count = 5_001  # one more than a batch may carry
    entities = (analytics.Entity(id=f"e{i}", type="t") for i in range(count))
    relationships = [analytics.Relationship(id="r", source_id="e0", target_id="e5000", weight=1)]

    def use(client: Client | AsyncClient) -> Any:
        return client.analytics.import_graph_from(entities=entities, relationships=relationships)

    imported = await call(kind, platform.grpc_target, token, use)
    assert (imported.entities_upserted, imported.relationships_upserted) == (count, 1)


@pytest.mark.parametrize("kind", KINDS)
async def test_file_helpers_reach_the_rpc_and_raise_its_typed_error(
    platform: Platform, minter: Minter, kind: str, tmp_path: Path
) -> None:
    token = minter(["rag.read", "rag.write"])
    text = b"The quarterly report is ready. It covers three regions and two products."
    metadata = rag.UploadMetadata(
        upload_id=str(uuid.uuid4()),
        filename="report.txt",
        size_bytes=len(text),
        sha256=hashlib.sha256(text).hexdigest(),
    )
    uploaded = await call(
        kind,
        platform.grpc_target,
        token,
        lambda c: c.rag.upload_document_from_file(text, metadata=metadata, chunk_bytes=16),
    )
    assert uploaded.document.sha256 == metadata.sha256
    summary = tmp_path / "summary.md"
    written = await call(
        kind,
        platform.grpc_target,
        token,
        lambda c: c.rag.export_document_to_file(
            summary,
            document_id=uploaded.document.id,
            purpose="support",
            format=rag.EXPORT_FORMAT_SUMMARY_MARKDOWN,
        ),
    )
    assert written == summary.stat().st_size > 0
    assert "The quarterly report is ready." in summary.read_text()
    with pytest.raises(NotFoundError):
        await call(
            kind,
            platform.grpc_target,
            token,
            lambda c: c.rag.export_document_to_file(
                tmp_path / "doc", document_id=str(uuid.uuid4()), purpose="support"
            ),
        )


async def _five(request: Callable[[AsyncClient], Any], client: AsyncClient) -> list[str]:
    return [await request(client) for _ in range(5)]


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- JIT: request, approval by someone else, claim, use until the grant ends -------------


def _approve_when_pending(target: str, token: str, decision: str, stop: threading.Event) -> None:
    """An approver: decides every pending request of its tenant until stopped."""
    with Client(target, INSECURE, token=bearer_token(token)) as approver:
        while not stop.wait(0.02):
            pending = approver.access.iter_access_requests(
                status=access.ACCESS_REQUEST_STATUS_PENDING
            )
            for request in pending:
                if decision == "approve":
                    approver.access.approve_access(id=request.id)
                else:
                    approver.access.deny_access(id=request.id)


@pytest.fixture
def tenant_pair(minter: Minter) -> Callable[[str], tuple[str, str]]:
    """A requester's and an approver's tokens in a new tenant."""

    def make(requester_scopes: str) -> tuple[str, str]:
        tenant = uuid.uuid4()
        requester = minter(requester_scopes.split(), tenant=tenant, subject="erin")
        return requester, minter(["admin.write"], tenant=tenant, subject="frank")

    return make


@pytest.mark.parametrize("kind", KINDS)
async def test_jit_access_is_requested_approved_claimed_and_used_until_it_ends(
    platform: Platform, kind: str, tenant_pair: Callable[[str], tuple[str, str]]
) -> None:
    requester, approver = tenant_pair("")
    stop = threading.Event()
    deciding = threading.Thread(
        target=_approve_when_pending, args=(platform.grpc_target, approver, "approve", stop)
    )
    deciding.start()
    try:
        if kind == "sync":

            def run() -> JitGrant:
                with Client(platform.grpc_target, INSECURE, token=bearer_token(requester)) as c:
                    return request_jit(
                        c, ["catalog.read"], lasting=timedelta(minutes=5), poll_s=0.05
                    )

            grant = await asyncio.to_thread(run)
        else:
            async with AsyncClient(
                platform.grpc_target, INSECURE, token=bearer_token(requester)
            ) as client:
                grant = await request_jit_async(
                    client, ["catalog.read"], lasting=timedelta(minutes=5), poll_s=0.05
                )
    finally:
        stop.set()
        await asyncio.to_thread(deciding.join)
    assert list(grant.grant.scope) == ["catalog.read"]
    assert timedelta(minutes=4) < grant.remaining() <= timedelta(minutes=5)
    caller = await call(kind, platform.grpc_target, grant.token, lambda c: c.access.get_caller())
    assert list(caller.scopes) == ["catalog.read"]
    assert caller.subject == "erin"
    ended = JitGrant(grant.grant, grant.token, clock=lambda: grant.ends_at)
    with pytest.raises(JitExpiredError):
        ended.token_source()()


async def test_a_denied_jit_request_raises_with_the_request(
    platform: Platform, tenant_pair: Callable[[str], tuple[str, str]]
) -> None:
    requester, approver = tenant_pair("")
    stop = threading.Event()
    deciding = threading.Thread(
        target=_approve_when_pending, args=(platform.grpc_target, approver, "deny", stop)
    )
    deciding.start()
    try:
        async with AsyncClient(
            platform.grpc_target, INSECURE, token=bearer_token(requester)
        ) as client:
            with pytest.raises(JitRefusedError, match="DENIED") as refused:
                await request_jit_async(
                    client, ["catalog.read"], lasting=timedelta(minutes=5), poll_s=0.05
                )
    finally:
        stop.set()
        await asyncio.to_thread(deciding.join)
    assert refused.value.request.status == access.ACCESS_REQUEST_STATUS_DENIED


async def test_an_undecided_jit_request_times_out_and_stays_pending(
    platform: Platform, tenant_pair: Callable[[str], tuple[str, str]]
) -> None:
    requester, _ = tenant_pair("")
    async with AsyncClient(platform.grpc_target, INSECURE, token=bearer_token(requester)) as c:
        with pytest.raises(JitTimeoutError) as waited:
            await request_jit_async(
                c, ["catalog.read"], lasting=timedelta(minutes=5), poll_s=0.05, wait_s=0.2
            )
        request = await c.access.get_access_request(id=waited.value.request.id)
    assert request.access_request.status == access.ACCESS_REQUEST_STATUS_PENDING


# --- Deadlines and retries, against a scripted server ----------------------------------
# Our platform never fails on cue, so these run the SDK against a small gRPC server that
# answers UNAVAILABLE as many times as told and records each attempt: what the client
# sent (metadata, request) and the deadline it carried.


class Scripted:
    """A gRPC server of three Access/Billing RPCs that fail the first `failures` attempts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: dict[str, list[tuple[Any, float | None]]] = {}
        self.server = grpc.aio.server()

    def _handler(self, name: str, request_class: Any, response: Any) -> Any:
        async def answer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            seen = self.attempts.setdefault(name, [])
            seen.append((request, context.time_remaining()))
            if len(seen) <= self.failures:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted outage")
            return response

        return grpc.unary_unary_rpc_method_handler(
            answer,
            request_deserializer=request_class.FromString,
            response_serializer=type(response).SerializeToString,
        )

    async def start(self) -> str:
        access_rpcs = {
            "GetCaller": self._handler(
                "GetCaller", access.GetCallerRequest, access.GetCallerResponse(subject="x")
            ),
            "RequestAccess": self._handler(
                "RequestAccess", access.RequestAccessRequest, access.RequestAccessResponse()
            ),
        }
        billing_rpcs = {
            "CreateRefund": self._handler(
                "CreateRefund", billing.CreateRefundRequest, billing.CreateRefundResponse()
            ),
            "RunReconciliation": self._handler(
                "RunReconciliation",
                billing.RunReconciliationRequest,
                billing.RunReconciliationResponse(),
            ),
        }
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "intelgraph.access.v1.AccessService", access_rpcs
                ),
                grpc.method_handlers_generic_handler(
                    "intelgraph.billing.v1.BillingService", billing_rpcs
                ),
            )
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{port}"


FAST = Retry(initial_backoff_s=0.01, max_backoff_s=0.05)


@pytest_asyncio.fixture(loop_scope="module")
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    server = Scripted(failures=2)
    target = await server.start()
    yield server, target
    await server.server.stop(grace=None)


@pytest.mark.parametrize("kind", KINDS)
async def test_reads_and_keyed_writes_are_retried_and_other_writes_are_not(
    scripted: tuple[Scripted, str], kind: str
) -> None:
    server, target = scripted

    def sync_use() -> None:
        with Client(target, INSECURE, token=bearer_token("t"), retry=FAST) as client:
            assert client.access.get_caller().subject == "x"
            client.billing.create_refund(invoice_id="i")
            with pytest.raises(UnavailableError):
                client.access.request_access(scope=["s"])

    async def async_use() -> None:
        async with AsyncClient(target, INSECURE, token=bearer_token("t"), retry=FAST) as client:
            assert (await client.access.get_caller()).subject == "x"
            await client.billing.create_refund(invoice_id="i")
            with pytest.raises(UnavailableError):
                await client.access.request_access(scope=["s"])

    await (asyncio.to_thread(sync_use) if kind == "sync" else async_use())
    assert len(server.attempts["GetCaller"]) == 3
    assert len(server.attempts["RequestAccess"]) == 1
    keys = {request.idempotency_key for request, _ in server.attempts["CreateRefund"]}
    assert len(server.attempts["CreateRefund"]) == 3
    assert len(keys) == 1  # the key the SDK made travels with every attempt
    assert keys != {""}


async def test_without_retries_a_read_fails_at_once(scripted: tuple[Scripted, str]) -> None:
    server, target = scripted
    async with AsyncClient(target, INSECURE, token=bearer_token("t"), retry=None) as client:
        with pytest.raises(UnavailableError):
            await client.access.get_caller()
    assert len(server.attempts["GetCaller"]) == 1


async def test_each_rpc_has_its_default_deadline_and_a_call_may_name_its_own(
    scripted: tuple[Scripted, str],
) -> None:
    server, target = scripted
    server.failures = 0
    async with AsyncClient(target, INSECURE, token=bearer_token("t")) as client:
        await client.access.get_caller()
        await client.billing.create_refund(invoice_id="i", idempotency_key="mine")
        await client.billing.run_reconciliation()
        await client.access.get_caller(timeout=2.5)
    remaining = {name: [left for _, left in seen] for name, seen in server.attempts.items()}
    # The server sees the deadline less the time in flight, rounded up by the wire format.
    assert remaining["GetCaller"][0] == pytest.approx(10, abs=0.5)  # a read
    assert remaining["GetCaller"][1] == pytest.approx(2.5, abs=0.5)  # named by the call
    assert remaining["CreateRefund"][0] == pytest.approx(30, abs=0.5)  # a write
    assert remaining["RunReconciliation"][0] == pytest.approx(120, abs=1.5)  # by the contract
    assert server.attempts["CreateRefund"][0][0].idempotency_key == "mine"
