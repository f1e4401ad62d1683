"""The edge cache under bursty load: 300 RPS of persisted reads with hot keys, coalescing on vs off.

`conductor serve` (SQLite in a temporary directory) is run twice, with
CONDUCTOR_EDGE_COALESCING=true and then false, under the same seeded load:

* `--rps` (300) persisted GraphQL reads for `--seconds` (30; --quick: 8, so
  that both phases, each with its server's start, fit in 50 s), arriving in
  bursts every 100 ms (clients refresh together), keys drawn with a Zipf skew
  over 4 tenants x (AccessRequests and Invoices at 6 page sizes, PriceBook,
  SpendCap): 56 keys;
* a mutation stream over gRPC: every 0.25 s a RequestAccess for a random
  tenant (its access-request reads go stale), every 2 s a SetPrice (its price
  book goes stale);
* TTL 2 s and grace 1 s, so entries also expire during the run; each tenant
  capped at 16 KiB (SetTenantCacheCap), so caps and evictions are exercised.

Origin calls per phase come from the server's edge_cache_origin_calls_total;
per key, from the responses' x-cache header (a "miss" is the request that
called the origin). The hot keys are the 5 most requested.

The last line is JSON: {"bench": "edge_burst", "requests", "origin_calls_on",
"origin_calls_off", "origin_reduction" (1 - on/off, all keys),
"origin_reduction_hot" (the same on the hot keys), "cache_offload" (1 -
origin calls/requests with coalescing on), "hit_p50_ms", "hit_p99_ms",
"max_tenant_bytes_over_cap" (peak bytes - cap, over tenants; <= 0 holds the
cap), "coalesced", "seconds" (per phase), "elapsed_s_on", "elapsed_s_off" (how long
each phase's load took to be served: more than "seconds" when the machine fell
behind)} (seed: >= 20 % fewer origin hits; target >= 90 % on hot keys).

    python bench/edge_burst.py [--quick] [--seconds 30] [--rps 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token
from intelgraph.sdk.money import Money

from interceptors.keys import load, rotate
from interceptors.tokens import mint
from servers.facade import DEFAULT_OPERATIONS_DIR
from servers.facade.operations import operation_id

BIN = Path(sys.executable).parent
SERVING = re.compile(r"conductor serving grpc=(\S+) http=(\S+) ")
TENANTS = [uuid.UUID(int=0x0B7C6F9E_4C1E_4A4E_9D8E_3F2A1B0C9D80 + n) for n in range(4)]
CAP_BYTES = 16 * 1024
BURST_S = 0.1
HOT_KEYS = 5
#: The page sizes dashboards ask for (a handful, as real clients do).
PAGE_SIZES = (20, 50, 10, 100, 25, 5)
OPERATIONS = {
    path.stem: operation_id(path.read_text())
    for path in Path(DEFAULT_OPERATIONS_DIR).glob("*.graphql")
}
SCOPES = ["billing.read", "admin.write", "edge.read"]


def keyspace() -> list[tuple[int, str, str]]:
    """(tenant index, operation, variables JSON), most popular first (for the Zipf draw)."""
    keys = []
    for size in PAGE_SIZES:
        for tenant in range(len(TENANTS)):
            keys.append((tenant, "AccessRequests", json.dumps({"pageSize": size})))
            keys.append((tenant, "Invoices", json.dumps({"pageSize": size})))
        if size == PAGE_SIZES[0]:
            for tenant in range(len(TENANTS)):
                keys += [(tenant, "PriceBook", "{}"), (tenant, "SpendCap", "{}")]
    return keys


def zipf_draws(count: int, size: int, seed: int, skew: float = 1.2) -> Iterator[int]:
    rng = random.Random(seed)
    weights = [1 / (rank**skew) for rank in range(1, size + 1)]
    yield from rng.choices(range(size), weights=weights, k=count)


class Server:
    """One `conductor serve` on a fresh SQLite store."""

    def __init__(self, directory: Path, coalescing: bool) -> None:
        self.keys = directory / "keys"
        rotate(self.keys, "EdDSA")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")},
            "CONDUCTOR_VAR_DIR": str(directory / "var"),
            "CONDUCTOR_KEYS_DIR": str(self.keys),
            "CONDUCTOR_EDGE_COALESCING": "true" if coalescing else "false",
            "CONDUCTOR_EDGE_TTL": "2",
            "CONDUCTOR_EDGE_STALE": "1",
            "CONDUCTOR_METERING": "false",
        }
        self.process = subprocess.Popen(
            [str(BIN / "conductor"), "serve", "--grpc-port", "0", "--http-port", "0",
             "--log-level", "info"],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        for line in self.process.stderr:
            match = SERVING.search(line)
            if match:
                self.grpc, self.http = match[1], match[2]
                break
        else:
            raise RuntimeError("conductor did not start")

    def token(self, tenant: uuid.UUID, scopes: list[str], subject: str = "dash") -> str:
        return mint(
            load(self.keys),
            issuer="intelgraph-conductor",
            audience="intelgraph",
            subject=subject,
            tenant=tenant,
            scopes=scopes,
            ttl_s=3600,
        )

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Pool:
    """Keep-alive HTTP/1.1 connections, lean (a general client costs ~1 ms per request here)."""

    def __init__(self, http: str, size: int) -> None:
        self._host, _, port = http.rpartition(":")
        self._port = int(port)
        self._http = http
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._size = size
        self._opened = 0

    async def post(self, path: str, token: str, body: bytes) -> tuple[str, bytes]:
        """(x-cache, body) of one POST."""
        if self._idle.empty() and self._opened < self._size:
            self._opened += 1
            self._idle.put_nowait(await asyncio.open_connection(self._host, self._port))
        reader, writer = await self._idle.get()
        try:
            writer.write(
                (
                    f"POST {path} HTTP/1.1\r\nhost: {self._http}\r\n"
                    f"content-type: application/json\r\nauthorization: Bearer {token}\r\n"
                    f"content-length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            cache = re.search(rb"x-cache: (\w+)", head, re.IGNORECASE)
            payload = await reader.readexactly(int(length[1]) if length else 0)
        finally:
            self._idle.put_nowait((reader, writer))
        return (cache[1].decode() if cache else "none"), payload

    async def metric(self, name: str) -> float:
        """One sample's value from the server's /metrics."""
        reader, writer = await asyncio.open_connection(self._host, self._port)
        writer.write(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        return float(match[1]) if match else 0.0


async def _clients(
    stack: contextlib.AsyncExitStack, server: Server, scopes: list[str], subject: str = "bench"
) -> list[AsyncClient]:
    """One SDK client per tenant, as `subject` with `scopes`, closed with `stack`."""
    return [
        await stack.enter_async_context(
            AsyncClient(
                server.grpc, INSECURE, token=bearer_token(server.token(tenant, scopes, subject))
            )
        )
        for tenant in TENANTS
    ]


async def _mutations(server: Server, stop: asyncio.Event, seed: int) -> int:
    rng = random.Random(seed)
    made = 0
    async with contextlib.AsyncExitStack() as stack:
        alices = await _clients(stack, server, [], "alice")
        (admin, *_) = await _clients(stack, server, ["platform.admin"])
        tick = 0
        while not stop.is_set():
            index = rng.randrange(len(TENANTS))
            ends = Timestamp()
            ends.FromSeconds(int(time.time()) + 3600)
            await alices[index].access.request_access(scope=["catalog.read"], expires_at=ends)
            if tick % 8 == 0:
                await admin.billing.set_price(
                    tenant_id=str(TENANTS[index]),
                    meter="api.call",
                    unit_price=Money(minor_units=100 + tick, currency_code="USD"),
                )
            made += 1
            tick += 1
            await asyncio.sleep(0.25)
    return made


async def _peak_bytes(server: Server, stop: asyncio.Event) -> list[int]:
    """The highest bytes minus cap seen per tenant, sampled every 0.25 s."""
    peaks = [-CAP_BYTES] * len(TENANTS)
    async with contextlib.AsyncExitStack() as stack:
        readers = await _clients(stack, server, ["edge.read"])
        while not stop.is_set():
            for index, reader in enumerate(readers):
                stats = (await reader.edge.get_cache_stats()).stats
                peaks[index] = max(peaks[index], stats.bytes - stats.cap_bytes)
            await asyncio.sleep(0.25)
    return peaks


async def phase(directory: Path, coalescing: bool, seconds: float, rps: int) -> dict[str, Any]:
    server = Server(directory, coalescing)
    try:
        operator = bearer_token(server.token(TENANTS[0], ["platform.admin"]))
        async with AsyncClient(server.grpc, INSECURE, token=operator) as client:
            for tenant in TENANTS:
                await client.edge.set_tenant_cache_cap(tenant_id=str(tenant), cap_bytes=CAP_BYTES)
        keys = keyspace()
        tokens = [server.token(tenant, SCOPES) for tenant in TENANTS]
        per_burst = max(int(rps * BURST_S), 1)
        bursts = int(seconds / BURST_S)
        draws = iter(zipf_draws(bursts * per_burst, len(keys), seed=7))
        pool = Pool(server.http, 64)
        outcomes: list[tuple[int, str, float]] = []

        async def one(index: int) -> None:
            tenant, operation, variables = keys[index]
            body = f'{{"id":"{OPERATIONS[operation]}","variables":{variables}}}'.encode()
            started = time.perf_counter()
            cache, _ = await pool.post("/graphql", tokens[tenant], body)
            outcomes.append((index, cache, time.perf_counter() - started))

        stop = asyncio.Event()
        background = [
            asyncio.create_task(_mutations(server, stop, seed=11)),
            asyncio.create_task(_peak_bytes(server, stop)),
        ]
        tasks = []
        begin = time.perf_counter()
        for burst in range(bursts):
            delay = begin + burst * BURST_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks += [asyncio.create_task(one(next(draws))) for _ in range(per_burst)]
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
        stop.set()
        mutations, peaks = await asyncio.gather(*background)
        origin = await pool.metric("edge_cache_origin_calls_total")
        return {
            "outcomes": outcomes,
            "origin_calls": int(origin),
            "elapsed": elapsed,
            "mutations": mutations,
            "peaks": peaks,
        }
    finally:
        server.close()


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s per phase (under 50 s)")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rps", type=int, default=300)
    args = parser.parse_args()
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    runs = {}
    for coalescing in (True, False):
        with tempfile.TemporaryDirectory(prefix="edge-burst-") as directory:
            runs[coalescing] = asyncio.run(phase(Path(directory), coalescing, seconds, args.rps))
        run = runs[coalescing]
        kinds = Counter(kind for _, kind, _ in run["outcomes"])
        print(
            f"coalescing={'on' if coalescing else 'off'}: {len(run['outcomes'])} requests in "
            f"{run['elapsed']:.1f} s, {run['origin_calls']} origin calls, {run['mutations']} "
            f"mutations, outcomes {dict(kinds)}",
            file=sys.stderr,
        )
    on, off = runs[True], runs[False]
    popular = Counter(index for index, _, _ in on["outcomes"]).most_common(HOT_KEYS)
    hot = {index for index, _ in popular}

    def hot_misses(run: dict[str, Any]) -> int:
        return sum(1 for index, kind, _ in run["outcomes"] if index in hot and kind == "miss")

    hits = [seconds * 1000 for _, kind, seconds in on["outcomes"] if kind == "hit"]
    requests = len(on["outcomes"])
    print(
        json.dumps(
            {
                "bench": "edge_burst",
                "requests": requests,
                "origin_calls_on": on["origin_calls"],
                "origin_calls_off": off["origin_calls"],
                "origin_reduction": round(1 - on["origin_calls"] / max(off["origin_calls"], 1), 3),
                "origin_reduction_hot": round(1 - hot_misses(on) / max(hot_misses(off), 1), 3),
                "hot_origin_calls_on": hot_misses(on),
                "hot_origin_calls_off": hot_misses(off),
                "cache_offload": round(1 - on["origin_calls"] / max(requests, 1), 3),
                "hit_p50_ms": round(_percentile(hits, 0.5), 2),
                "hit_p99_ms": round(_percentile(hits, 0.99), 2),
                "max_tenant_bytes_over_cap": max(on["peaks"] + off["peaks"]),
                "coalesced": sum(1 for _, kind, _ in on["outcomes"] if kind == "coalesced"),
                "seconds": seconds,
                "elapsed_s_on": round(on["elapsed"], 1),
                "elapsed_s_off": round(off["elapsed"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
