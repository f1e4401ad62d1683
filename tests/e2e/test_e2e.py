"""End to end: `conductor` as a subprocess, driven by the real grpcurl and plain HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from intelgraph.access.v1 import access_service_pb2 as access
from intelgraph.access.v1 import access_service_pb2_grpc

from servers.db.migrate import head_revision
from servers.facade import DEFAULT_OPERATIONS_DIR
from tests.support.processes import (
    BIN,
    Served,
    run_conductor,
    start_conductor,
)

pytestmark = pytest.mark.e2e

TENANT = "0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e"

GRPCURL = str(BIN / "grpcurl")
SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "intelgraph.access.v1.AccessService",
    "intelgraph.analytics.v1.AnalyticsService",
    "intelgraph.billing.v1.BillingService",
    "intelgraph.catalog.v1.CatalogService",
    "intelgraph.edge.v1.EdgeService",
    "intelgraph.rag.v1.RagService",
]


@pytest.fixture
def conductor(tmp_path: Path) -> Iterator[Served]:
    served = start_conductor(tmp_path, "--grpc-port", "0", "--http-port", "0")
    yield served
    served.close()


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=20, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_grpcurl_lists_the_six_services_health_and_reflection(conductor: Served) -> None:
    listed = grpcurl(conductor.grpc, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == SERVICES


def test_grpcurl_sees_health_serving(conductor: Served) -> None:
    for service in ["", "intelgraph.billing.v1.BillingService"]:
        checked = grpcurl(
            "-d", json.dumps({"service": service}), conductor.grpc, "grpc.health.v1.Health/Check"
        )
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout) == {"status": "SERVING"}


def test_grpcurl_describes_the_contracts_through_reflection(conductor: Served) -> None:
    described = grpcurl(conductor.grpc, "describe", "intelgraph.access.v1.AccessService")
    assert described.returncode == 0, described.stderr
    assert "rpc RequestAccess ( .intelgraph.access.v1.RequestAccessRequest )" in described.stdout
    assert "(.intelgraph.common.v1.authorization)" in described.stdout
    # With the contracts' comments: what the service and each RPC are for.
    assert "// AccessService runs least privilege on demand" in described.stdout
    assert "// Requests scopes until a time; the policy decides what is requestable." in (
        described.stdout
    )
    message = grpcurl(conductor.grpc, "describe", "intelgraph.access.v1.RequestAccessRequest")
    assert message.returncode == 0, message.stderr
    assert "// Scopes requested." in message.stdout


def mint(tmp_path: Path, scopes: str, ttl: str = "15m") -> str:
    """A token from `conductor token mint`, with the keys the served platform uses."""
    minted = run_conductor(
        tmp_path, "token", "mint", "--tenant", TENANT, "--scopes", scopes, "--ttl", ttl
    )
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def test_grpcurl_with_a_minted_token_gets_through(conductor: Served, tmp_path: Path) -> None:
    token = mint(tmp_path, "catalog.read")
    whoami = grpcurl(
        "-H", f"authorization: Bearer {token}",
        "-d", "{}", conductor.grpc, "intelgraph.access.v1.AccessService/GetCaller",
    )  # fmt: skip
    assert whoami.returncode == 0, whoami.stderr
    caller = json.loads(whoami.stdout)
    assert caller["tenant_id"] == TENANT  # grpcurl prints proto field names
    assert caller["scopes"] == ["catalog.read"]
    anonymous = grpcurl("-d", "{}", conductor.grpc, "intelgraph.access.v1.AccessService/GetCaller")
    assert anonymous.returncode != 0
    assert "Code: Unauthenticated" in anonymous.stderr
    assert "ERROR_REASON_TOKEN_MISSING" in anonymous.stderr


def test_grpcurl_gets_the_public_key_set_without_a_token(conductor: Served) -> None:
    jwks = grpcurl("-d", "{}", conductor.grpc, "intelgraph.access.v1.AccessService/GetJwks")
    assert jwks.returncode == 0, jwks.stderr
    (key,) = json.loads(jwks.stdout)["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")


def test_graphql_through_a_real_client_in_production_mode(tmp_path: Path) -> None:
    served = start_conductor(
        tmp_path, "--grpc-port", "0", "--http-port", "0", CONDUCTOR_ENVIRONMENT="production"
    )
    token = mint(tmp_path, "catalog.read")

    async def exercise() -> None:
        transport = HTTPXAsyncTransport(
            url=f"http://{served.http}/graphql", headers={"authorization": f"Bearer {token}"}
        )
        async with Client(transport=transport) as session:
            # A persisted operation (gql re-prints it; the canonical form matches).
            persisted = gql((DEFAULT_OPERATIONS_DIR / "Caller.graphql").read_text())
            result = await session.execute(persisted)
            assert result["caller"]["tenantId"] == TENANT
            assert result["caller"]["scopes"] == ["catalog.read"]
            # An ad-hoc document is refused for a caller without admin.write.
            with pytest.raises(TransportQueryError) as refused:
                await session.execute(gql("{ caller { subject } }"))
            assert refused.value.errors is not None
            assert refused.value.errors[0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"

    try:
        asyncio.run(exercise())
    finally:
        assert served.stop() == 0


def test_a_refusal_carries_its_machine_readable_reason(conductor: Served, tmp_path: Path) -> None:
    token = mint(tmp_path, "catalog.read")
    called = grpcurl(
        "-H", f"authorization: Bearer {token}",
        "-d", '{"name": "no-such-service"}', conductor.grpc,
        "intelgraph.catalog.v1.CatalogService/GetEntity",
    )  # fmt: skip
    assert called.returncode != 0
    assert "Code: NotFound" in called.stderr
    assert "no entity is called" in called.stderr
    assert '"reason":"ERROR_REASON_NOT_FOUND"' in called.stderr
    assert '"domain":"intelgraph"' in called.stderr


def test_http_healthz_and_metrics(conductor: Served) -> None:
    assert grpcurl(conductor.grpc, "list").returncode == 0  # a call to count
    with urllib.request.urlopen(f"http://{conductor.http}/healthz", timeout=5) as response:
        assert json.load(response)["status"] == "serving"
    with urllib.request.urlopen(f"http://{conductor.http}/readyz", timeout=5) as response:
        document = json.load(response)
    assert document["status"] == "serving"
    assert document["database"] == "ok"
    with urllib.request.urlopen(f"http://{conductor.http}/metrics", timeout=5) as response:
        assert b"grpc_server_started_total" in response.read()


def test_sigterm_drains_and_exits_cleanly(conductor: Served) -> None:
    assert conductor.stop() == 0
    log = "".join(conductor.log)
    assert "conductor draining" in log
    assert "conductor stopped" in log
    assert "Traceback" not in log


def test_start_up_to_serving_is_quick(conductor: Served) -> None:
    # A loose bound that catches regressions (e.g. an import that costs seconds);
    # bench/startup.py measures the figure properly.
    print(f"start-up to SERVING: {conductor.ready_after_s:.2f}s")
    assert conductor.ready_after_s < 10


def test_workers_share_the_ports_and_drain_together(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    served = start_conductor(
        tmp_path, "--workers", "2", "--grpc-port", str(grpc_port), "--http-port", str(http_port)
    )
    try:
        # The supervisor logs each worker's serving line; wait for the second.
        deadline = time.monotonic() + 20
        while sum("conductor serving" in line for line in served.log) < 2:
            assert time.monotonic() < deadline, "".join(served.log)
            time.sleep(0.05)
        pids = set()
        for _ in range(40):
            url = f"http://127.0.0.1:{http_port}/healthz"
            with urllib.request.urlopen(url, timeout=5) as response:
                pids.add(json.load(response)["pid"])
        assert len(pids) == 2, "connections should reach both workers"
        listed = grpcurl(f"127.0.0.1:{grpc_port}", "list")
        assert listed.returncode == 0, listed.stderr
        # Either worker answers the scrape with both workers' counts; a worker
        # publishes its counts within a second.
        deadline = time.monotonic() + 5
        while True:
            url = f"http://127.0.0.1:{http_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                if b"grpc_server_started_total" in response.read():
                    break
            assert time.monotonic() < deadline, "the call never showed in /metrics"
            time.sleep(0.2)
    finally:
        code = served.stop(timeout=30)
    assert code == 0, "".join(served.log)
    assert sum("conductor stopped" in line for line in served.log) == 2


def test_a_second_server_on_a_taken_port_fails_loudly(conductor: Served, tmp_path: Path) -> None:
    port = conductor.grpc.rsplit(":", 1)[1]
    second = run_conductor(tmp_path / "second", "serve", "--grpc-port", port, "--http-port", "0")
    assert second.returncode == 1
    assert f"cannot bind gRPC to 127.0.0.1:{port}" in second.stderr


def test_bad_configuration_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    refused = run_conductor(
        tmp_path,
        "serve",
        "--grpc-port",
        "70000",
        "--services",
        "access,nope",
        env={"CONDUCTOR_WORKERS": "zero"},
    )
    assert refused.returncode == 2
    assert "CONDUCTOR_GRPC_PORT / --grpc-port: Input should be less than or equal to 65535" in (
        refused.stderr
    )
    assert "CONDUCTOR_SERVICES / --services: unknown service(s) nope" in refused.stderr
    assert "CONDUCTOR_WORKERS / --workers" in refused.stderr


def test_migrate_brings_a_database_to_head(tmp_path: Path) -> None:
    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        return run_conductor(tmp_path, "migrate", *args)

    assert migrate("--check").returncode == 1
    upgraded = migrate()
    assert upgraded.returncode == 0, upgraded.stderr
    checked = migrate("--check")
    assert checked.returncode == 0
    head = head_revision()
    assert f"schema at {head}, head is {head}" in checked.stdout


@pytest.mark.postgres
def test_serving_postgres_needs_a_migrated_schema(tmp_path: Path, postgres_schema_url: str) -> None:
    env = {"CONDUCTOR_DATABASE_URL": postgres_schema_url}
    refused = run_conductor(tmp_path, "serve", "--grpc-port", "0", "--http-port", "0", env=env)
    assert refused.returncode == 1
    assert "run `conductor migrate`" in refused.stderr
    migrated = run_conductor(tmp_path, "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    served = start_conductor(tmp_path, "--grpc-port", "0", "--http-port", "0", **env)
    try:
        with urllib.request.urlopen(f"http://{served.http}/readyz", timeout=5) as response:
            assert json.load(response)["database"] == "ok"
    finally:
        assert served.stop() == 0


@pytest.mark.postgres
def test_two_replicas_share_revocations_within_a_second(
    tmp_path: Path, postgres_schema_url: str, redis_url: str
) -> None:
    shared = {
        "CONDUCTOR_DATABASE_URL": postgres_schema_url,
        "CONDUCTOR_REDIS_URL": redis_url,
        "CONDUCTOR_KEYS_DIR": str(tmp_path / "keys"),
    }
    assert run_conductor(tmp_path, "keys", "rotate", env=shared).returncode == 0
    assert run_conductor(tmp_path, "migrate", env=shared).returncode == 0
    replicas = [
        start_conductor(tmp_path / name, "--grpc-port", "0", "--http-port", "0", **shared)
        for name in ("a", "b")
    ]

    def token(subject: str, scopes: str) -> tuple[tuple[str, str]]:
        minted = run_conductor(
            tmp_path, "token", "mint", "--tenant", TENANT, "--scopes", scopes, "--sub", subject,
            env=shared,
        )  # fmt: skip
        return (("authorization", f"Bearer {minted.stdout.strip()}"),)

    async def exercise() -> float:
        alice, bob = token("alice", "catalog.read"), token("bob", "admin.write")
        async with (
            grpc.aio.insecure_channel(replicas[0].grpc) as a,
            grpc.aio.insecure_channel(replicas[1].grpc) as b,
        ):
            on_a = access_service_pb2_grpc.AccessServiceStub(a)
            on_b = access_service_pb2_grpc.AccessServiceStub(b)
            expires = Timestamp()
            expires.FromDatetime(datetime.now(UTC) + timedelta(minutes=10))
            requested = await on_a.RequestAccess(
                access.RequestAccessRequest(scope=["rag.read"], expires_at=expires), metadata=alice
            )
            approved = await on_a.ApproveAccess(
                access.ApproveAccessRequest(id=requested.access_request.id), metadata=bob
            )
            claimed = await on_a.ClaimGrant(
                access.ClaimGrantRequest(grant_id=approved.grant.id), metadata=alice
            )
            jit = (("authorization", f"Bearer {claimed.token}"),)
            caller = await on_b.GetCaller(access.GetCallerRequest(), metadata=jit)
            assert caller.jit
            await on_a.RevokeGrant(
                access.RevokeGrantRequest(grant_id=approved.grant.id), metadata=alice
            )
            revoked_at = time.perf_counter()
            while True:
                try:
                    await on_b.GetCaller(access.GetCallerRequest(), metadata=jit)
                except grpc.aio.AioRpcError as error:
                    refused = error.code()
                    break
                assert time.perf_counter() - revoked_at < 5, "never refused on the other replica"
                await asyncio.sleep(0.005)
            assert refused is grpc.StatusCode.UNAUTHENTICATED
            return time.perf_counter() - revoked_at

    try:
        delay = asyncio.run(exercise())
    finally:
        for replica in replicas:
            assert replica.stop() == 0
    print(f"revoked on A, refused on B after {delay * 1000:.1f} ms")
    assert delay < 1.0


def test_an_operator_uploads_over_tus_and_verifies_the_manifest_offline(
    conductor: Served, tmp_path: Path
) -> None:
    token = mint(tmp_path, "rag.read,rag.write")
    notes = tmp_path / "notes.md"
    notes.write_bytes(b"# Notes\n\nThe cluster recovered. Mail bob@example.com for details.\n")
    data = notes.read_bytes()
    digest = base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode()
    tus = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    created = urllib.request.urlopen(
        urllib.request.Request(
            f"http://{conductor.http}/files",
            method="POST",
            headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": f"sha256 {digest},"
                     f"filename {base64.b64encode(b'notes.md').decode()}"},
        ),
        timeout=10,
    )  # fmt: skip
    assert created.status == 201
    appended = urllib.request.urlopen(
        urllib.request.Request(
            f"http://{conductor.http}{created.headers['Location']}",
            method="PATCH",
            data=data,
            headers={
                **tus,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "0",
            },
        ),
        timeout=30,
    )
    document_id = appended.headers["Conductor-Document-Id"]
    assert document_id
    jwks = grpcurl("-d", "{}", conductor.grpc, "intelgraph.rag.v1.RagService/GetJwks")
    (tmp_path / "jwks.json").write_text(jwks.stdout)
    manifest = grpcurl(
        "-H", f"authorization: Bearer {token}",
        "-d", json.dumps({"document_id": document_id, "purpose": "support"}),
        conductor.grpc, "intelgraph.rag.v1.RagService/GetManifest",
    )  # fmt: skip
    assert manifest.returncode == 0, manifest.stderr
    (tmp_path / "manifest.json").write_text(manifest.stdout)
    verify = (
        "rag",
        "verify",
        str(tmp_path / "manifest.json"),
        "--jwks",
        str(tmp_path / "jwks.json"),
    )
    checked = run_conductor(tmp_path, *verify, "--document", str(notes))
    assert checked.returncode == 0, checked.stderr
    assert "document digest, 1 chunk digests verified" in checked.stdout
    notes.write_bytes(data.replace(b"recovered", b"recovereD"))
    tampered = run_conductor(tmp_path, *verify, "--document", str(notes))
    assert tampered.returncode == 1
    assert "NOT VALID (document_digest)" in tampered.stderr
