"""What the catalog's composite availability costs, against a plain networkx traversal.

Builds a seeded random DAG of 1,000 services and 5,000 dependency edges: most
requirements are plain dependencies, three in ten are groups of two to four
targets of which k are needed (redundant, quorum or all), and dependencies
lean towards a few shared low-level services, as databases and identity
providers draw them in real graphs. Then times `composite_availability` over
it (`compose`: each entity counted once, through required sets kept as bit
sets), and the weakest link of every service, separately. The baseline, in
the same run, is what one would write first with networkx: a DiGraph of the
edges, `nx.topological_sort`, required sets as Python sets, and the groups in
the textbook closed forms (1 - ∏(1 - A) for one of n, ∏ A for all, a sum over
the up-sets otherwise); both must give the same composites to 1e-9 before
anything is timed. Variants alternate round by round, so a noisy neighbour touches all of
them alike; each figure is a median.

The last line is JSON: {"bench": "catalog_slo", "services", "edges",
"composite_ms", "weakest_ms", "baseline_ms", "ratio", "rounds"} with ratio =
baseline_ms / composite_ms (target: composite_ms well under 50).

    python bench/catalog_slo.py [--quick] [--rounds N] [--services N] [--edges N]

`--quick` runs 10 rounds (a few seconds here); the default is 40.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import networkx as nx

from servers.catalog.composite import Composition, Node, Requirement, compose

REPEATS_PER_ROUND = 3
# Share of requirements that are groups rather than plain dependencies.
GROUP_SHARE = 0.3
# Targets are drawn as index * u**SKEW for u uniform in [0, 1): low indices, the shared
# infrastructure, are depended on most. With uniform targets nearly every composite of a
# 5-edges-a-service graph multiplies down to zero, which no real catalog looks like.
SKEW = 3.0


def generated_graph(services: int, edges: int, seed: int = 7) -> dict[str, Node]:
    """A random DAG of `services` entities whose requirements name `edges` targets in all.

    Service i only depends on services before it; the mapping lists them in a
    shuffled order so the traversal meets dependents before their dependencies.
    """
    if not 0 <= edges <= services * (services - 1) // 2:
        raise SystemExit(
            f"{services} services hold between 0 and {services * (services - 1) // 2} edges"
        )
    rng = random.Random(seed)
    names = [f"svc-{index:04d}" for index in range(services)]
    requirements: list[list[Requirement]] = [[] for _ in range(services)]
    depended_on: list[set[int]] = [set() for _ in range(services)]
    left = edges
    while left:
        dependent = rng.randrange(1, services)
        size = min(left, rng.randint(2, 4) if rng.random() < GROUP_SHARE else 1)
        taken = depended_on[dependent]
        if dependent - len(taken) < size:
            continue
        members: set[int] = set()
        while len(members) < size:
            candidate = int(dependent * rng.random() ** SKEW)
            if candidate not in taken:
                members.add(candidate)
        taken |= members
        left -= size
        requirements[dependent].append(
            Requirement(tuple(names[index] for index in sorted(members)), rng.randint(1, size))
        )
    nodes = {
        names[index]: Node(rng.uniform(0.999, 0.99999), tuple(requirements[index]))
        for index in range(services)
    }
    order = list(nodes)
    rng.shuffle(order)
    return {name: nodes[name] for name in order}


def textbook_group(required: int, availabilities: Sequence[float]) -> float:
    """P(at least `required` up) in the closed forms, or summed over every up-set."""
    if required == len(availabilities):
        return math.prod(availabilities)
    if required == 1:
        return 1 - math.prod(1 - availability for availability in availabilities)
    total = 0.0
    for up_count in range(required, len(availabilities) + 1):
        for up in itertools.combinations(range(len(availabilities)), up_count):
            total += math.prod(
                availability if index in up else 1 - availability
                for index, availability in enumerate(availabilities)
            )
    return total


def networkx_composites(nodes: Mapping[str, Node]) -> dict[str, float]:
    """The same composites, as one would first write them with networkx and Python sets."""
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    for name, node in nodes.items():
        for requirement in node.requirements:
            for target in requirement.targets:
                graph.add_edge(target, name)
    required: dict[str, set[str]] = {}
    weights: dict[str, float] = {}
    composites: dict[str, float] = {}
    for name in nx.topological_sort(graph):
        node = nodes[name]
        needs = {name}
        quorums = []
        for requirement in node.requirements:
            if requirement.required == len(requirement.targets):
                for target in requirement.targets:
                    needs |= required[target]
            else:
                quorums.append(requirement)
        for requirement in quorums:
            counts = Counter(u for target in requirement.targets for u in required[target])
            enough = len(requirement.targets) - requirement.required + 1
            needs |= {u for u, count in counts.items() if count >= enough}
        weight = node.own
        for requirement in quorums:
            members = [
                math.prod(weights[u] for u in required[target] - needs)
                for target in requirement.targets
            ]
            weight *= textbook_group(requirement.required, members)
        weights[name] = weight
        required[name] = needs
        composites[name] = math.prod(weights[u] for u in needs)
    return composites


def every_weakest_link(composition: Composition) -> int:
    """Finds every service's weakest link; returns how many have one."""
    return sum(bool(composition.weakest_links(name, 1)) for name in composition.composites)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds (a few seconds)")
    parser.add_argument("--rounds", type=int, help="alternating rounds over every variant")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--edges", type=int, default=5000)
    args = parser.parse_args()
    rounds = args.rounds or (10 if args.quick else 40)

    nodes = generated_graph(args.services, args.edges)
    edges = sum(
        len(requirement.targets) for node in nodes.values() for requirement in node.requirements
    )
    composition = compose(nodes)
    ours, theirs = composition.composites, networkx_composites(nodes)
    # Both must agree before anything is timed.
    assert ours.keys() == theirs.keys()
    assert all(math.isclose(ours[name], theirs[name], rel_tol=1e-9) for name in ours)

    variants: dict[str, Callable[[], Any]] = {
        "composite": lambda: compose(nodes),
        "weakest": lambda: every_weakest_link(composition),
        "baseline": lambda: networkx_composites(nodes),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            for _ in range(REPEATS_PER_ROUND):
                began = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - began)

    composite_ms, baseline_ms = median_ms(samples["composite"]), median_ms(samples["baseline"])
    result = {
        "bench": "catalog_slo",
        "services": len(nodes),
        "edges": edges,
        "composite_ms": composite_ms,
        "weakest_ms": median_ms(samples["weakest"]),
        "baseline_ms": baseline_ms,
        "ratio": round(baseline_ms / composite_ms, 1),
        "rounds": rounds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
