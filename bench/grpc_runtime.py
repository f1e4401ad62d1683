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
import multiprocessing
import statistics
import sys
import time
from concurrent import futures

import grpc

METHOD = "/bench.Echo/Ping"


def _handler(_request: bytes, _context: object) -> bytes:
    return b"pong"


async def _async_handler(_request: bytes, _context: object) -> bytes:
    return b"pong"


def _generic(behavior: object) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "bench.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(behavior)}
    )


def serve_sync(port_out: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers([_generic(_handler)])
    port_out.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop.wait()
    server.stop(0)


def serve_aio(port_out: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([_generic(_async_handler)])
        port_out.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await asyncio.to_thread(stop.wait)
        await server.stop(0)

    asyncio.run(main())


def drive(port: int, seconds: float, concurrency: int, result: multiprocessing.Queue) -> None:
    async def main() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            ping = channel.unary_unary(METHOD)
            await ping(b"warm-up")
            deadline = time.perf_counter() + seconds
            done = 0

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await ping(b"ping")
                    done += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return done

    started = time.perf_counter()
    calls = asyncio.run(main())
    result.put(calls / (time.perf_counter() - started))


def measure(server: object, seconds: float, concurrency: int) -> float:
    context = multiprocessing.get_context("spawn")
    ports, results, stop = context.Queue(), context.Queue(), context.Event()
    process = context.Process(target=server, args=(ports, stop))
    process.start()
    port = ports.get(timeout=30)
    client = context.Process(target=drive, args=(port, seconds, concurrency, results))
    client.start()
    rps = float(results.get(timeout=seconds + 60))
    client.join()
    stop.set()
    process.join(10)
    return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (under 50 s)")
    parser.add_argument("--seconds", type=float, help="seconds per round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per server")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    rounds = args.rounds or (2 if args.quick else 3)
    sync_rps: list[float] = []
    aio_rps: list[float] = []
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both alike
        sync_rps.append(measure(serve_sync, seconds, args.concurrency))
        aio_rps.append(measure(serve_aio, seconds, args.concurrency))
        print(f"sync {sync_rps[-1]:8.0f} rps   aio {aio_rps[-1]:8.0f} rps", file=sys.stderr)
    sync_median, aio_median = statistics.median(sync_rps), statistics.median(aio_rps)
    print(
        json.dumps(
            {
                "bench": "grpc_runtime",
                "sync_rps": round(sync_median),
                "aio_rps": round(aio_median),
                "ratio": round(aio_median / sync_median, 3),
                "concurrency": args.concurrency,
                "seconds": seconds,
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
