"""What the SDK costs per call: its generated async client against a bare generated stub.

In one run, the same server (a bare `grpc.aio` server in its own process, answering
CatalogService/GetEntity with an empty response) is driven from this process by
(a) the generated stub with hand-made metadata, and (b) `intelgraph.sdk.AsyncClient`
(request built from keyword arguments, token from a `TokenSource`, default deadline,
the error-mapping interceptor), in alternating rounds of concurrent calls.

The last line is JSON: {"bench": "sdk_overhead", "stub_cps", "sdk_cps", "ratio", ...}
with ratio = sdk_cps / stub_cps (target >= 0.95).

    python bench/sdk_overhead.py [--quick] [--seconds S] [--rounds R] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from intelgraph.catalog.v1 import catalog_service_pb2 as catalog
from intelgraph.catalog.v1 import catalog_service_pb2_grpc
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token
from throughput import _pin

TOKEN = "x" * 600  # the size of a real token: the metadata costs what it costs


class NoOpCatalog(catalog_service_pb2_grpc.CatalogServiceServicer):
    async def GetEntity(self, request: Any, context: Any) -> Any:  # noqa: N802
        return catalog.GetEntityResponse()


def serve(ports: Any, stop: Any) -> None:
    _pin(0)

    async def main() -> None:
        server = grpc.aio.server()
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(
            NoOpCatalog(),  # type: ignore[abstract] # unbuilt RPCs come from the generated base
            server,
        )
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await asyncio.to_thread(stop.wait)
        await server.stop(0)

    asyncio.run(main())


async def rate(call: Callable[[], Awaitable[Any]], seconds: float, concurrency: int) -> float:
    """Calls per second of `call`, `concurrency` at a time, for `seconds`."""
    await call()  # warm-up, and fail fast
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def drive(port: int, rounds: int, seconds: float, concurrency: int) -> dict[str, Any]:
    target = f"127.0.0.1:{port}"
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    stub_rates: list[float] = []
    sdk_rates: list[float] = []
    async with (
        grpc.aio.insecure_channel(target) as channel,
        AsyncClient(target, INSECURE, token=bearer_token(TOKEN)) as client,
    ):
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)

        async def by_stub() -> Any:
            return await stub.GetEntity(
                catalog.GetEntityRequest(name="svc-1"), metadata=metadata, timeout=30
            )

        async def by_sdk() -> Any:
            return await client.catalog.get_entity(name="svc-1")

        for _ in range(rounds):
            stub_rates.append(await rate(by_stub, seconds, concurrency))
            sdk_rates.append(await rate(by_sdk, seconds, concurrency))
            print(
                f"stub {stub_rates[-1]:8.0f} calls/s   sdk {sdk_rates[-1]:8.0f} calls/s",
                file=sys.stderr,
            )
    stub_cps, sdk_cps = statistics.median(stub_rates), statistics.median(sdk_rates)
    return {
        "stub_cps": round(stub_cps),
        "sdk_cps": round(sdk_cps),
        "ratio": round(sdk_cps / stub_cps, 3),
        "concurrency": concurrency,
        "seconds": seconds,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (under 50 s)")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    rounds = args.rounds or (3 if args.quick else 5)
    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    server = context.Process(target=serve, args=(ports, stop))
    server.start()
    try:
        port = ports.get(timeout=60)
        _pin(1)
        result = asyncio.run(drive(port, rounds, seconds, args.concurrency))
    finally:
        stop.set()
        server.join(10)
    print(json.dumps({"bench": "sdk_overhead", **result}))


if __name__ == "__main__":
    main()
