"""The seed's load mix, every lane at once, on `conductor serve` replicas over PostgreSQL and Redis.

Starts the replicas (`--replicas`, each its own process on fixed ports) on a
private schema of PostgreSQL and on Redis, enrols `--tenants` tenants (billing
profile, a 2,000-entity graph whose analytics are materialized, a catalog of
24 services), then runs for `--seconds` (tests/support/loadmix.py):

  300/s persisted GraphQL reads over HTTP (hot keys, replicas in turn), 4/s
  mutations that make them stale, 10/s analytics packs, 5/s billing usage
  events (300 a day, run 1,440 times faster) with an invoice finalized every 5 s
  and credited, an access flow a second (request, approve, claim, call, revoke,
  the revoked token refused), a resumable upload and its summary every 2 s, and
  2/s catalog what-if runs; `--scale` multiplies every rate.

Reports per operation p50/p95/p99, errors and intended refusals; the edge
cache's origin offload (1 - origin calls / GraphQL reads, from the replicas'
own counters); the SLO checks (analytics p95 <= 450 ms; GraphQL reads p99 <=
--graphql-p99-ms; no errors other than intended refusals); the load
generator's own CPU (seconds of CPU per second of the run: near 1.0 would mean
it, not the platform, set the pace); and afterwards that nothing was lost or
counted twice (usage = acknowledged usage, reconciliation without drift, the
audit chain, every upload, every credit note).

Then a closed-loop capacity phase (`capacity_s`: 20 s; --quick: 5 s): 64 callers,
each calling again as soon as answered, the same kinds of call (GraphQL reads,
an analytics lookup, what-if runs, usage events): the calls per second the
replicas sustain, with their p99 and the generator's CPU.

The full run does it all with 1 replica and then 2; "scale_ratio" is the ratio
of their capacities. On one 2-core machine both replicas share the cores with
PostgreSQL, Redis and the generator, so the ratio shows what a second process
gains on the same cores and what coordination between replicas costs, not what
a second machine adds: see docs/adr/0024-load-chaos-and-capacity.md for the
capacity model.

The last line is JSON: {"bench": "load", "replicas", "seconds", "calls",
"calls_per_s", "error_rate" (unintended errors / calls), "analytics_p95_ms",
"graphql_p99_ms", "graphql_p50_ms", "origin_offload", "loadgen_cpu" (CPU
seconds per second), "capacity_per_s", "capacity_p99_ms", "capacity_error_rate",
"capacity_loadgen_cpu", "lost", "duplicated", "slo": {...}, "slo_ok", "ops":
{operation: {"calls", "p50_ms", "p95_ms", "p99_ms", "errors", "retried",
"refused", ...}}, "phases": [...], and on the full run "scale_ratio" and
"graphql_p99_ratio" (2 replicas over 1)}. Exit status 1 when an SLO or a loss
check fails (so `--quick` can fail CI).

    python bench/load.py [--quick] [--seconds S] [--replicas N] [--tenants T] [--scale F]
    (PostgreSQL and Redis on 127.0.0.1 by default; CONDUCTOR_BENCH_POSTGRES_URL / _REDIS_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis as redis_client

from tests.support.cluster import Cluster, running
from tests.support.loadmix import Rates, check, error_rate, latency, mix_on, summary

#: The seed's alert threshold for analytics packs.
ANALYTICS_P95_MS = 450.0
#: GraphQL reads' p99 bound on this machine class (persisted reads, mostly cache hits).
GRAPHQL_P99_MS = 250.0
#: Callers of the closed-loop capacity phase.
CONCURRENCY = 64


def _require_ready(address: str) -> None:
    """Stop unless the replica is ready and not degraded (a platform measured whole)."""
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=10) as response:
            document = json.loads(response.read())
    except (OSError, ValueError) as error:
        raise SystemExit(f"replica {address} is not ready: {error}") from None
    if document.get("status") == "degraded":
        raise SystemExit(f"replica {address} is degraded, not measuring it: {document}")


def _counter(address: str, name: str) -> float:
    """The sum of a counter's samples on one replica's /metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def _phase(
    cluster: Cluster, seconds: float, tenants: int, rates: Rates, capacity_s: float
) -> dict[str, Any]:
    for replica in cluster.members:
        _require_ready(replica.http)
    async with mix_on(cluster, tenants=tenants, rates=rates) as mix:
        origin_before = sum(
            _counter(r.http, "edge_cache_origin_calls_total") for r in cluster.members
        )
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        mix.recorder.begin = time.perf_counter()
        await mix.run(seconds)
        cpu = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
        elapsed = mix.recorder.now()
        origin = (
            sum(_counter(r.http, "edge_cache_origin_calls_total") for r in cluster.members)
            - origin_before
        )
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        saturated = await mix.saturate(capacity_s, CONCURRENCY)
        capacity_cpu = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
        findings = await check(mix)
        samples = mix.recorder.samples
        reads = sum(1 for s in samples if s.operation.startswith("graphql."))
        ops = summary(samples)
        lanes_p95 = [row["p95_ms"] for name, row in ops.items() if not name.startswith("graphql")]
        return {
            "replicas": len(cluster.members),
            "seconds": round(elapsed, 1),
            "calls": len(samples),
            "calls_per_s": round(len(samples) / elapsed, 1),
            "error_rate": round(error_rate(samples), 5),
            "analytics_p95_ms": latency(samples, "analytics.", 0.95),
            "graphql_p50_ms": latency(samples, "graphql.", 0.50),
            "graphql_p99_ms": latency(samples, "graphql.", 0.99),
            "slowest_p95_ms": max(lanes_p95, default=0.0),
            "origin_offload": round(1 - origin / max(reads, 1), 3),
            "graphql_failovers": mix.graphql.failovers,
            "loadgen_cpu": round(cpu, 3),
            "capacity_per_s": round(len(saturated.samples) / capacity_s, 1),
            "capacity_error_rate": round(error_rate(saturated.samples), 5),
            "capacity_p99_ms": round(
                max(row["p99_ms"] for row in summary(saturated.samples).values()), 1
            ),
            "capacity_loadgen_cpu": round(capacity_cpu, 3),
            "loadgen_lagging_ticks": mix.recorder.lagging,
            "lost": findings.lost,
            "duplicated": findings.duplicated,
            "problems": findings.problems,
            "ops": ops,
        }


