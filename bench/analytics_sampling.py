"""How much does sampling cost in quality? Sampled results against full runs, by sampler and ratio.

On the reference sample tenancy's graph (250k nodes / 1.2M edges, heavy-tailed;
--quick: 50k / 250k), for each sampler (top_edges: the edges with the highest
endpoint-degree product; random_edges: a uniform draw)
and ratio of edges kept:

- PageRank: overlap of the sampled run's top 50 with the full run's;
- betweenness (16 pivots, as the pack): overlap of the top 50 with the same
  estimate on the whole graph (exact betweenness is out of reach at this size;
  how far 16 pivots are from 64 is printed once);
- communities: modularity on the whole graph of the sampled run's partition (what
  the pack reports) and of the full run's, and the adjusted Rand index of the two
  partitions over the 1000 highest-degree entities (the ones the pack lists).

The last line is JSON: {"bench": "analytics_sampling", "defaults": {pack: point at its
sampler}, "pagerank_top50_at_default",
"curve": [{"sampler", "ratio", "pagerank_top50", "betweenness_top50",
"modularity", "full_modularity", "top1000_ari"}], "nodes", "edges"}.
The published curve is in docs/analytics-sampling.md.

    python bench/analytics_sampling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys

import igraph
import numpy as np

from servers.analytics.compute import Projection, betweenness, communities, pagerank
from servers.analytics.graph import Snapshot, heavy_tailed
from servers.analytics.packs import PACKS, SAMPLERS, sampler

RATIOS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.30)
TOP = 50


def _top(scores: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k nodes / 250k edges")
    args = parser.parse_args()
    nodes, edges = (50_000, 250_000) if args.quick else (250_000, 1_200_000)
    sources, targets, weights = heavy_tailed(nodes, edges, seed=7)
    ids = np.array([f"e{index}" for index in range(nodes)], dtype=object)
    snapshot = Snapshot(1, ids, sources, targets, weights)
    projection = Projection.of(snapshot)

    full_pagerank = _top(pagerank(projection.graph), TOP)
    full_betweenness_scores = betweenness(projection.graph, projection)
    full_betweenness = _top(full_betweenness_scores, TOP)
    hubs = np.argsort(-projection.degrees(), kind="stable")
    pivots = np.concatenate(
        [hubs[:32], np.random.default_rng(0).choice(hubs[32:], 32, replace=False)]
    )
    more_pivots = _top(
        np.asarray(projection.graph.betweenness(directed=False, sources=pivots.tolist())), TOP
    )
    full_membership, full_modularity = communities(projection, np.arange(snapshot.edges))
    listed = hubs[:1000]
    print(
        f"full runs: modularity {full_modularity:.3f}; betweenness top-50 from 16 pivots"
        f" against 64: {len(full_betweenness & more_pivots) / TOP:.2f} (the estimate's own noise)",
        file=sys.stderr,
    )
    curve = []
    for name in SAMPLERS:
        for ratio in RATIOS:
            sample = f"{name}:{ratio:.0%}"
            graph = projection.graph_of(sample)
            membership, modularity = communities(projection, projection.sample_edges(sample))
            point = {
                "sampler": name,
                "ratio": ratio,
                "pagerank_top50": len(_top(pagerank(graph), TOP) & full_pagerank) / TOP,
                "betweenness_top50": len(
                    _top(betweenness(graph, projection), TOP) & full_betweenness
                )
                / TOP,
                "modularity": round(modularity, 3),
                "full_modularity": round(full_modularity, 3),
                "top1000_ari": round(
                    igraph.compare_communities(
                        membership[listed].tolist(),
                        full_membership[listed].tolist(),
                        method="adjusted_rand",
                    ),
                    3,
                ),
            }
            curve.append(point)
            print(
                f"{name:12} {ratio:4.0%}  PageRank top-50 {point['pagerank_top50']:.2f}"
                f"  betweenness top-50 {point['betweenness_top50']:.2f}"
                f"  modularity {point['modularity']:.3f} (full {full_modularity:.3f})"
                f"  top-1000 ARI {point['top1000_ari']:.3f}",
                file=sys.stderr,
            )
    defaults = {}
    for spec in PACKS.values():
        if spec.sample:
            name, ratio = sampler(spec.sample)
            defaults[spec.id] = next(
                point for point in curve if (point["sampler"], point["ratio"]) == (name, ratio)
            )
    print(
        json.dumps(
            {
                "bench": "analytics_sampling",
                "defaults": defaults,
                "pagerank_top50_at_default": defaults["analytics.pagerankTop:v1"]["pagerank_top50"],
                "curve": curve,
                "nodes": nodes,
                "edges": snapshot.edges,
            }
        )
    )


if __name__ == "__main__":
    main()
