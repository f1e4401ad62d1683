"""Hello-world unary throughput: sync `grpc.server` vs `grpc.aio`, same run, same client.

Why: the platform runs on grpc.aio (one event loop for gRPC, HTTP, async
database access and background tasks); this measures what that costs per
process, and `--workers` is how the platform gets the cores back.

Each server runs in its own process with a no-op unary handler on raw bytes;
the client is a separate process driving concurrent calls for a fixed time.
The last line is JSON: {"bench": "grpc_runtime", "sync_rps", "aio_rps", "ratio"}
with ratio = aio_rps / sync_rps.

    python bench/grpc_runtime.py [--quick] [--seconds S] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from throughput import Call, Variant, compare


def _handler(_request: bytes, _context: object) -> bytes:
    return b"pong"


async def _async_handler(_request: bytes, _context: object) -> bytes:
    return b"pong"


def _generic(behavior: Callable[..., Any]) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "bench.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(behavior)}
    )


def serve_sync(ports: Any, stop: Any) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers([_generic(_handler)])
    ports.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop.wait()
    server.stop(0)


def serve_aio(ports: Any, stop: Any) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([_generic(_async_handler)])
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await asyncio.to_thread(stop.wait)
        await server.stop(0)

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (under 50 s)")
    parser.add_argument("--seconds", type=float, help="seconds per round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per server")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    rounds = args.rounds or (2 if args.quick else 3)
    sync, aio = Variant("sync", serve_sync), Variant("aio", serve_aio)
    compare(
        [sync, aio],
        Call("/bench.Echo/Ping", b"ping"),
        rounds=rounds,
        seconds=seconds,
        concurrency=args.concurrency,
    )
    print(
        json.dumps(
            {
                "bench": "grpc_runtime",
                "sync_rps": round(sync.median),
                "aio_rps": round(aio.median),
                "ratio": round(aio.median / sync.median, 3),
                "concurrency": args.concurrency,
                "seconds": seconds,
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
