"""Request ids and access logs: a structured line per RPC and HTTP request, one id per call."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from intelgraph.catalog.v1 import catalog_service_pb2 as catalog
from intelgraph.catalog.v1 import catalog_service_pb2_grpc

from interceptors.tokens import subject_hash
from servers.app import Platform
from tests.support.scrapes import metric_moves
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("logs"), services="catalog,access") as running:
        yield running


@pytest.fixture
def token(platform: Platform) -> str:
    return Minter(platform.settings)(["catalog.read"], tenant=TENANT, subject="alice")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        record.msg
        for record in caplog.records
        if record.name == "conductor.access" and isinstance(record.msg, dict)
    ]


async def call(platform: Platform, metadata: list[tuple[str, str]], name: str) -> Any:
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        invocation: Any = (
            stub.ListEntities(catalog.ListEntitiesRequest(), metadata=metadata)
            if name == "list"
            else stub.GetEntity(catalog.GetEntityRequest(name=name), metadata=metadata)
        )
        with contextlib.suppress(grpc.aio.AioRpcError):
            await invocation
        return await invocation.trailing_metadata()


async def test_an_rpc_logs_one_line_with_its_request_id(
    platform: Platform, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conductor.access")
    metadata = [("authorization", f"Bearer {token}"), ("x-request-id", "req-42")]
    returned = await call(platform, metadata, "list")
    assert ("x-request-id", "req-42") in list(returned)
    (line,) = [entry for entry in access_lines(caplog) if entry.get("request_id") == "req-42"]
    assert line["event"] == "rpc"
    assert line["method"] == "/intelgraph.catalog.v1.CatalogService/ListEntities"
    assert line["code"] == "OK"
    assert line["tenant"] == str(TENANT)
    assert line["subject"] == subject_hash("alice")
    assert line["duration_ms"] >= 0
    assert line["peer"]
    assert line["level"] == "info"
    text = repr(line)
    assert token not in text
    assert "alice" not in text


async def test_ids_are_minted_when_missing_or_unfit(
    platform: Platform, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conductor.access")
    for given in ([], [("x-request-id", "<script>alert(1)</script>")]):
        returned = dict(
            await call(platform, [("authorization", f"Bearer {token}"), *given], "list")
        )
        minted = returned["x-request-id"]
        assert len(minted) == 32
        assert int(minted, 16) >= 0
        assert any(entry.get("request_id") == minted for entry in access_lines(caplog))


async def test_refusals_are_warnings_with_their_reason(
    platform: Platform, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conductor.access")
    await call(platform, [("authorization", f"Bearer {token}"), ("x-request-id", "nf-1")], "ghost")
    await call(platform, [("x-request-id", "anon-1")], "list")  # no token
    lines = {entry["request_id"]: entry for entry in access_lines(caplog)}
    missing = lines["nf-1"]
    assert (missing["code"], missing["reason"], missing["level"]) == (
        "NOT_FOUND",
        "ERROR_REASON_NOT_FOUND",
        "warning",
    )
    anonymous = lines["anon-1"]
    assert anonymous["code"] == "UNAUTHENTICATED"
    assert anonymous["reason"] == "ERROR_REASON_TOKEN_MISSING"
    assert "tenant" not in anonymous


async def test_a_graphql_call_carries_one_id_from_http_to_grpc(
    platform: Platform, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conductor.access")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        response = await http.post(
            "/graphql",
            json={"query": "{ entities { entities { name } } }"},
            headers={"authorization": f"Bearer {token}", "x-request-id": "gql-7"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "gql-7"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        metrics = (await http.get("/metrics")).text
    assert 'graphql_requests_total{operation="adhoc",outcome="ok"}' in metrics
    assert 'graphql_request_duration_seconds_count{operation="adhoc"}' in metrics
    lines = [entry for entry in access_lines(caplog) if entry.get("request_id") == "gql-7"]
    kinds = sorted(entry["event"] for entry in lines)
    assert kinds == ["http", "rpc"]
    http_line = next(entry for entry in lines if entry["event"] == "http")
    assert (http_line["method"], http_line["path"], http_line["status"]) == (
        "POST",
        "/graphql",
        200,
    )
    assert "token" not in repr(http_line)


async def test_refused_calls_are_counted_by_the_grpc_metrics_too(platform: Platform) -> None:
    labels = {
        "grpc_type": "unary",
        "grpc_service": "intelgraph.catalog.v1.CatalogService",
        "grpc_method": "ListEntities",
    }
    async with metric_moves(platform) as moved:
        await call(platform, [], "list")  # no token
        await call(platform, [("authorization", "Bearer not.a.token")], "list")
    assert moved("grpc_server_started_total", **labels) == 2
    assert moved("grpc_server_handled_total", grpc_code="UNAUTHENTICATED", **labels) == 2
    assert moved("grpc_server_handling_seconds_count", **labels) == 2
