"""What tracing costs a call: the same GraphQL read on a platform with tracing off and on.

Starts two platforms in this process on the embedded default — one without tracing, one
tracing every call (sample ratio 1) into a batch processor whose exporter keeps nothing, so
the spans are made, ended and queued as in production but never sent — and alternates
batches of the persisted-shape `{ caller { subject } }` query through /graphql (HTTP server,
GraphQL operation and resolver, gRPC client and server, SQL) on each, one call at a time.

The last line is JSON: {"bench": "tracing_overhead", "off_p50_ms", "on_p50_ms", "ratio"
(on / off p50), "spans_per_call", "calls"}.

    python bench/tracing_overhead.py [--quick] [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from interceptors import keys, tokens
from servers.app import Platform
from servers.config import load_settings
from servers.tracing import Tracing, sampler

QUERY = {"query": "{ caller { subject } }"}


class Counting(SpanExporter):
    """Keeps nothing; counts what it was given."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def timed(http: httpx.AsyncClient, headers: dict[str, str], calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        response = await http.post("/graphql", json=QUERY, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return samples


async def run(calls: int) -> dict[str, object]:
    exporter = Counting()
    provider = TracerProvider(sampler=sampler(1.0))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
    with tempfile.TemporaryDirectory() as scratch:
        platforms = []
        for name, tracing in (("off", None), ("on", Tracing(provider))):
            settings = load_settings(
                grpc_port=0,
                http_port=0,
                var_dir=Path(scratch) / name,
                auto_migrate=True,
                services="access",
                edge_cache=False,
            )
            platform = Platform(settings, tracing=tracing)
            await platform.start()
            platforms.append(platform)
        samples: dict[str, list[float]] = {"off": [], "on": []}
        try:
            clients = []
            for platform in platforms:
                ring = keys.load(platform.settings.signing_keys_dir)
                token = tokens.mint(
                    ring,
                    issuer=platform.settings.token_issuer,
                    audience=platform.settings.token_audience,
                    subject="bench",
                    tenant=uuid.uuid4(),
                    scopes=[],
                    ttl_s=3600,
                )
                http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}")
                clients.append((http, {"authorization": f"Bearer {token}"}))
            for http, headers in clients:
                await timed(http, headers, 20)  # warm up
            exporter.spans = 0
            for _ in range(max(calls // 50, 1)):
                for (http, headers), name in zip(clients, ("off", "on"), strict=True):
                    samples[name] += await timed(http, headers, 50)
            provider.force_flush()
            for http, _ in clients:
                await http.aclose()
        finally:
            for platform in platforms:
                await platform.stop(grace=0)
            provider.shutdown()
    off, on = statistics.median(samples["off"]), statistics.median(samples["on"])
    return {
        "off_p50_ms": round(off, 3),
        "on_p50_ms": round(on, 3),
        "ratio": round(on / off, 3),
        "spans_per_call": round(exporter.spans / len(samples["on"]), 1),
        "calls": len(samples["on"]),
    }


def main() -> None:
    """Run and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="calls per platform")
    parser.add_argument("--quick", action="store_true", help="100 calls per platform (a smoke run)")
    args = parser.parse_args()
    result = asyncio.run(run(100 if args.quick else args.calls))
    print(json.dumps({"bench": "tracing_overhead", **result}))


if __name__ == "__main__":
    main()
