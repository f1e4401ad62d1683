"""The registry of persisted analytics packs, their parameters, and their cost hints.

Only registered packs run. Each has typed, bounded parameters, an ABAC
permission, a time budget (`timeout_ms`) and, where its result survives it, a
sampler (`top_edges:10%`: the tenth of the edges whose endpoints have the
highest degree product; it keeps a PageRank top-50 overlap of 0.98 to 1.0 on
the reference tenancy, where a random 10 % keeps 0.94 here and 0.52 on the
issue's graph, see docs/analytics-sampling.md).

The cost model prices a run without running it: time is per-pack work units
(edges and nodes touched, times iterations or pivots) multiplied by this
machine's measured speed (the workers time a reference PageRank at start);
memory is the projection plus the pack's working arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servers.errors import InvalidArgument, NotFound

#: Resident bytes per node and per edge of a projection: igraph's graph, two adjacency
#: row sets, the id index (measured by bench/analytics_estimates.py).
NODE_BYTES, EDGE_BYTES = 200, 100


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
        if not self.sample:
            return 1.0
        return float(self.sample.rsplit(":", 1)[1].rstrip("%")) / 100


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
            "top_edges:10%",
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
            450,
            "top_edges:10%",
            "Leiden communities (modularity) on a sample; the top-k entities by degree.",
            (TOP_K,),
            cost_per_unit=5.6,  # per sampled edge
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
        raise NotFound(f"no analytics pack {pack_id!r}; ListPacks names the registered ones")
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


# Work units are the time a PageRank takes per node and edge (the workers time one at
# start: `seconds_per_unit`); the constants are fitted by bench/analytics_estimates.py.
#: What any run costs (the call, selecting the top k).
FIXED_UNITS = 1500
#: Scoring every edge and choosing the top_edges sample, per edge of the graph.
CHOOSE_UNITS_PER_EDGE = 0.09
#: Building an igraph graph of the sample, per sampled edge.
BUILD_UNITS_PER_EDGE = 3.3
#: The share of a heavy-tailed graph (nodes + edges) a directed traversal of so many
#: hops touches, on average over where it starts: one hop stays local, two reach the
#: hubs, three a fifth of the graph, four nearly all of it. The median start touches
#: less, a hub as start more (up to 4x at three hops).
TOUCHED_BY_HOPS = {1: 0.0, 2: 0.003, 3: 0.2, 4: 0.9}
#: A neighbourhood follows relationships both ways (twice the reach), but stops once it
#: has top_k entities, which hubs two hops away supply: it expands about this many
#: two-hop traversals for 50 entities, growing with top_k ** NEIGHBOURHOOD_GROWTH.
NEIGHBOURHOOD_TWO_HOPS, NEIGHBOURHOOD_GROWTH = 1.7, 0.55


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
    """(nodes, edges) touched and the pack's own work units; `run_edges` < `edges` if sampled."""
    if spec.id == "analytics.degreeTop:v1":
        return nodes, edges, float(nodes)
    if spec.id == "analytics.pagerankTop:v1":
        return nodes, run_edges, float(nodes + run_edges)
    if spec.id == "analytics.betweennessTop:v1":
        return nodes, run_edges, float(nodes + run_edges) * BETWEENNESS_PIVOTS
    if spec.id == "analytics.communities:v1":
        touched = min(nodes, 2 * run_edges)
        return touched, run_edges, float(run_edges)
    hops = int(params["max_hops"])
    if spec.id == "analytics.neighborhood:v1":
        reach = [2 * count for count in _traversal(nodes, edges, hops)]
        two_hops = sum(_traversal(nodes, edges, 2))
        limit = (
            NEIGHBOURHOOD_TWO_HOPS * two_hops * (int(params["top_k"]) / 50) ** NEIGHBOURHOOD_GROWTH
        )
        share = min(1.0, limit / sum(reach))
        touched_nodes, touched_edges = (
            min(nodes, int(reach[0] * share)),
            min(edges, int(reach[1] * share)),
        )
    else:
        touched_nodes, touched_edges = _traversal(nodes, edges, hops)
    return touched_nodes, touched_edges, float(touched_nodes + touched_edges)


def estimate(  # noqa: PLR0917 - the facts a price depends on
    spec: PackSpec,
    params: Mapping[str, Any],
    nodes: int,
    edges: int,
    seconds_per_unit: float,
    budget_ms: float,
) -> Estimate:
    """Price a cold run of `spec` (nothing derived yet) on a graph of `nodes` and `edges`.

    Sampling applies when the pack always samples, or when the full run would
    not fit the budget and the pack has a sampler. Runs at a revision a worker has
    already derived from (a PageRank vector, a partition) take much less.
    """

    def price(run_edges: int) -> tuple[int, int, float]:
        touched_nodes, touched_edges, units = _work(spec, params, nodes, edges, run_edges)
        shared = _sampling_units(spec, edges, run_edges) if run_edges < edges else 0.0
        ms = (FIXED_UNITS + units * spec.cost_per_unit + shared) * seconds_per_unit * 1000
        return touched_nodes, touched_edges, ms

    touched_nodes, touched_edges, expected_ms = price(edges)
    sampled = bool(spec.sample) and (spec.always_sampled or expected_ms > budget_ms)
    if sampled:
        touched_nodes, touched_edges, expected_ms = price(
            min(edges, math.ceil(edges * spec.sample_ratio))
        )
    memory = nodes * NODE_BYTES + edges * EDGE_BYTES  # the projection
    if sampled:
        memory += touched_nodes * NODE_BYTES + touched_edges * EDGE_BYTES
    return Estimate(
        expected_ms=round(expected_ms, 3),
        memory_bytes=int(memory),
        nodes_touched=touched_nodes,
        edges_touched=touched_edges,
        sampling_applies=sampled,
        within_budget=expected_ms <= budget_ms,
    )
