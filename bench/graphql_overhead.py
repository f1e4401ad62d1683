"""What the GraphQL facade adds: a persisted query through /graphql vs the same RPC over gRPC.

Starts `conductor serve` (embedded default) as a separate process, mints a
token, and in one run alternates batches of (a) AccessService/GetCaller over
gRPC and (b) the persisted `Caller` operation by id over HTTP (keep-alive),
one call at a time, so each sample is one call's latency. The facade resolves
(b) by calling (a) on the same server, so the difference is the facade's cost.

The HTTP side uses a minimal keep-alive client (the gRPC side's client is the
C core); the same request through httpx is reported beside it, since httpx
itself costs about a millisecond per request here.

The last line is JSON: {"bench": "graphql_overhead", "grpc_p50_ms", "graphql_p50_ms",
"overhead_ms_p50", "ratio", "graphql_httpx_client_p50_ms", ...} with
ratio = graphql_p50 / grpc_p50.

    python bench/graphql_overhead.py [--quick] [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
from intelgraph.access.v1 import access_service_pb2, access_service_pb2_grpc

from servers.facade import DEFAULT_OPERATIONS_DIR, operation_id

BIN = Path(sys.executable).parent
TENANT = "0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e"
SERVING = re.compile(r"conductor serving grpc=(\S+) http=(\S+) ")


def start(var_dir: str) -> tuple[subprocess.Popen[str], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    env["CONDUCTOR_VAR_DIR"] = var_dir
    process = subprocess.Popen(
        [str(BIN / "conductor"), "serve", "--grpc-port", "0", "--http-port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        match = SERVING.search(line)
        if match:
            return process, match[1], match[2]
    raise RuntimeError("conductor did not start")


def mint(var_dir: str) -> str:
    env = {**os.environ, "CONDUCTOR_VAR_DIR": var_dir}
    return subprocess.run(
        [str(BIN / "conductor"), "token", "mint", "--tenant", TENANT, "--scopes", "catalog.read",
         "--ttl", "1h"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client: the request bytes are built once.

    General-purpose clients spend a millisecond of their own per request on this
    machine; what is measured here is the server's cost, so the client is lean,
    as the gRPC client (C core) on the other side is.
    """

    def __init__(self, http: str, token: str, body: bytes) -> None:
        self._host, _, port = http.rpartition(":")
        self._port = int(port)
        self._request = (
            f"POST /graphql HTTP/1.1\r\nhost: {http}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self) -> bytes:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(self._request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
        body = await self._reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head + body)
        return body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def measure(grpc_target: str, http: str, token: str, calls: int) -> dict[str, float]:
    operation = operation_id((DEFAULT_OPERATIONS_DIR / "Caller.graphql").read_text())
    metadata = (("authorization", f"Bearer {token}"),)
    direct: list[float] = []
    facade: list[float] = []
    client = KeepAliveClient(http, token, json.dumps({"id": operation}).encode())
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = access_service_pb2_grpc.AccessServiceStub(channel)
        request = access_service_pb2.GetCallerRequest()
        for _ in range(50):  # warm both paths: connections, caches
            await stub.GetCaller(request, metadata=metadata)
            await client.post()
        batch = 50
        for _ in range(calls // batch):
            for _ in range(batch):
                started = time.perf_counter()
                await stub.GetCaller(request, metadata=metadata)
                direct.append((time.perf_counter() - started) * 1000)
            for _ in range(batch):
                started = time.perf_counter()
                body = await client.post()
                facade.append((time.perf_counter() - started) * 1000)
                assert b'"errors"' not in body, body
    await client.close()
    # For reference: the same request through httpx, a general-purpose client.
    general: list[float] = []
    async with httpx.AsyncClient(
        base_url=f"http://{http}", headers={"authorization": f"Bearer {token}"}
    ) as httpx_client:
        for _ in range(min(calls, 500)):
            started = time.perf_counter()
            (await httpx_client.post("/graphql", json={"id": operation})).raise_for_status()
            general.append((time.perf_counter() - started) * 1000)
    grpc_p50, graphql_p50 = statistics.median(direct), statistics.median(facade)
    return {
        "grpc_p50_ms": round(grpc_p50, 3),
        "grpc_p99_ms": round(_percentile(direct, 0.99), 3),
        "graphql_p50_ms": round(graphql_p50, 3),
        "graphql_p99_ms": round(_percentile(facade, 0.99), 3),
        "overhead_ms_p50": round(graphql_p50 - grpc_p50, 3),
        "ratio": round(graphql_p50 / grpc_p50, 2),
        "graphql_httpx_client_p50_ms": round(statistics.median(general[50:]), 3),
        "calls": len(direct),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (under 50 s)")
    parser.add_argument("--calls", type=int)
    args = parser.parse_args()
    calls = args.calls or (1000 if args.quick else 5000)
    with tempfile.TemporaryDirectory() as var_dir:
        process, grpc_target, http = start(var_dir)
        try:
            result = asyncio.run(measure(grpc_target, http, mint(var_dir), calls))
        finally:
            process.terminate()
            process.wait(30)
    print(json.dumps({"bench": "graphql_overhead", **result}))


if __name__ == "__main__":
    main()
