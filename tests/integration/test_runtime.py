"""The server process in-process: service subsets, draining, start-up errors."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import shutil
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis.asyncio as redis
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from intelgraph.catalog.v1 import catalog_service_pb2 as catalog
from intelgraph.catalog.v1 import catalog_service_pb2_grpc
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    ConductorError,
    ErrorReason,
    UnimplementedError,
    bearer_token,
)
from sqlalchemy import text

from servers import app as app_module
from servers.app import Platform, StartupError
from servers.catalog.service import SERVICE as CATALOG
from servers.catalog.service import CatalogService
from servers.config import Settings
from servers.facade import DEFAULT_OPERATIONS_DIR as OPERATIONS
from servers.facade.operations import operation_id
from servers.registry import all_services
from servers.runtime import PlatformServicer
from tests.support.serving import IN_CI, Minter
from tests.support.wire import complete_request, rpc_path

SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_a_subset_of_services_serves_only_those(settings: Settings, minter: Minter) -> None:
    subset = Platform(settings.model_copy(update={"services": ("catalog", "rag")}))
    await subset.start()
    unserved = all_services()[0].descriptor.methods[0]  # AccessService's first RPC, a unary one
    request = complete_request(unserved, message_factory.GetMessageClass(unserved.input_type)())
    try:
        # Health is gRPC's own service, not the platform's: the SDK has no client for it.
        async with grpc.aio.insecure_channel(subset.grpc_target) as channel:
            # typeshed's HealthStub declares no methods.
            health: Any = health_pb2_grpc.HealthStub(channel)
            served = await health.Check(
                health_pb2.HealthCheckRequest(service="intelgraph.rag.v1.RagService")
            )
            assert served.status == SERVING
        token = bearer_token(minter())
        async with AsyncClient(subset.grpc_target, INSECURE, token=token) as client:
            with pytest.raises(ConductorError) as not_served:
                await client.by_path(rpc_path(unserved))(request)
    finally:
        await subset.stop(grace=0)
    # gRPC itself answers for a service that is not there: no ErrorInfo, plain UNIMPLEMENTED.
    assert not_served.value.code is grpc.StatusCode.UNIMPLEMENTED
    assert not_served.value.reason == ErrorReason.ERROR_REASON_UNSPECIFIED


class SlowCatalog(CatalogService):
    """A catalog whose GetEntity takes a while, to watch draining."""

    started = asyncio.Event()

    async def GetEntity(self, request: Any, context: Any) -> Any:
        SlowCatalog.started.set()
        await asyncio.sleep(0.5)
        return catalog.GetEntityResponse(entity=catalog.Entity(name=request.name))


class UnbuiltCatalog(PlatformServicer, catalog_service_pb2_grpc.CatalogServiceServicer):
    """A catalog that builds none of its RPCs (every service builds all of its own now)."""


async def test_an_unbuilt_rpc_says_what_will_build_it(
    settings: Settings, minter: Minter, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = dataclasses.replace(
        CATALOG, servicer_class=UnbuiltCatalog, capability="a later issue's catalog"
    )
    monkeypatch.setattr(app_module, "services_named", lambda _names: (bare,))
    platform = Platform(settings)
    await platform.start()
    try:
        token = bearer_token(minter(["catalog.read"]))
        async with AsyncClient(platform.grpc_target, INSECURE, token=token) as client:
            with pytest.raises(UnimplementedError) as refused:
                await client.catalog.get_entity(name="api")
    finally:
        await platform.stop(grace=0)
    error = refused.value
    assert error.reason == ErrorReason.ERROR_REASON_NOT_IMPLEMENTED
    assert error.metadata["method"] == "/intelgraph.catalog.v1.CatalogService/GetEntity"
    assert error.metadata["capability"] == "a later issue's catalog"
    assert "not built yet" in error.details
    assert bare.unbuilt_rpcs() == [m.name for m in CATALOG.descriptor.methods]
    assert CATALOG.unbuilt_rpcs() == []


async def test_draining_finishes_in_flight_calls_and_refuses_new_ones(
    settings: Settings, minter: Minter, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = dataclasses.replace(CATALOG, servicer_class=SlowCatalog)
    monkeypatch.setattr(app_module, "services_named", lambda _names: (slow,))
    SlowCatalog.started = asyncio.Event()
    platform = Platform(settings)
    await platform.start()
    token = bearer_token(minter(["catalog.read"]))
    async with AsyncClient(platform.grpc_target, INSECURE, token=token) as client:
        in_flight = asyncio.ensure_future(client.catalog.get_entity(name="svc-1"))
        await SlowCatalog.started.wait()
        stopping = asyncio.create_task(platform.stop(grace=5))
        await asyncio.sleep(0.1)
        assert platform.state == "draining"
        # Without retries: the one attempt made while draining is what is refused.
        async with AsyncClient(platform.grpc_target, INSECURE, token=token, retry=None) as late:
            with pytest.raises(ConductorError) as refused:
                await late.catalog.get_entity(name="svc-2", timeout=2)
        response = await in_flight
        await stopping
    assert response.entity.name == "svc-1"
    assert refused.value.code is grpc.StatusCode.UNAVAILABLE
    assert platform.state == "stopped"


async def test_draining_never_fails_a_graphql_request_on_a_kept_alive_connection(
    settings: Settings, minter: Minter
) -> None:
    """A request sent on a kept-alive HTTP connection after SIGTERM is answered or refused
    a connection, never failed with UNAVAILABLE (its fields call this process's gRPC)."""
    platform = Platform(settings)
    await platform.start()
    token = minter(["admin.write"])
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.http_port)

    async def read_access_requests(size: int) -> bytes:
        body = json.dumps(
            {"id": operation_id((OPERATIONS / "AccessRequests.graphql").read_text()),
             "variables": {"pageSize": size}}
        ).encode()  # fmt: skip
        writer.write(
            b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head + await reader.readexactly(length)

    try:
        assert b'"errors"' not in await read_access_requests(7)
        stopping = asyncio.create_task(platform.stop(grace=5))
        await asyncio.sleep(0.03)
        try:
            answer = await read_access_requests(8)  # a new page size: not in the cache
        except (asyncio.IncompleteReadError, ConnectionError):
            answer = b""  # the connection was closed: the client goes elsewhere
        assert b"UNAVAILABLE" not in answer
        assert answer == b"" or b'"errors"' not in answer
        await stopping
    finally:
        writer.close()
        if platform.state != "stopped":
            await platform.stop(grace=0)


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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/nowhere",
        "postgresql+psycopg:///nowhere?host=/nonexistent&password=hunter2",
    ],
)
async def test_an_unreachable_database_is_one_line_naming_the_setting(
    settings: Settings, url: str
) -> None:
    platform = Platform(settings.model_copy(update={"database_url": url}))
    with pytest.raises(StartupError) as refused:
        await platform.start()
    message = str(refused.value)
    assert "CONDUCTOR_DATABASE_URL / --database-url" in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_a_database_file_that_cannot_be_made_is_one_line(settings: Settings) -> None:
    settings.var_dir.mkdir(parents=True)
    (settings.var_dir / "afile").write_text("")
    url = f"sqlite+aiosqlite:///{settings.var_dir / 'afile' / 'store.db'}"
    with pytest.raises(StartupError, match=r"cannot create the database file .*: File exists"):
        Platform(settings.model_copy(update={"database_url": url}))


