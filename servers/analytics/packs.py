"""The registry of persisted analytics packs, their parameters, and their cost hints.

Only registered packs run. Each has typed, bounded parameters, an ABAC
permission, a time budget (`timeout_ms`) and, where its result survives it, a
sampler: `top_edges:20%` keeps the fifth of the edges whose endpoints have the
highest degree product (PageRank top-50 overlap 0.94 on the reference tenancy),
`random_edges:20%` a uniform fifth (what community detection needs); the
curves are in docs/analytics-sampling.md.

The cost model prices a cold run without running it: time is per-pack work
units (nodes and edges touched, times pivots; a share of the graph for
traversals) multiplied by this machine's measured speed (the workers time a
reference PageRank at start); memory is the projection plus the sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidArgument, NotFound, quoted

#: Resident bytes per node and per edge of a projection: igraph's graph, two adjacency
#: row sets, the id index (measured by bench/analytics_estimates.py).
NODE_BYTES, EDGE_BYTES = 150, 55


@dataclass(frozen=True)
class Parameter:
    """A typed, bounded pack parameter."""

    name: str
    type: str  # "integer" | "entity_id"
    description: str
    minimum: int = 0
    maximum: int = 0
    default: int = 0
    required: bool = False


@dataclass(frozen=True)
class PackSpec:
    """A persisted pack: `{"id", "abac", "timeoutMs", "sample"}` and its parameters."""

    id: str
    abac: tuple[str, ...]
    timeout_ms: int
    sample: str
    description: str
    parameters: tuple[Parameter, ...]
    #: Time per work unit (see `_work`), relative to PageRank's per node and edge.
    cost_per_unit: float
    #: Whether the pack always runs on its sample (its full run is never affordable).
    always_sampled: bool = False
    #: Whether its sampled runs use the sample as an igraph graph (built once per revision).
    builds_sample_graph: bool = True

    @property
    def sample_ratio(self) -> float:
        """The share of edges the sampler keeps (1.0 without a sampler)."""
        return sampler(self.sample)[1] if self.sample else 1.0


#: Edge samplers: "top_edges" keeps the edges whose endpoints have the highest degree
#: product (the hubs' backbone), "random_edges" a uniform draw (seeded by the revision).
SAMPLERS = ("top_edges", "random_edges")


def sampler(spec: str) -> tuple[str, float]:
    """(name, share of edges kept) of a sampler spec such as "top_edges:20%".

    >>> sampler("random_edges:20%")
    ('random_edges', 0.2)
    """
    name, _, percent = spec.partition(":")
    if name not in SAMPLERS or not percent.endswith("%"):
        raise ValueError(f"unknown sampler {spec!r}")
    ratio = float(percent.removesuffix("%")) / 100
    if not 0 < ratio <= 1:
        raise ValueError(f"sampler {spec!r} must keep between 0 and 100% of the edges")
    return name, ratio


TOP_K = Parameter("top_k", "integer", "How many entities to return.", 1, 1000, 50)
HOPS = Parameter("max_hops", "integer", "Longest path, in relationships.", 1, 4, 2)
SOURCE = Parameter("source_id", "entity_id", "The entity to start from.", required=True)
TARGET = Parameter("target_id", "entity_id", "The entity to reach.", required=True)

PACKS: Mapping[str, PackSpec] = {
    spec.id: spec
    for spec in (
        PackSpec(
            "analytics.pagerankTop:v1",
            ("analytics.read",),
            450,
            "top_edges:20%",
            "Entities ranked by weighted PageRank (damping 0.85).",
            (TOP_K,),
            cost_per_unit=1.0,
        ),
        PackSpec(
            "analytics.degreeTop:v1",
            ("analytics.read",),
            450,
            "",
            "Entities ranked by degree (relationships in and out).",
            (TOP_K,),
            cost_per_unit=0.04,
        ),
        PackSpec(
            "analytics.betweennessTop:v1",
            ("analytics.read",),
            450,
            "top_edges:10%",
            "Entities ranked by betweenness, estimated from 16 pivots on a sample.",
            (TOP_K,),
            cost_per_unit=0.2,  # per pivot
            always_sampled=True,
        ),
        PackSpec(
            "analytics.communities:v1",
            ("analytics.read",),
            1000,
            "random_edges:20%",
            "Leiden communities (modularity) on a sample; the top-k entities by degree.",
            (TOP_K,),
            cost_per_unit=5.5,  # per sampled edge and touched entity
            always_sampled=True,
            builds_sample_graph=False,
        ),
        PackSpec(
            "analytics.shortestPath:v1",
            ("analytics.read",),
            450,
            "",
            "The lightest path of at most max_hops relationships (weights as distances).",
            (SOURCE, TARGET, HOPS),
            cost_per_unit=1.0,
        ),
        PackSpec(
            "analytics.neighborhood:v1",
            ("analytics.read",),
            450,
            "",
            "Entities within max_hops relationships, nearest first, at most top_k.",
            (SOURCE, HOPS, TOP_K),
            cost_per_unit=1.0,
        ),
    )
}

#: Pivots the betweenness estimate starts from.
BETWEENNESS_PIVOTS = 16


def pack(pack_id: str) -> PackSpec:
    """The registered pack `pack_id`.

    Raises:
        NotFound: No pack is registered under that id.
    """
    spec = PACKS.get(pack_id)
    if spec is None:
        raise NotFound(f"no analytics pack {quoted(pack_id)}; ListPacks names the registered ones")
    return spec


def bind(spec: PackSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The pack's parameters from the request: defaults filled, bounds and presence checked.

    Args:
        spec: The pack.
        given: Values the caller set (unset ones absent).

    Raises:
        InvalidArgument: A required parameter is missing or a value is out of bounds.
    """
    bound: dict[str, Any] = {}
    for parameter in spec.parameters:
        value = given.get(parameter.name)
        field = f"parameters.{parameter.name}"
        if value in (None, ""):
            if parameter.required:
                raise InvalidArgument(f"{spec.id} needs {parameter.name}", field=field)
            value = parameter.default
        if parameter.type == "integer" and not parameter.minimum <= int(value) <= parameter.maximum:
            raise InvalidArgument(
                f"{parameter.name} must be between {parameter.minimum} and {parameter.maximum}",
                field=field,
            )
        bound[parameter.name] = value
    return bound


