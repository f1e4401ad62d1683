"""What authentication and authorization cost: a bare grpc.aio server vs the platform's chain.

In one run, unary throughput of the same no-op handler (CatalogService/GetEntity
answering an empty response) served (a) by a bare `grpc.aio` server and (b)
behind the platform's full interceptor chain (error mapping, JWT
authentication, Rego authorization, metrics) with a valid token, caches warm.
The client runs in a separate process with concurrent calls and sends the same
token to both. Also measures one authorization decision, evaluated (cache
miss) and cached (hit).

The last line is JSON: {"bench": "auth_overhead", "bare_rps", "chain_rps",
"ratio", "decision_p50_us", "decision_p99_us", "cached_decision_p50_us", ...}
with ratio = chain_rps / bare_rps.

    python bench/auth_overhead.py [--quick] [--seconds S] [--rounds R] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from intelgraph.catalog.v1 import catalog_service_pb2 as catalog
from intelgraph.catalog.v1 import catalog_service_pb2_grpc
from throughput import Call, Variant, compare

from interceptors import PolicyEngine, TokenVerifier, platform_chain
from interceptors.keys import KeyStore, load, rotate
from interceptors.policy import CallerFacts, MethodFacts
from interceptors.tokens import InMemoryRevocations, mint

ISSUER, AUDIENCE = "intelgraph-conductor", "intelgraph"
TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")


class NoOpCatalog(catalog_service_pb2_grpc.CatalogServiceServicer):
    async def GetEntity(self, request: Any, context: Any) -> Any:  # noqa: N802
        return catalog.GetEntityResponse()


def serve(ports: Any, stop: Any, keys_dir: str | None) -> None:
    async def main() -> None:
        interceptors = []
        if keys_dir is not None:
            verifier = TokenVerifier(
                KeyStore(Path(keys_dir)),
                issuer=ISSUER,
                audience=AUDIENCE,
                leeway_s=10,
                revocations=InMemoryRevocations(),
            )
            interceptors = [platform_chain(verifier, PolicyEngine())]
        server = grpc.aio.server(interceptors=interceptors)
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(
            NoOpCatalog(),  # type: ignore[abstract] # unbuilt RPCs come from the generated base
            server,
        )
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await asyncio.to_thread(stop.wait)
        await server.stop(0)

    asyncio.run(main())


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def decision_latency(count: int) -> dict[str, float]:
    """Microseconds per authorization decision: evaluated (miss) and cached (hit)."""
    engine = PolicyEngine(cache_size=count * 2)
    caller = CallerFacts("alice", str(TENANT), ("catalog.read",), jit=False)
    method = MethodFacts("intelgraph.catalog.v1.CatalogService", "GetEntity", "catalog.read")
    evaluated, cached = [], []
    for now in range(count):  # a new second each time: always a miss
        started = time.perf_counter()
        engine.decide(caller, method, {}, now)
        evaluated.append((time.perf_counter() - started) * 1e6)
    for _ in range(count):
        started = time.perf_counter()
        engine.decide(caller, method, {}, 0)
        cached.append((time.perf_counter() - started) * 1e6)
    miss_p50, miss_p99 = _percentiles(evaluated)
    hit_p50, hit_p99 = _percentiles(cached)
    return {
        "decision_p50_us": round(miss_p50, 1),
        "decision_p99_us": round(miss_p99, 1),
        "cached_decision_p50_us": round(hit_p50, 2),
        "cached_decision_p99_us": round(hit_p99, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (under 50 s)")
    parser.add_argument("--seconds", type=float, help="seconds per round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per server")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    # Many short alternating rounds: a median over them shrugs off a noisy neighbour.
    seconds = args.seconds or 3.0
    rounds = args.rounds or (4 if args.quick else 12)
    with tempfile.TemporaryDirectory() as keys_dir:
        rotate(Path(keys_dir), "EdDSA")
        token = mint(
            load(Path(keys_dir)),
            issuer=ISSUER,
            audience=AUDIENCE,
            subject="bench",
            tenant=TENANT,
            scopes=["catalog.read"],
            ttl_s=3600,
        )
        bare, chain = Variant("bare", serve, (None,)), Variant("chain", serve, (keys_dir,))
        compare(
            [bare, chain],
            Call(
                "/intelgraph.catalog.v1.CatalogService/GetEntity",
                catalog.GetEntityRequest(name="svc").SerializeToString(),
                (("authorization", f"Bearer {token}"),),
            ),
            rounds=rounds,
            seconds=seconds,
            concurrency=args.concurrency,
        )
    result = {
        "bench": "auth_overhead",
        "bare_rps": round(bare.median),
        "chain_rps": round(chain.median),
        "ratio": round(chain.median / bare.median, 3),
        **decision_latency(2000 if args.quick else 10000),
        "concurrency": args.concurrency,
        "seconds": seconds,
        "rounds": rounds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
