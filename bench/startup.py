"""Start-up to SERVING: `conductor serve` on the embedded default vs a bare grpc.aio server.

Both are started as fresh processes and polled with the standard health check
until they answer SERVING; the bare server (grpc.aio with the health service
only) is the floor any Python gRPC process pays. `conductor` is measured on a
first run (creating and migrating the SQLite file) and on a restart.
The last line is JSON: {"bench": "startup", "first_run_s", "restart_s", "bare_s", "ratio"}
with ratio = restart_s / bare_s.

    python bench/startup.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent
BARE_SERVER = """
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
async def main():
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(sys.argv[1])
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def time_to_serving(command: list[str], port: int, env: dict[str, str]) -> float:
    """Seconds from spawning `command` until its health check answers SERVING."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Reconnect fast: gRPC's default 1 s backoff after a refused connection
        # would otherwise be what this measures.
        fast_retry = [
            ("grpc.initial_reconnect_backoff_ms", 10),
            ("grpc.min_reconnect_backoff_ms", 10),
            ("grpc.max_reconnect_backoff_ms", 20),
        ]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=fast_retry) as channel:
            # typeshed's HealthStub declares no methods.
            health: Any = health_pb2_grpc.HealthStub(channel)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited with {process.returncode}")
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=0.2).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - started
                except grpc.RpcError:
                    time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under 50 s)")
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 7)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    first: list[float] = []
    restart: list[float] = []
    bare: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as var_dir:
            conductor_env = {**env, "CONDUCTOR_VAR_DIR": var_dir}
            for samples in (first, restart):
                port = free_port()
                command = [str(BIN / "conductor"), "serve", "--grpc-port", str(port)]
                command += ["--http-port", "0"]
                samples.append(time_to_serving(command, port, conductor_env))
        port = free_port()
        bare.append(
            time_to_serving([sys.executable, "-c", BARE_SERVER, f"127.0.0.1:{port}"], port, env)
        )
        print(
            f"first run {first[-1]:.2f}s  restart {restart[-1]:.2f}s  bare aio {bare[-1]:.2f}s",
            file=sys.stderr,
        )
    result: dict[str, Any] = {
        "bench": "startup",
        "first_run_s": round(statistics.median(first), 3),
        "restart_s": round(statistics.median(restart), 3),
        "bare_s": round(statistics.median(bare), 3),
        "runs": runs,
    }
    result["ratio"] = round(result["restart_s"] / result["bare_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