@dataclass(frozen=True)
class Estimate:
    """A run priced without running it."""

    expected_ms: float
    memory_bytes: int
    nodes_touched: int
    edges_touched: int
    sampling_applies: bool
    within_budget: bool
    #: The sample the run would use, e.g. "top_edges:10%" ("" for the whole graph).
    sample: str = ""


# Work units are the time a PageRank takes per node and edge (the workers time one at
# start: `seconds_per_unit`); the constants are fitted by bench/analytics_estimates.py.
#: What any run costs (the call, selecting the top k).
FIXED_UNITS = 600
#: Scoring every edge and choosing a sample, per edge of the graph.
CHOOSE_UNITS_PER_EDGE = 0.09
#: Building an igraph graph of the sample, per sampled edge.
BUILD_UNITS_PER_EDGE = 1.5
#: The share of a heavy-tailed graph (nodes + edges) a directed traversal of so many
#: hops touches from a typical entity: one hop stays local, two reach the hubs, three
#: a few percent of the graph, four half of it. From a hub it touches far more (the
#: mean over all starts is about twice these at two and three hops).
TOUCHED_BY_HOPS = {1: 0.0, 2: 0.001, 3: 0.04, 4: 0.5}
#: A neighbourhood stops once it has top_k entities: units per entity (it passes hubs).
NEIGHBOURHOOD_UNITS_PER_RESULT = 35
#: Communities' pass over every relationship (the modularity), per edge of the graph.
MODULARITY_UNITS_PER_EDGE = 0.43
#: Sampled runs over budget try the pack's ratio, then halves of it down to this share.
MIN_SAMPLE_RATIO = 0.01
#: Runs are planned to fit this share of their budget: estimates are good to about 2x,
#: and a cold run killed at its deadline leaves nothing memoized for the next one.
PLANNING_SHARE = 0.5


def _sampling_units(spec: PackSpec, edges: int, sample_edges: int) -> float:
    """Choosing a cold sample, and building its igraph graph for the packs that use one."""
    build = BUILD_UNITS_PER_EDGE * sample_edges if spec.builds_sample_graph else 0.0
    return CHOOSE_UNITS_PER_EDGE * edges + build


