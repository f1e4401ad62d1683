"""A running platform, in-process: every RPC with and without a token, health, HTTP endpoints.

One platform serves the whole module (starting one per test would dominate the run).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from intelgraph.common.v1 import authorization_pb2
from intelgraph.sdk import ErrorReason, UnauthenticatedError, from_grpc_error

from servers.app import Platform
from servers.config import load_settings
from servers.registry import all_services
from tests.support.serving import Minter
from tests.support.wire import invoke

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    var_dir: Path = tmp_path_factory.mktemp("var")
    running = Platform(load_settings(grpc_port=0, http_port=0, var_dir=var_dir))
    await running.start()
    yield running
    await running.stop(grace=0)


@pytest.fixture(scope="module")
def token(platform: Platform) -> tuple[tuple[str, str]]:
    """Metadata with a token holding every permission the contracts name."""
    return Minter(platform.settings).metadata(scopes=None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channel(platform: Platform) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.grpc_target) as opened:
        yield opened


ALL_METHODS = [
    (service.name, method) for service in all_services() for method in service.descriptor.methods
]


def _is_public(method: MethodDescriptor) -> bool:
    rule = method.GetOptions().Extensions[authorization_pb2.authorization]
    return rule.WhichOneof("rule") == "public"


@pytest.mark.parametrize(
    ("service_name", "method"), ALL_METHODS, ids=[f"{s}.{m.name}" for s, m in ALL_METHODS]
)
async def test_no_rpc_is_reachable_without_a_token_unless_public(
    channel: grpc.aio.Channel, service_name: str, method: MethodDescriptor
) -> None:
    if _is_public(method):
        await invoke(channel, method)  # answers, without any token
        return
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await invoke(channel, method)
    error = from_grpc_error(raised.value)
    assert isinstance(error, UnauthenticatedError)
    assert error.reason == ErrorReason.ERROR_REASON_TOKEN_MISSING


async def test_health_reports_serving_overall_and_per_service(
    platform: Platform, channel: grpc.aio.Channel
) -> None:
    # typeshed's HealthStub declares no methods.
    health: Any = health_pb2_grpc.HealthStub(channel)
    for name in ["", *(service.full_name for service in all_services())]:
        response = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == SERVING, name
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await health.Check(health_pb2.HealthCheckRequest(service="intelgraph.nope.v1.Nope"))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def test_http_serves_healthz_and_metrics(
    platform: Platform, channel: grpc.aio.Channel, token: tuple[tuple[str, str]]
) -> None:
    # A refused call is counted under its status: a read of an entity that does not exist.
    service = next(service for service in all_services() if service.name == "catalog")
    refused = service.descriptor.methods_by_name["GetEntity"]
    with pytest.raises(grpc.aio.AioRpcError):
        await invoke(channel, refused, token)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        healthz = await http.get("/healthz")
        readyz = await http.get("/readyz")
        metrics = await http.get("/metrics")
    assert healthz.status_code == 200
    assert healthz.json()["status"] == "serving"
    assert readyz.status_code == 200
    document = readyz.json()
    assert document["status"] == "serving"
    assert document["database"] == "ok"
    assert document["schema"] == "at head"
    assert len(document["services"]) == 6
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert any(line.startswith("conductor_build_info{") for line in lines)
    assert 'http_requests_total{area="healthz",code="200",method="GET"}' in metrics.text
    assert not [line for line in lines if "_created" in line.split(" ")[0]]
    handled = (
        f'grpc_server_handled_total{{grpc_code="NOT_FOUND",grpc_method="{refused.name}",'
        f'grpc_service="{service.full_name}",grpc_type="unary"}}'
    )
    assert handled in metrics.text
