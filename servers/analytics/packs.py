"""The registry of persisted analytics packs, their parameters, and their cost hints.

Only registered packs run. Each has typed, bounded parameters, an ABAC
permission and a time budget (`timeout_ms`). Whole-graph packs (PageRank,
degree, betweenness, communities) are materialized: computed once per graph
revision in the background, so a run is a lookup of a page of the stored
ranking, priced as such. Parameterised packs (shortest path, neighbourhood,
personalised PageRank) run per call on the resident projection; the cost model
prices such a run without running it: time is per-pack work units (nodes and
edges touched; a share of the graph for traversals) multiplied by this
machine's measured speed (the workers time a reference PageRank at start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidArgument, NotFound, quoted

#: Bytes per node and per edge of a projection's files (ids, edges out and in, offsets;
#: mapped into the workers): 8-byte offsets twice and an id, 4 + 4 + 8 + 4 + 8 per edge.
NODE_BYTES, EDGE_BYTES = 40, 28
#: Bytes per entity of a stored ranking (the id, its score; a community).
RANKED_BYTES = 24

#: PageRank's damping factor (networkx's alpha), for PageRank and personalised PageRank.
DAMPING = 0.85
#: The whole-graph PageRank stops once its certified L1 distance to the exact vector is
#: at most this: well within 1e-6 of networkx's (itself converged to ~6e-8 in the bench).
PAGERANK_TOLERANCE = 5e-7
#: Betweenness estimates: every score within this much of the exact one (the share of
#: pairs whose shortest paths pass through the entity)...
BETWEENNESS_EPSILON = 0.005
#: ... with at least this probability of the contrary (KADABRA's guarantee).
BETWEENNESS_DELTA = 0.1


@dataclass(frozen=True)
class Parameter:
    """A typed, bounded pack parameter."""

    name: str
    type: str  # "integer" | "entity_id" | "entity_ids"
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
    #: A sampler, where a pack has one (none does any more: whole-graph packs are
    #: materialized exactly, parameterised ones say how accurate they are).
    sample: str
    description: str
    parameters: tuple[Parameter, ...]
    #: Time per work unit (see `_work`), relative to PageRank's per node and edge.
    cost_per_unit: float = 1.0
    #: Computed once per graph revision and stored: a run is a lookup.
    materialized: bool = False


TOP_K = Parameter("top_k", "integer", "How many entities to return.", 1, 1000, 50)
HOPS = Parameter("max_hops", "integer", "Longest path, in relationships.", 1, 4, 2)
SOURCE = Parameter("source_id", "entity_id", "The entity to start from.", required=True)
TARGET = Parameter("target_id", "entity_id", "The entity to reach.", required=True)
SEEDS = Parameter(
    "seed_ids",
    "entity_ids",
    "The entities to start from (equally), at most 64.",
    1,
    64,
    required=True,
)

PACKS: Mapping[str, PackSpec] = {
    spec.id: spec
    for spec in (
        PackSpec(
            "analytics.pagerankTop:v1",
            ("analytics.read",),
            450,
            "",
            "Entities ranked by weighted PageRank (damping 0.85), exact to an L1 bound of 5e-7;"
            " computed once per graph revision.",
            (TOP_K,),
            materialized=True,
        ),
        PackSpec(
            "analytics.degreeTop:v1",
            ("analytics.read",),
            450,
            "",
            "Entities ranked by degree (relationships in and out); computed once per revision.",
            (TOP_K,),
            materialized=True,
        ),
        PackSpec(
            "analytics.betweennessTop:v1",
            ("analytics.read",),
            450,
            "",
            "Entities ranked by betweenness (relationships undirected, unweighted): the share"
            " of entity pairs whose shortest paths pass through each, exact on small graphs,"
            f" else within {BETWEENNESS_EPSILON} with probability {1 - BETWEENNESS_DELTA:g}"
            " (KADABRA); computed once per revision.",
            (TOP_K,),
            materialized=True,
        ),
        PackSpec(
            "analytics.communities:v1",
            ("analytics.read",),
            450,
            "",
            "Leiden communities of the whole graph (modularity reported); entities by degree"
            " with their community. Computed once per revision.",
            (TOP_K,),
            materialized=True,
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
        PackSpec(
            "analytics.personalizedPagerank:v1",
            ("analytics.read",),
            450,
            "",
            "What is most related to the seed entities: PageRank restarting at the seeds"
            " (damping 0.85), by forward push, with a bound on its L1 error.",
            (SEEDS, TOP_K),
            cost_per_unit=1.0,
        ),
    )
}


def pack(pack_id: str) -> PackSpec:
    """The registered pack `pack_id`.

    Raises:
        NotFound: No pack is registered under that id.
    """
    spec = PACKS.get(pack_id)
    if spec is None:
        raise NotFound(f"no analytics pack {quoted(pack_id)}; ListPacks names the registered ones")
    return spec


def _bind_entities(spec: PackSpec, parameter: Parameter, value: Any) -> list[str]:
    field = f"parameters.{parameter.name}"
    entities = [str(entity) for entity in value or ()]
    if parameter.required and not entities:
        raise InvalidArgument(f"{spec.id} needs {parameter.name}", field=field)
    if len(entities) > parameter.maximum:
        raise InvalidArgument(
            f"{parameter.name} takes at most {parameter.maximum} entities", field=field
        )
    if any(not entity for entity in entities):
        raise InvalidArgument(f"{parameter.name} holds an empty id", field=field)
    return entities


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
        if parameter.type == "entity_ids":
            bound[parameter.name] = _bind_entities(spec, parameter, value)
            continue
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
    #: The sample the run would use ("" for the whole graph: every pack now).
    sample: str = ""
    #: A lookup of results materialized for the revision.
    materialized: bool = False


# Work units are the time a PageRank takes per node and edge (the workers time one at
# start: `seconds_per_unit`); the constants are fitted by bench/analytics_estimates.py.
#: What any run on a worker costs (the call, selecting the top k).
FIXED_UNITS = 600
#: The share of a heavy-tailed graph (nodes + edges) a directed traversal of so many
#: hops touches from a typical entity: one hop stays local, two reach the hubs, three
#: a few percent of the graph, four half of it. From a hub it touches far more (the
#: mean over all starts is about twice these at two and three hops).
TOUCHED_BY_HOPS = {1: 0.0, 2: 0.001, 3: 0.04, 4: 0.5}
#: A neighbourhood stops once it has top_k entities: units per entity (it passes hubs).
NEIGHBOURHOOD_UNITS_PER_RESULT = 35
#: A personalised PageRank's forward push stops at its L1 tolerance or after this much
#: work (edges scanned), whichever comes first (`algorithms.personalized_pagerank`): about
#: 20 ms on the reference graph, where the bound left is about 0.2; graphs up to about
#: 100k relationships reach the tolerance.
PUSH_TOLERANCE, PUSH_MAX_WORK = 1e-4, 5_000_000
#: Edges a push to the tolerance scans, per relationship of the graph (sweeps of it),
#: and the work units per edge scanned (scipy's sparse kernel: a few ns each).
PUSH_SWEEPS, PUSH_UNITS_PER_EDGE = 40, 0.03
#: A lookup of a materialized ranking: the query and the page, in milliseconds.
LOOKUP_MS, LOOKUP_MS_PER_ENTITY = 2.0, 0.002


def _traversal(nodes: int, edges: int, hops: int) -> tuple[int, int]:
    """(nodes, edges) a directed traversal of `hops` touches, on average."""
    mean_degree = 2 * edges / max(nodes, 1)
    share = TOUCHED_BY_HOPS[hops]
    touched_nodes = min(nodes, max(1 + int(mean_degree), int(nodes * share)))
    touched_edges = min(edges, max(int(mean_degree), int(edges * share)))
    return touched_nodes, touched_edges


def _work(
    spec: PackSpec, params: Mapping[str, Any], nodes: int, edges: int
) -> tuple[int, int, float]:
    """(nodes, edges) a parameterised run touches, and its work units."""
    cost = spec.cost_per_unit
    if spec.id == "analytics.personalizedPagerank:v1":
        scanned = min(edges * PUSH_SWEEPS, PUSH_MAX_WORK)
        return nodes, edges, cost * PUSH_UNITS_PER_EDGE * scanned
    touched_nodes, touched_edges = _traversal(nodes, edges, int(params["max_hops"]))
    if spec.id == "analytics.neighborhood:v1":
        found = NEIGHBOURHOOD_UNITS_PER_RESULT * int(params["top_k"])
        share = min(1.0, found / max(touched_nodes + touched_edges, 1))
        touched_nodes = max(1, int(touched_nodes * share))
        touched_edges = int(touched_edges * share)
    return touched_nodes, touched_edges, cost * (touched_nodes + touched_edges)


def lookup_estimate(nodes: int, page_size: int, budget_ms: float) -> Estimate:
    """Price a page of a materialized ranking: a query and `page_size` entities."""
    size = min(nodes, page_size)
    expected_ms = LOOKUP_MS + LOOKUP_MS_PER_ENTITY * size
    return Estimate(
        expected_ms=round(expected_ms, 3),
        memory_bytes=nodes * RANKED_BYTES,
        nodes_touched=size,
        edges_touched=0,
        sampling_applies=False,
        within_budget=expected_ms <= budget_ms,
        materialized=True,
    )


def estimate(  # noqa: PLR0917 - the facts a price depends on
    spec: PackSpec,
    params: Mapping[str, Any],
    nodes: int,
    edges: int,
    seconds_per_unit: float,
    budget_ms: float,
) -> Estimate:
    """Price a run of `spec` on a graph of `nodes` and `edges`.

    Materialized packs are priced as the lookup of a page (top_k entities); the
    others as a run on the projection. A run whose estimate exceeds the budget
    is not within it (the service refuses it).
    """
    if spec.materialized:
        return lookup_estimate(nodes, int(params.get("top_k", 50)), budget_ms)
    touched_nodes, touched_edges, units = _work(spec, params, nodes, edges)
    expected_ms = (FIXED_UNITS + units) * seconds_per_unit * 1000
    return Estimate(
        expected_ms=round(expected_ms, 3),
        memory_bytes=int(nodes * NODE_BYTES + edges * EDGE_BYTES),
        nodes_touched=touched_nodes,
        edges_touched=touched_edges,
        sampling_applies=False,
        within_budget=expected_ms <= budget_ms,
    )