def _traversal(nodes: int, edges: int, hops: int) -> tuple[int, int]:
    """(nodes, edges) a directed traversal of `hops` touches, on average."""
    mean_degree = 2 * edges / max(nodes, 1)
    share = TOUCHED_BY_HOPS[hops]
    touched_nodes = min(nodes, max(1 + int(mean_degree), int(nodes * share)))
    touched_edges = min(edges, max(int(mean_degree), int(edges * share)))
    return touched_nodes, touched_edges


def _work(
    spec: PackSpec, params: Mapping[str, Any], nodes: int, edges: int, run_edges: int
) -> tuple[int, int, float]:
    """(nodes, edges) touched and work units; `run_edges` < `edges` if sampled."""
    cost = spec.cost_per_unit
    if spec.id == "analytics.degreeTop:v1":
        return nodes, edges, cost * nodes
    if spec.id == "analytics.pagerankTop:v1":
        return nodes, run_edges, cost * (nodes + run_edges)
    if spec.id == "analytics.betweennessTop:v1":
        return nodes, run_edges, cost * (nodes + run_edges) * BETWEENNESS_PIVOTS
    if spec.id == "analytics.communities:v1":
        # Leiden runs on the entities the sampled edges touch (fewer than a uniform
        # draw of endpoints would: the hubs recur), then modularity on the whole graph.
        touched = int(nodes * -math.expm1(-2 * run_edges / max(nodes, 1)))
        return (
            touched,
            run_edges,
            cost * (run_edges + touched) + (MODULARITY_UNITS_PER_EDGE * edges),
        )
    touched_nodes, touched_edges = _traversal(nodes, edges, int(params["max_hops"]))
    if spec.id == "analytics.neighborhood:v1":
        found = NEIGHBOURHOOD_UNITS_PER_RESULT * int(params["top_k"])
        share = min(1.0, found / max(touched_nodes + touched_edges, 1))
        touched_nodes = max(1, int(touched_nodes * share))
        touched_edges = int(touched_edges * share)
    return touched_nodes, touched_edges, cost * (touched_nodes + touched_edges)


def _samples(spec: PackSpec) -> list[str]:
    """The pack's sampler at its ratio, then at halves of it down to MIN_SAMPLE_RATIO."""
    name, ratio = sampler(spec.sample)
    ratios = [ratio]
    while ratios[-1] / 2 >= MIN_SAMPLE_RATIO:
        ratios.append(ratios[-1] / 2)
    return [f"{name}:{share * 100:g}%" for share in ratios]


def estimate(  # noqa: PLR0917 - the facts a price depends on
    spec: PackSpec,
    params: Mapping[str, Any],
    nodes: int,
    edges: int,
    seconds_per_unit: float,
    budget_ms: float,
) -> Estimate:
    """Price a cold run of `spec` (nothing derived yet) on a graph of `nodes` and `edges`.

    Sampling applies when the pack always samples, or when the full run would not
    fit the planned share of the budget and the pack has a sampler; the sample is
    the pack's, or the largest halving of its ratio that fits. A run whose estimate
    exceeds the whole budget is not within it (the service refuses it). Runs at a
    revision a worker has already derived from (a PageRank vector, a partition)
    take much less.
    """

    def price(run_edges: int) -> tuple[int, int, float]:
        touched_nodes, touched_edges, units = _work(spec, params, nodes, edges, run_edges)
        shared = _sampling_units(spec, edges, run_edges) if run_edges < edges else 0.0
        ms = (FIXED_UNITS + units + shared) * seconds_per_unit * 1000
        return touched_nodes, touched_edges, ms

    planned_ms = budget_ms * PLANNING_SHARE
    touched_nodes, touched_edges, expected_ms = price(edges)
    sample = ""
    if spec.sample and (spec.always_sampled or expected_ms > planned_ms):
        for sample in _samples(spec):
            run_edges = min(edges, math.ceil(edges * sampler(sample)[1]))
            touched_nodes, touched_edges, expected_ms = price(run_edges)
            if expected_ms <= planned_ms:
                break
    memory = nodes * NODE_BYTES + edges * EDGE_BYTES  # the projection
    if sample:
        memory += touched_nodes * NODE_BYTES + touched_edges * EDGE_BYTES
    return Estimate(
        expected_ms=round(expected_ms, 3),
        memory_bytes=int(memory),
        nodes_touched=touched_nodes,
        edges_touched=touched_edges,
        sampling_applies=bool(sample),
        within_budget=expected_ms <= budget_ms,
        sample=sample,
    )