def _run(
    directory: Path, replicas: int, seconds: float, tenants: int, rates: Rates, *, capacity_s: float
) -> dict[str, Any]:
    postgres = os.environ.get(
        "CONDUCTOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    redis = os.environ.get("CONDUCTOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    cluster = Cluster(
        directory,
        postgres,
        redis,
        replicas,
        settings={
            "CONDUCTOR_LOG_LEVEL": "warning",
            "CONDUCTOR_ANALYTICS_WORKERS": "1",
            # Each run's edge cache keys live apart from any other's on the shared Redis.
            "CONDUCTOR_EDGE_REDIS_PREFIX": f"load-{directory.name}:",
        },
    )
    try:
        with running(cluster):
            return asyncio.run(_phase(cluster, seconds, tenants, rates, capacity_s))
    finally:
        _forget(redis, f"load-{directory.name}:")


def _forget(url: str, prefix: str) -> None:
    """Delete this run's edge cache keys from the shared Redis."""
    client = redis_client.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis_client.RedisError as error:
        print(f"could not delete {prefix}* from Redis: {error}", file=sys.stderr)
    finally:
        client.close()


def _print_table(phase: dict[str, Any]) -> None:
    print(
        f"\n{phase['replicas']} replica(s): {phase['calls']} calls in {phase['seconds']} s "
        f"({phase['calls_per_s']}/s), error rate {phase['error_rate']}, edge cache origin "
        f"offload {phase['origin_offload']}, lost {phase['lost']}, duplicated "
        f"{phase['duplicated']}, generator CPU {phase['loadgen_cpu']} s/s\n"
        f"  capacity (closed loop, {CONCURRENCY} callers): {phase['capacity_per_s']} calls/s, "
        f"p99 {phase['capacity_p99_ms']} ms, error rate {phase['capacity_error_rate']}, "
        f"generator CPU {phase['capacity_loadgen_cpu']} s/s",
        file=sys.stderr,
    )
    print(f"{'operation':34} {'calls':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'retried':>7} {'refused':>7}", file=sys.stderr)  # fmt: skip
    for name, row in phase["ops"].items():
        answered = row["calls"] - row["refused"] - row["errors"]
        times = (
            f"{row['p50_ms']:>8} {row['p95_ms']:>8} {row['p99_ms']:>8}"
            if answered
            else f"{'-':>8} {'-':>8} {'-':>8}"
        )
        print(
            f"{name:34} {row['calls']:>6} {times} {row['errors']:>6} {row['retried']:>7} "
            f"{row['refused']:>7}",
            file=sys.stderr,
        )
    print("(refused: intended refusals, e.g. a revoked token; latencies of answered calls)",
          file=sys.stderr)  # fmt: skip
    for problem in phase["problems"]:
        print(f"PROBLEM: {problem}", file=sys.stderr)


#: Latency bounds --quick reports without failing on: CI's shared machine is too noisy for an
#: absolute latency bound (the same run measured GraphQL p99 61 to 473 ms on one day);
#: `make load` enforces them. Errors, refusals and anything lost always fail.
ADVISORY_IN_QUICK = frozenset({"analytics_p95_ms", "graphql_p99_ms"})


def _slo(phase: dict[str, Any], graphql_p99_ms: float) -> dict[str, dict[str, Any]]:
    """Each check of one phase: the measured value, the bound, and whether it held."""
    checks = {
        "analytics_p95_ms": (phase["analytics_p95_ms"], ANALYTICS_P95_MS),
        "graphql_p99_ms": (phase["graphql_p99_ms"], graphql_p99_ms),
        "error_rate": (phase["error_rate"], 0),
        "capacity_error_rate": (phase["capacity_error_rate"], 0),
        "lost_and_duplicated": (phase["lost"] + phase["duplicated"] + len(phase["problems"]), 0),
    }
    return {
        name: {"value": value, "bound": bound, "ok": value <= bound}
        for name, (value, bound) in checks.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 replicas for 20 s (under 50 s)")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--replicas", type=int, help="only this many (default: 1, then 2)")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every lane's rate")
    parser.add_argument("--graphql-p99-ms", type=float, default=GRAPHQL_P99_MS)
    args = parser.parse_args()
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    capacity_s = 5.0 if args.quick else 20.0
    counts = [args.replicas] if args.replicas else ([2] if args.quick else [1, 2])
    rates = Rates().scaled(args.scale)
    phases = []
    for replicas in counts:
        with tempfile.TemporaryDirectory(prefix="load-") as directory:
            phase = _run(
                Path(directory), replicas, seconds, args.tenants, rates, capacity_s=capacity_s
            )
        _print_table(phase)
        phases.append(phase)
    last = phases[-1]
    for phase in phases:  # every phase must hold, not only the last
        phase["slo"] = _slo(phase, args.graphql_p99_ms)
    result: dict[str, Any] = {
        "bench": "load",
        **{key: value for key, value in last.items() if key not in {"ops", "problems"}},
        "slo_ok": all(
            held["ok"]
            for phase in phases
            for name, held in phase["slo"].items()
            if not (args.quick and name in ADVISORY_IN_QUICK)
        ),
        "phases": [
            {key: value for key, value in phase.items() if key != "ops"} for phase in phases
        ],
        "ops": last["ops"],
    }
    if len(phases) == 2:
        one, two = phases
        result["scale_ratio"] = round(two["capacity_per_s"] / max(one["capacity_per_s"], 1e-9), 3)
        result["graphql_p99_ratio"] = round(
            two["graphql_p99_ms"] / max(one["graphql_p99_ms"], 1e-9), 3
        )
    for phase in phases:
        for name, held in phase["slo"].items():
            advisory = args.quick and name in ADVISORY_IN_QUICK
            verdict = (
                "ok" if held["ok"] else ("over (advisory in --quick)" if advisory else "FAILED")
            )
            print(
                f"{phase['replicas']} replica(s) {name}: {held['value']} (bound "
                f"{held['bound']}): {verdict}",
                file=sys.stderr,
            )
    print(json.dumps(result))
    # Kept for the evidence bundle (`conductor evidence build` includes it).
    artifacts = Path(os.environ.get("CONDUCTOR_TEST_ARTIFACTS", "test-artifacts")) / "load"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "load.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    sys.exit(0 if result["slo_ok"] else 1)


if __name__ == "__main__":
    main()
