"""Requests/s of a gRPC server in its own process, driven by a client in another.

Shared by the benchmarks that compare servers: each server variant runs in a
spawned process, a spawned client drives `concurrency` concurrent unary calls
for `seconds`, and rounds alternate between variants so that drift on a
shared machine hits them alike. Server and client are pinned to different
CPUs where the machine has two or more.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

#: A server entry point: (port queue, stop event, *args) -> None, run in its own process.
ServerMain = Callable[..., None]


@dataclass
class Call:
    """The unary call the client repeats."""

    method: str
    request: bytes = b""
    metadata: Sequence[tuple[str, str]] = ()


@dataclass
class Variant:
    """A server to measure."""

    name: str
    main: ServerMain
    args: tuple[Any, ...] = ()
    rps: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rps)


def _pin(cpu: int) -> None:
    """Keep this process on one CPU (server and client on different ones), where possible."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def _serve_pinned(main: ServerMain, *args: Any) -> None:
    _pin(0)
    main(*args)


def _drive(port: int, call: Call, seconds: float, concurrency: int, out: Any) -> None:
    _pin(1)

    async def main() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            rpc: grpc.aio.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(call.method)
            await rpc(call.request, metadata=call.metadata)  # warm-up, and fail fast
            deadline = time.perf_counter() + seconds
            done = 0

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await rpc(call.request, metadata=call.metadata)
                    done += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return done

    started = time.perf_counter()
    calls = asyncio.run(main())
    out.put(calls / (time.perf_counter() - started))


def measure(variant: Variant, call: Call, seconds: float, concurrency: int) -> float:
    """One round: start the server, drive it, stop it; returns requests/s."""
    context = multiprocessing.get_context("spawn")
    ports, results, stop = context.Queue(), context.Queue(), context.Event()
    server = context.Process(target=_serve_pinned, args=(variant.main, ports, stop, *variant.args))
    server.start()
    try:
        port = ports.get(timeout=60)
        client = context.Process(target=_drive, args=(port, call, seconds, concurrency, results))
        client.start()
        rps = float(results.get(timeout=seconds + 60))
        client.join()
    finally:
        stop.set()
        server.join(10)
    variant.rps.append(rps)
    return rps


def compare(
    variants: Sequence[Variant], call: Call, *, rounds: int, seconds: float, concurrency: int
) -> None:
    """Alternate rounds over `variants`, printing each round to stderr."""
    for _ in range(rounds):
        line = []
        for variant in variants:
            line.append(f"{variant.name} {measure(variant, call, seconds, concurrency):8.0f} rps")
        print("   ".join(line), file=sys.stderr)
