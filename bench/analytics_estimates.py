"""Are the cost hints right? Each parameterised pack's run time against its estimate, same run.

On a heavy-tailed sample tenancy (the reference 250k nodes / 1.2M edges; --quick:
50k / 250k), every pack that runs per call (shortest path, neighbourhood,
personalised PageRank; the whole-graph packs are lookups of materialized
results) is priced exactly as EstimatePack prices it (this machine's speed
from the workers' calibration) and then run on the projection, as a worker
would. Runs depend on where they start: they run from 101 random entities and
report the mean (what "expected" means); traversals at the default and at 3 hops.

The last line is JSON: {"bench": "analytics_estimates", "min_ratio", "max_ratio",
"ratios": {run: actual/estimated}, "nodes", "edges"} (target 0.5 to 2).

    python bench/analytics_estimates.py [--quick] [--nodes N] [--edges M]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from servers.analytics.compute import Projection, calibrate, run_pack
from servers.analytics.graph import Snapshot, heavy_tailed
from servers.analytics.packs import PACKS, PackSpec, bind, estimate

TRAVERSALS = {"analytics.shortestPath:v1", "analytics.neighborhood:v1"}
STARTS = 101


def tenancy(nodes: int, edges: int) -> Snapshot:
    sources, targets, weights = heavy_tailed(nodes, edges, seed=7)
    ids = np.array([f"e{index}" for index in range(nodes)], dtype=object)
    return Snapshot.of(1, ids, sources, targets, weights)


def timed_ms(projection: Projection, spec: PackSpec, params: dict[str, Any]) -> float:
    started = time.perf_counter()
    run_pack(projection, spec.id, params)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k nodes / 250k edges")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--edges", type=int)
    args = parser.parse_args()
    nodes = args.nodes or (50_000 if args.quick else 250_000)
    edges = args.edges or (250_000 if args.quick else 1_200_000)
    snapshot = tenancy(nodes, edges)
    speed = calibrate()
    rng = np.random.default_rng(3)
    starts = [[snapshot.entity(int(i)) for i in rng.choice(nodes, 2)] for _ in range(STARTS)]
    runs: list[tuple[str, PackSpec, dict[str, Any]]] = []
    for spec in PACKS.values():
        if spec.materialized:
            continue
        runs.append((spec.id, spec, {}))
        if spec.id in TRAVERSALS:
            runs.append((f"{spec.id} max_hops=3", spec, {"max_hops": 3}))
    ratios, projection = {}, Projection.of(snapshot)
    print(f"projection: {projection.memory_bytes / 2**20:.0f} MiB of arrays", file=sys.stderr)
    for name, spec, given in runs:
        first = {"source_id": starts[0][0], "target_id": starts[0][1], "seed_ids": [starts[0][0]]}
        params = bind(spec, {**first, **given})
        priced = estimate(spec, params, snapshot.nodes, snapshot.edges, speed, spec.timeout_ms)
        actual_ms = statistics.mean(
            timed_ms(projection, spec, {**params, "source_id": a, "target_id": b, "seed_ids": [a]})
            for a, b in starts
        )
        ratios[name] = round(actual_ms / priced.expected_ms, 2)
        print(
            f"{name:45} estimated {priced.expected_ms:8.1f} ms  actual {actual_ms:8.1f} ms"
            f"  ratio {ratios[name]:5.2f}",
            file=sys.stderr,
        )
    print(
        json.dumps(
            {
                "bench": "analytics_estimates",
                "min_ratio": min(ratios.values()),
                "max_ratio": max(ratios.values()),
                "ratios": ratios,
                "nodes": nodes,
                "edges": snapshot.edges,
                "projection_bytes": projection.memory_bytes,
                "seconds_per_unit": speed,
            }
        )
    )


if __name__ == "__main__":
    main()
