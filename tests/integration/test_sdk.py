"""The generated SDK against a live platform, over the sync and the async client alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    Client,
    ErrorReason,
    UnauthenticatedError,
    UnimplementedError,
    access,
    analytics,
    bearer_token,
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

    def sync_use(client: Client) -> Any:
        return list(client.rag.export_document(document_id=str(uuid.uuid4())))

    async def async_use(client: AsyncClient) -> Any:
        return [chunk async for chunk in client.rag.export_document(document_id=str(uuid.uuid4()))]

    with pytest.raises(UnimplementedError):
        await call(kind, platform.grpc_target, token, sync_use if kind == "sync" else async_use)


async def test_plaintext_is_only_by_name() -> None:
    with pytest.raises(ValueError, match="insecure"):
        Client("127.0.0.1:1", "plaintext")
