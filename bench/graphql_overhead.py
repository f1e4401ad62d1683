"""What the GraphQL facade adds: a persisted query through /graphql vs the same RPC over gRPC.

Starts two `conductor serve` (embedded default) as separate processes, one with
the edge cache off (CONDUCTOR_EDGE_CACHE=false) and one with it on, mints a
token for each, and in one run alternates batches of (a) AccessService/GetCaller
over gRPC through the SDK, (b) the persisted `Caller` operation by id over HTTP (keep-alive) on
the server without the cache, and (c) the same on the server with the cache,
one call at a time, so each sample is one call's latency.

The facade resolves (b) by calling (a) on the same server, so (b) - (a) is the
facade's own cost. It is measured with the cache switched off rather than with
an ad-hoc document: the persisted operation is what production runs (parsed and
validated once), so only the cache is taken out of the path. (c) answers from
the cache after its first call (the entry is per token, and every call here
carries the same one), without calling (a) at all: it is reported beside (b),
not as the facade's cost, with how many of its calls the cache really served
(x-cache: hit; an entry past its TTL is refilled during a long run).

The HTTP side uses a minimal keep-alive client (the gRPC side's client is the
C core); the same uncached request through httpx is reported beside it, since
httpx itself costs about a millisecond per request here.

The last line is JSON: {"bench": "graphql_overhead", "grpc_p50_ms",
"uncached_p50_ms", "uncached_overhead_ms_p50" (target <= 1 ms), "ratio"
(uncached_p50 / grpc_p50), "cache_hit_ms_p50", "cache_hit_ratio" (cache-hit
p50 / grpc_p50), "cache_hits" (of "calls"), "graphql_httpx_client_p50_ms", ...}.

    python bench/graphql_overhead.py [--quick] [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token

from servers.facade import DEFAULT_OPERATIONS_DIR, operation_id

BIN = Path(sys.executable).parent
TENANT = "0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e"
SERVING = re.compile(r"conductor serving grpc=(\S+) http=(\S+) ")


def start(var_dir: str, edge_cache: bool) -> tuple[subprocess.Popen[str], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    env["CONDUCTOR_VAR_DIR"] = var_dir
    env["CONDUCTOR_EDGE_CACHE"] = "true" if edge_cache else "false"
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


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(30)


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

    async def post(self) -> tuple[str, bytes]:
        """(x-cache, body) of one POST; x-cache is "none" when the cache did not answer."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(self._request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
        body = await self._reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head + body)
        cache = re.search(rb"x-cache: (\w+)", head, re.IGNORECASE)
        return (cache[1].decode() if cache else "none"), body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


@dataclass(frozen=True)
class Served:
    """One `conductor serve`: where it listens and a token it accepts."""

    grpc_target: str
    http: str
    token: str


async def _timed_post(client: KeepAliveClient) -> tuple[str, float]:
    """One call through the facade: its x-cache and its latency in ms."""
    started = time.perf_counter()
    cache, body = await client.post()
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert b'"errors"' not in body, body
    return cache, elapsed_ms


async def measure(uncached: Served, cached: Served, calls: int) -> dict[str, Any]:
    operation = operation_id((DEFAULT_OPERATIONS_DIR / "Caller.graphql").read_text())
    body = json.dumps({"id": operation}).encode()
    direct: list[float] = []
    facade: list[float] = []
    hits: list[float] = []
    through_facade = KeepAliveClient(uncached.http, uncached.token, body)
    through_cache = KeepAliveClient(cached.http, cached.token, body)
    outcomes: Counter[str] = Counter()
    token = bearer_token(uncached.token)
    async with AsyncClient(uncached.grpc_target, INSECURE, token=token) as client:
        access = client.access
        for _ in range(50):  # warm every path: connections, the cache's entry
            await access.get_caller()
            await through_facade.post()
            await through_cache.post()
        batch = 50
        for _ in range(calls // batch):
            for _ in range(batch):
                started = time.perf_counter()
                await access.get_caller()
                direct.append((time.perf_counter() - started) * 1000)
            for _ in range(batch):
                cache, elapsed_ms = await _timed_post(through_facade)
                if cache != "none":
                    raise RuntimeError(f"the edge cache is off, yet it answered {cache!r}")
                facade.append(elapsed_ms)
            for _ in range(batch):
                cache, elapsed_ms = await _timed_post(through_cache)
                outcomes[cache] += 1
                if cache == "hit":
                    hits.append(elapsed_ms)
    await through_facade.close()
    await through_cache.close()
    # For reference: the same uncached request through httpx, a general-purpose client.
    general: list[float] = []
    async with httpx.AsyncClient(
        base_url=f"http://{uncached.http}", headers={"authorization": f"Bearer {uncached.token}"}
    ) as httpx_client:
        for _ in range(min(calls, 500)):
            started = time.perf_counter()
            (await httpx_client.post("/graphql", json={"id": operation})).raise_for_status()
            general.append((time.perf_counter() - started) * 1000)
    grpc_p50, uncached_p50 = statistics.median(direct), statistics.median(facade)
    hit_p50 = statistics.median(hits) if hits else None  # None: the cache served no call
    return {
        "grpc_p50_ms": round(grpc_p50, 3),
        "grpc_p99_ms": round(_percentile(direct, 0.99), 3),
        "uncached_p50_ms": round(uncached_p50, 3),
        "uncached_p99_ms": round(_percentile(facade, 0.99), 3),
        "uncached_overhead_ms_p50": round(uncached_p50 - grpc_p50, 3),
        "ratio": round(uncached_p50 / grpc_p50, 2),
        "cache_hit_ms_p50": None if hit_p50 is None else round(hit_p50, 3),
        "cache_hit_ms_p99": round(_percentile(hits, 0.99), 3) if hits else None,
        "cache_hit_ratio": None if hit_p50 is None else round(hit_p50 / grpc_p50, 2),
        "cache_hits": len(hits),
        "cache_outcomes": dict(outcomes),
        "graphql_httpx_client_p50_ms": round(statistics.median(general[50:]), 3),
        "calls": len(direct),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (under 50 s)")
    parser.add_argument("--calls", type=int)
    args = parser.parse_args()
    calls = args.calls or (1000 if args.quick else 5000)
    with contextlib.ExitStack() as stack:
        served = {}
        for edge_cache in (False, True):
            var_dir = stack.enter_context(tempfile.TemporaryDirectory())
            process, grpc_target, http = start(var_dir, edge_cache)
            stack.callback(_stop, process)
            served[edge_cache] = Served(grpc_target, http, mint(var_dir))
        result = asyncio.run(measure(served[False], served[True], calls))
    print(json.dumps({"bench": "graphql_overhead", **result}))


if __name__ == "__main__":
    main()
