"""The server process in-process: service subsets, draining, start-up errors."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from intelgraph.catalog.v1 import catalog_service_pb2 as catalog

from clients import ErrorReason, from_grpc_error
from interceptors import RpcMethod
from interceptors.validation import required_fields
from servers import app as app_module
from servers.app import Platform, StartupError
from servers.catalog.service import SERVICE as CATALOG
from servers.catalog.service import CatalogService
from servers.config import Settings
from servers.registry import all_services
from tests.conftest import Minter

SERVING = health_pb2.HealthCheckResponse.SERVING


def complete_request(method: MethodDescriptor, request: Any) -> Any:
    """`request` with a placeholder in every field the contract marks required."""
    rpc_method = RpcMethod(
        full_name=f"/{method.containing_service.full_name}/{method.name}",
        service=method.containing_service.full_name,
        name=method.name,
        request_streaming=method.client_streaming,
        response_streaming=method.server_streaming,
        descriptor=method,
    )
    for field in required_fields(rpc_method):
        if field.is_repeated:
            getattr(request, field.name).append("placeholder")
        elif field.message_type is not None and field.message_type.full_name.endswith("Timestamp"):
            getattr(request, field.name).GetCurrentTime()
        elif field.message_type is not None:
            getattr(request, field.name).SetInParent()
        else:
            setattr(request, field.name, "placeholder")
    return request


async def invoke(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    metadata: tuple[tuple[str, str], ...] = (),
    request: Any = None,
) -> Any:
    """Call any RPC (with an empty request by default), whatever its streaming kind."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    options = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    message = complete_request(method, request_class()) if request is None else request
    if method.client_streaming:
        requests = iter([message])
        if method.server_streaming:
            call = channel.stream_stream(path, **options)(requests, metadata=metadata)
            return [r async for r in call]
        return await channel.stream_unary(path, **options)(requests, metadata=metadata)
    if method.server_streaming:
        call = channel.unary_stream(path, **options)(message, metadata=metadata)
        return [r async for r in call]
    return await channel.unary_unary(path, **options)(message, metadata=metadata)


async def test_a_subset_of_services_serves_only_those(settings: Settings, minter: Minter) -> None:
    subset = Platform(settings.model_copy(update={"services": ("catalog", "rag")}))
    await subset.start()
    try:
        async with grpc.aio.insecure_channel(subset.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            served = await health.Check(
                health_pb2.HealthCheckRequest(service="intelgraph.rag.v1.RagService")
            )
            assert served.status == SERVING
            with pytest.raises(grpc.aio.AioRpcError) as not_served:
                await invoke(channel, all_services()[0].descriptor.methods[0], minter.metadata())
    finally:
        await subset.stop(grace=0)
    # gRPC itself answers for a service that is not there: no ErrorInfo, plain UNIMPLEMENTED.
    assert not_served.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert from_grpc_error(not_served.value).reason == ErrorReason.ERROR_REASON_UNSPECIFIED


class SlowCatalog(CatalogService):
    """A catalog whose GetService takes a while, to watch draining."""

    started = asyncio.Event()

    async def GetService(self, request: Any, context: Any) -> Any:
        SlowCatalog.started.set()
        await asyncio.sleep(0.5)
        return catalog.GetServiceResponse(service=catalog.Service(id=request.id))


async def test_draining_finishes_in_flight_calls_and_refuses_new_ones(
    settings: Settings, minter: Minter, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = dataclasses.replace(CATALOG, servicer_class=SlowCatalog)
    monkeypatch.setattr(app_module, "services_named", lambda _names: (slow,))
    SlowCatalog.started = asyncio.Event()
    platform = Platform(settings)
    await platform.start()
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        get_service = channel.unary_unary(
            "/intelgraph.catalog.v1.CatalogService/GetService",
            request_serializer=catalog.GetServiceRequest.SerializeToString,
            response_deserializer=catalog.GetServiceResponse.FromString,
        )
        metadata = minter.metadata(["catalog.read"])
        in_flight = asyncio.ensure_future(
            get_service(catalog.GetServiceRequest(id="svc-1"), metadata=metadata)
        )
        await SlowCatalog.started.wait()
        stopping = asyncio.create_task(platform.stop(grace=5))
        await asyncio.sleep(0.1)
        assert platform.state == "draining"
        async with grpc.aio.insecure_channel(platform.grpc_target) as late:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await late.unary_unary(
                    "/intelgraph.catalog.v1.CatalogService/GetService",
                    request_serializer=catalog.GetServiceRequest.SerializeToString,
                    response_deserializer=catalog.GetServiceResponse.FromString,
                )(catalog.GetServiceRequest(id="svc-2"), timeout=2, metadata=metadata)
        response = await in_flight
        await stopping
    assert response.service.id == "svc-1"
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert platform.state == "stopped"


async def test_a_taken_port_is_a_clear_start_up_error(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        blocked = Platform(settings.model_copy(update={"http_port": port}))
        with pytest.raises(StartupError, match=f"cannot bind HTTP to 127.0.0.1:{port}"):
            await blocked.start()
        assert blocked.state == "stopped"
        blocked_grpc = Platform(settings.model_copy(update={"grpc_port": port}))
        with pytest.raises(StartupError, match=f"cannot bind gRPC to 127.0.0.1:{port}"):
            await blocked_grpc.start()