async def test_a_database_that_refuses_writes_does_not_serve(settings: Settings) -> None:
    ready = Platform(settings)  # creates and migrates the file
    await ready.start()
    await ready.stop(grace=0)
    path = settings.var_dir / "conductor.db"
    read_only = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    platform = Platform(settings.model_copy(update={"database_url": read_only}))
    with pytest.raises(StartupError, match=r"refuses writes .*: attempt to write a readonly"):
        await platform.start()


async def test_healthz_turns_unhealthy_when_the_database_stops_taking_writes(
    settings: Settings,
) -> None:
    platform = Platform(settings)
    await platform.start()
    try:
        assert (await platform.health_report())[0]
        refuse = (
            "CREATE TRIGGER refuse_writes BEFORE INSERT ON job_leases "
            "BEGIN SELECT RAISE(ABORT, 'no more writes'); END"
        )
        async with platform.database.engine.begin() as connection:
            await connection.execute(text(refuse))
        await platform.check_writes()
        healthy, document = await platform.health_report()
        assert (healthy, document["database"]) == (False, "refuses writes: no more writes")
        async with platform.database.engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER refuse_writes"))
        await platform.check_writes()
        assert (await platform.health_report())[0]
    finally:
        await platform.stop(grace=0)


async def test_files_that_hold_secrets_are_private(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    platform = Platform(settings)
    await platform.start()
    await platform.stop(grace=0)
    database = settings.var_dir / "conductor.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    database.chmod(0o644)
    settings.signing_keys_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        again = Platform(settings)
        await again.start()
        await again.stop(grace=0)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert f"the database file {database} is open to others (mode 0644)" in warned
    assert f"{settings.signing_keys_dir} is open to others" in warned


async def _health(platform: Platform, service: str) -> int:
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        return int(answer.status)


async def test_redis_down_is_reported_but_keeps_the_replica_serving(
    settings: Settings, tmp_path: Path
) -> None:
    """A private Redis stopped and started again: readiness and gRPC health follow it."""
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is needed in CI")
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]

    async def redis_server() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "redis-server", *command, stdout=asyncio.subprocess.DEVNULL
        )

    server = await redis_server()
    url = f"redis://127.0.0.1:{port}/0"
    platform = Platform(settings.model_copy(update={"redis_url": url}))
    try:
        await _until(lambda: _redis_answers(url))
        await platform.start()
        catalog_name = "intelgraph.catalog.v1.CatalogService"
        await platform.watch_readiness()
        assert (await platform.health_report())[0]
        assert await _health(platform, catalog_name) == health_pb2.HealthCheckResponse.SERVING
        server.terminate()
        await server.wait()
        await platform.watch_readiness()
        ready, document = await platform.health_report()
        # Reported, but still ready: every replica falls back without Redis, and pulling
        # them all out of rotation would make its outage the platform's.
        assert ready
        assert str(document["redis"]).startswith("unreachable")
        assert document["status"] == "degraded"
        assert await _health(platform, "") == health_pb2.HealthCheckResponse.SERVING
        assert await _health(platform, catalog_name) == health_pb2.HealthCheckResponse.SERVING
        server = await redis_server()
        await _until(lambda: _redis_answers(url))
        await platform.watch_readiness()
        ready, document = await platform.health_report()
        assert (ready, document["redis"]) == (True, "ok")
        assert document["status"] != "degraded"
    finally:
        await platform.stop(grace=0)
        if server.returncode is None:
            server.terminate()
            await server.wait()


async def _redis_answers(url: str) -> bool:
    client = redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check` (another process's state: nothing to wait on but time) for 10 s at most."""
    async with asyncio.timeout(10):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_metrics_can_be_served_on_a_private_port(settings: Settings) -> None:
    platform = Platform(settings.model_copy(update={"metrics_port": 0}))
    await platform.start()
    try:
        assert platform.metrics_port is not None
        assert platform.metrics_port != platform.http_port
        async with httpx.AsyncClient() as http:
            public = await http.get(f"http://127.0.0.1:{platform.http_port}/metrics")
            private = await http.get(f"http://127.0.0.1:{platform.metrics_port}/metrics")
            health = await http.get(f"http://127.0.0.1:{platform.metrics_port}/healthz")
    finally:
        await platform.stop(grace=0)
    assert public.status_code == 404
    assert private.status_code == 200
    assert "conductor_build_info" in private.text
    assert health.status_code == 404  # only metrics there
