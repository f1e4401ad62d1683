"""The Analytics acceptance pack: every pack's p95 under load, and sampling and hints enforced.

Two criteria of the seed, checked as a client sees the deployment:

* **pack p95 latency ≤ 450 ms**: every pack `ListPacks` offers, run at about 10
  requests a second in all (open loop: a request every 100 ms, the packs in
  turn, whatever the earlier ones are doing) for 5 s (quick) or 30 s, on the
  demo tenant when it has ready results, else on a fresh tenant given a modest
  graph. Each pack is run once first (its first run maps the revision's
  projection in; reported apart, not counted). Latency is the client's, from
  the call to its answer. Raw: `latencies.json` ({pack id: [ms, ...]}) and
  `latency_summary.json` (p50/p95/p99 per pack).
* **sampling and hints enforced**: what the contract promises about accuracy,
  sampling and cost hints holds. Every answer says how accurate it is
  (`accuracy.method`; exact, or its ε/δ or L1 bound, or a community partition's
  modularity) and whether it sampled (never, for packs whose spec has no
  sampler; a sampled answer names its sampler and ratio and cannot be exact);
  every answer names its revision and freshness; parameters outside the bounds
  `ListPacks` publishes, missing required ones and over-long seed lists are
  refused INVALID_ARGUMENT naming the field (over the SDK and GraphQL); pages
  are capped at 500 entities and parameterised packs refuse paging;
  `EstimatePack`'s cost hints price materialized packs as lookups, match the
  answers' sampling and are within budget for what the lane runs; a pack
  priced over its budget is refused FAILED_PRECONDITION with the hint
  (`expected_ms`, `budget_ms`) when the graph makes one (else the lane says it
  could not). Raw: `sampling.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from intelgraph.sdk import AsyncClient, ConductorError
from intelgraph.sdk import analytics as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncAnalyticsClient

from servers.acceptance.checks import Context, percentile

LANE = "analytics"

#: The seed's target, per pack.
P95_THRESHOLD_MS = 450.0
#: Requests a second, all packs together.
REQUESTS_PER_S = 10.0
#: How long the load lasts.
QUICK_S, FULL_S = 5.0, 30.0
#: The graph imported when there is no demo tenant: a few thousand relationships.
GRAPH_ENTITIES, GRAPH_RELATIONSHIPS, GRAPH_SEED = 1_500, 5_000, 6
#: The load's random seed (parameters: entities, hops, sizes).
LOAD_SEED = 11
#: How long a fresh import's results may take to be ready.
READY_TIMEOUT_S = 120.0
#: The contract's page cap for RunPack (RunPackRequest.page: at most 500 entities).
PAGE_CAP = 500
READER = ("analytics.read",)


# -- judgments (pure: tests give them bad data) -----------------------------------------------


@dataclass(frozen=True)
class Latencies:
    """The load's figures, and whether they hold.

    Attributes:
        summary: Per pack: runs, errors, p50/p95/p99 in ms.
        worst_p95_ms: The highest pack p95 (0 when nothing answered).
        worst_pack: Whose it is.
        passed: Every pack answered every request and its p95 is within the threshold.
        problems: Why not.
    """

    summary: dict[str, dict[str, float]]
    worst_p95_ms: float
    worst_pack: str
    passed: bool
    problems: tuple[str, ...]


def judge_latencies(
    latencies: Mapping[str, Sequence[float]],
    errors: Mapping[str, int],
    threshold_ms: float = P95_THRESHOLD_MS,
) -> Latencies:
    """Judge the load: `latencies` (ms) and `errors` per pack.

    >>> judge_latencies({"a": [10.0] * 19 + [900.0]}, {}).passed
    True
    >>> judge_latencies({"a": [10.0] * 18 + [900.0] * 2}, {}).worst_p95_ms
    900.0
    """
    summary: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    for pack_id, samples in sorted(latencies.items()):
        summary[pack_id] = {
            "runs": len(samples),
            "errors": errors.get(pack_id, 0),
            "p50_ms": round(percentile(samples, 0.50), 2),
            "p95_ms": round(percentile(samples, 0.95), 2),
            "p99_ms": round(percentile(samples, 0.99), 2),
        }
        if not samples:
            problems.append(f"{pack_id} never answered")
        elif summary[pack_id]["p95_ms"] > threshold_ms:
            problems.append(f"{pack_id} p95 {summary[pack_id]['p95_ms']:.0f} ms")
    for pack_id, count in sorted(errors.items()):
        if count:
            problems.append(f"{pack_id} failed {count} times")
    if not summary:
        problems.append("no pack was run")
    worst = max(summary, key=lambda pack_id: summary[pack_id]["p95_ms"], default="")
    worst_ms = summary[worst]["p95_ms"] if worst else 0.0
    return Latencies(summary, worst_ms, worst, not problems, tuple(problems))


def result_problems(result: pb.PackResult, *, spec_sample: str = "") -> list[str]:
    """What a pack's answer misstates about its accuracy, sampling or freshness (none: honest).

    `spec_sample` is the pack spec's sampler ("" : the pack never samples).

    >>> honest = pb.PackResult(pack_id="p", graph_revision=1, accuracy=pb.Accuracy(
    ...     exact=True, method="brandes"), freshness=pb.Freshness(revision=1, latest_revision=1))
    >>> honest.freshness.computed_at.seconds = 1
    >>> result_problems(honest)
    []
    >>> honest.accuracy.exact = False
    >>> result_problems(honest)
    ['p: not exact, and states no bound (ε/δ, L1) nor modularity']
    """
    problems = [
        *_accuracy_problems(result),
        *_sampling_problems(result, spec_sample),
        *_freshness_problems(result),
    ]
    return [f"{result.pack_id}: {problem}" for problem in problems]


def _accuracy_problems(result: pb.PackResult) -> list[str]:
    accuracy = result.accuracy
    problems = []
    if not result.HasField("accuracy") or not accuracy.method:
        problems.append("does not name its method")
    if accuracy.exact and (accuracy.epsilon or accuracy.delta):
        problems.append("says exact and gives an ε/δ guarantee")
    stated = (accuracy.epsilon > 0 and 0 < accuracy.delta < 1) or accuracy.l1_error_bound > 0
    if not accuracy.exact and not stated and not (result.communities and result.modularity):
        problems.append("not exact, and states no bound (ε/δ, L1) nor modularity")
    if accuracy.epsilon < 0 or accuracy.l1_error_bound < 0 or not 0 <= accuracy.delta < 1:
        problems.append("states an impossible bound")
    return problems


def _sampling_problems(result: pb.PackResult, spec_sample: str) -> list[str]:
    sampling = result.sampling
    problems = []
    if sampling.sampled:
        if not spec_sample:
            problems.append("sampled, though its spec has no sampler")
        if not sampling.sampler or not 0 < sampling.ratio < 1:
            problems.append("sampled without naming its sampler and ratio")
        if result.accuracy.exact:
            problems.append("sampled yet says exact")
    elif sampling.sampler:
        problems.append("names a sampler but says it did not sample")
    if sampling.sampled != result.estimate.sampling_applies:
        problems.append("its estimate and its answer disagree on sampling")
    return problems


def _freshness_problems(result: pb.PackResult) -> list[str]:
    fresh = result.freshness
    problems = []
    if not result.HasField("freshness") or fresh.revision <= 0 or fresh.computed_at.seconds <= 0:
        problems.append("does not say which revision it was computed on, and when")
    elif fresh.revision > fresh.latest_revision or fresh.stale != (
        fresh.revision < fresh.latest_revision
    ):
        problems.append(
            f"freshness inconsistent (revision {fresh.revision}, latest"
            f" {fresh.latest_revision}, stale {fresh.stale})"
        )
    if result.graph_revision != fresh.revision:
        problems.append("graph_revision and freshness.revision differ")
    return problems


def refusal_problem(
    error: ConductorError | None, *, field_name: str, code: str = "INVALID_ARGUMENT"
) -> str | None:
    """What is wrong with how a request that must be refused was answered (None: refused right).

    >>> refusal_problem(None, field_name="parameters.top_k")
    'accepted'
    """
    if error is None:
        return "accepted"
    if error.code.name != code:
        return f"refused {error.code.name}, not {code}: {error.details[:120]}"
    if field_name and error.metadata.get("field") != field_name:
        return f"refused without naming the field {field_name} ({error.metadata})"
    return None


# -- the graph -------------------------------------------------------------------------------


def sample_graph(
    entities: int, relationships: int, seed: int
) -> tuple[list[pb.Entity], list[pb.Relationship]]:
    """A deterministic graph with heavy-tailed degrees (popular entities attract ties).

    >>> nodes, edges = sample_graph(50, 200, seed=1)
    >>> len(nodes), len(edges) <= 200, all(e.source_id != e.target_id for e in edges)
    (50, True, True)
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible graph, not crypto
    ranks = list(range(1, entities + 1))
    rng.shuffle(ranks)
    popularity = [1.0 / rank**0.8 for rank in ranks]
    sources = rng.choices(range(entities), weights=popularity, k=relationships)
    targets = rng.choices(range(entities), weights=popularity, k=relationships)
    return (
        [pb.Entity(id=f"a{index}", type="person") for index in range(entities)],
        [
            pb.Relationship(
                id=f"ar{index}",
                source_id=f"a{source}",
                target_id=f"a{target}",
                type="knows",
                weight=round(rng.uniform(0.1, 1.0), 3),
            )
            for index, (source, target) in enumerate(zip(sources, targets, strict=True))
            if source != target
        ],
    )


@dataclass
class Graph:
    """The tenant the lane runs packs on, and what it knows of its graph."""

    tenant: uuid.UUID
    origin: str
    status: pb.GetGraphStatusResponse
    entity_ids: list[str] = field(default_factory=list)
    #: Where `entity_ids` came from.
    pool: str = ""


async def _ready(analytics: AsyncAnalyticsClient, revision: int) -> pb.GetGraphStatusResponse:
    """The graph status once `revision`'s whole-graph results are ready."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        status = await analytics.get_graph_status()
        if status.ready_revision >= revision:
            return status
        if status.state == pb.MATERIALIZATION_STATE_FAILED:
            raise RuntimeError(f"revision {revision}'s results failed: {status.detail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"revision {revision}'s results not ready in {READY_TIMEOUT_S} s")
        await asyncio.sleep(0.1)


async def graph_tenant(context: Context) -> Graph:
    """The demo tenant when it has ready results; else a fresh tenant with a modest graph."""
    if context.demo_tenant is not None:
        async with context.client(context.demo_tenant, READER) as client:
            status = await client.analytics.get_graph_status()
        if status.ready_revision > 0:
            return Graph(context.demo_tenant, "demo tenant", status)
    tenant = context.tenant()
    async with context.client(tenant, ["analytics.read", "analytics.write"]) as client:
        entities, relationships = sample_graph(GRAPH_ENTITIES, GRAPH_RELATIONSHIPS, GRAPH_SEED)
        imported = await client.analytics.import_graph_from(
            entities=entities, relationships=relationships
        )
        status = await _ready(client.analytics, imported.graph_revision)
    origin = "imported" + ("; the demo tenant had no ready results" if context.demo_tenant else "")
    return Graph(tenant, origin, status)


def _ranking_packs(packs: Sequence[pb.PackSpec]) -> list[pb.PackSpec]:
    """Packs that take only a top_k: whole-graph rankings, paged."""
    return [spec for spec in packs if {p.name for p in spec.parameters} <= {"top_k"}]


async def entity_pool(
    analytics: AsyncAnalyticsClient, packs: Sequence[pb.PackSpec]
) -> tuple[list[str], str]:
    """Entity ids to start parameterised packs from, and where they came from.

    A client knows the entities a ranking names: the first page of the first
    ranking pack (its best-ranked entities, so the runs start from hubs, which
    reach further than typical entities do: the harder case).
    """
    for spec in _ranking_packs(packs):
        page = await analytics.run_pack(pack_id=spec.id, page=PageRequest(page_size=PAGE_CAP))
        if page.result.entities:
            ids = [entity.entity_id for entity in page.result.entities]
            return ids, f"the first {len(ids)} entities of {spec.id}"
    return [], "none: no ranking pack answered"


def parameters_for(
    spec: pb.PackSpec, entity_ids: Sequence[str], rng: random.Random
) -> pb.PackParameters:
    """Parameters within the bounds `spec` publishes, drawn at random (entities from the pool)."""
    parameters = pb.PackParameters()
    fields = pb.PackParameters.DESCRIPTOR.fields_by_name
    for parameter in spec.parameters:
        if parameter.name not in fields:
            continue  # a parameter this SDK does not know: its default applies
        if parameter.type == pb.PARAMETER_TYPE_INTEGER:
            low, high = parameter.minimum, parameter.maximum
            if parameter.name == "top_k":
                high = min(high, 50)  # what a dashboard asks for
            elif parameter.name == "max_hops":
                high = min(high, 3)
            setattr(parameters, parameter.name, rng.randint(low, max(low, high)))
        elif parameter.type == pb.PARAMETER_TYPE_ENTITY_ID and entity_ids:
            setattr(parameters, parameter.name, rng.choice(entity_ids))
        elif parameter.type == pb.PARAMETER_TYPE_ENTITY_IDS and entity_ids:
            count = min(rng.randint(1, 3), max(parameter.maximum, 1), len(entity_ids))
            getattr(parameters, parameter.name).extend(rng.sample(entity_ids, count))
    return parameters


# -- latency ---------------------------------------------------------------------------------


@dataclass
class Load:
    """What the load saw: latencies and errors per pack, the answers, the warm-up runs."""

    latencies: dict[str, list[float]]
    errors: dict[str, int]
    failures: list[str] = field(default_factory=list)
    answers: list[pb.PackResult] = field(default_factory=list)
    warmup_ms: dict[str, float] = field(default_factory=dict)


async def drive(
    analytics: AsyncAnalyticsClient,
    packs: Sequence[pb.PackSpec],
    entity_ids: Sequence[str],
    *,
    seconds: float,
    rate: float = REQUESTS_PER_S,
) -> Load:
    """Every pack in turn, `rate` requests a second in all, open loop, for `seconds`."""
    rng = random.Random(LOAD_SEED)  # noqa: S311 - reproducible parameters, not crypto
    load = Load({spec.id: [] for spec in packs}, dict.fromkeys((spec.id for spec in packs), 0))

    async def one(spec: pb.PackSpec, parameters: pb.PackParameters, *, warmup: bool) -> None:
        started = time.perf_counter()
        try:
            ran = await analytics.run_pack(pack_id=spec.id, parameters=parameters)
        except ConductorError as error:
            load.errors[spec.id] += 1
            load.failures.append(f"{spec.id}: {error.code.name}: {error.details[:160]}")
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        if warmup:
            load.warmup_ms[spec.id] = round(elapsed_ms, 2)
        else:
            load.latencies[spec.id].append(round(elapsed_ms, 3))
        load.answers.append(ran.result)

    for spec in packs:  # each pack's first run maps the revision's projection in
        await one(spec, parameters_for(spec, entity_ids, rng), warmup=True)
    tasks = []
    begin = time.perf_counter()
    for tick in range(round(seconds * rate)):
        await asyncio.sleep(max(0.0, begin + tick / rate - time.perf_counter()))
        spec = packs[tick % len(packs)]
        parameters = parameters_for(spec, entity_ids, rng)
        tasks.append(asyncio.create_task(one(spec, parameters, warmup=False)))
    await asyncio.gather(*tasks)
    return load


async def check_latency(
    context: Context, graph: Graph, client: AsyncClient, packs: Sequence[pb.PackSpec]
) -> Load:
    """Run the load and judge every pack's p95."""
    seconds = QUICK_S if context.quick else FULL_S
    load = await drive(client.analytics, packs, graph.entity_ids, seconds=seconds)
    judged = judge_latencies(load.latencies, load.errors)
    context.raw("latencies", load.latencies)
    context.raw(
        "latency_summary",
        {
            "tenant": str(graph.tenant),
            "graph": graph.origin,
            "entities": graph.status.entities,
            "relationships": graph.status.relationships,
            "revision": graph.status.ready_revision,
            "requests_per_s": REQUESTS_PER_S,
            "seconds": seconds,
            "threshold_ms": P95_THRESHOLD_MS,
            "latency": "client-side, from the RunPack call to its answer, over gRPC (SDK)",
            "entity_pool": graph.pool,
            "packs": judged.summary,
            "warmup_ms": load.warmup_ms,
            "failures": load.failures[:50],
        },
    )
    runs = sum(len(samples) for samples in load.latencies.values())
    context.check(
        "pack p95 latency",
        threshold=f"≤ {P95_THRESHOLD_MS:.0f} ms",
        measured=f"{judged.worst_p95_ms:.0f} ms" if judged.worst_pack else "none",
        passed=judged.passed,
        value=judged.worst_p95_ms,
        detail=(
            f"worst p95 {judged.worst_pack}; {len(packs)} packs, {runs} runs at"
            f" {REQUESTS_PER_S:.0f}/s for {seconds:.0f} s (graph: {graph.origin})"
            f" ({graph.status.entities} entities, {graph.status.relationships} relationships)"
            if judged.passed
            else "; ".join(judged.problems)[:500]
        ),
    )
    return load


# -- sampling and hints ----------------------------------------------------------------------


@dataclass
class Findings:
    """The sampling-and-hints checks: each one's outcome, and what was seen."""

    checked: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)

    def expect(self, what: str, problem: str | None) -> None:
        """Record one expectation: `problem` None means it held."""
        self.checked.append({"what": what, "passed": problem is None, "problem": problem})

    @property
    def problems(self) -> list[str]:
        """What did not hold, one line each."""
        return [f"{c['what']}: {c['problem']}" for c in self.checked if not c["passed"]]


async def _refused(call: Any) -> ConductorError | None:
    """The error an awaitable fails with, or None if it succeeded."""
    try:
        await call
    except ConductorError as error:
        return error
    return None


def _spec_problem(spec: pb.PackSpec) -> str | None:
    for parameter in spec.parameters:
        if parameter.type == pb.PARAMETER_TYPE_INTEGER and not (
            parameter.minimum <= parameter.default_value <= parameter.maximum
            and parameter.minimum < parameter.maximum
        ):
            return f"{parameter.name} bounds {parameter.minimum}..{parameter.maximum}"
        if parameter.type == pb.PARAMETER_TYPE_ENTITY_IDS and parameter.maximum < 1:
            return f"{parameter.name} takes at most {parameter.maximum} ids"
    return None


async def _bounds(
    findings: Findings, analytics: AsyncAnalyticsClient, spec: pb.PackSpec, pool: Sequence[str]
) -> None:
    """Every published bound of `spec` refused one step past it, naming the field."""
    valid = parameters_for(spec, pool, random.Random(0))  # noqa: S311 - not crypto
    for parameter in spec.parameters:
        field_name = f"parameters.{parameter.name}"
        if parameter.name not in pb.PackParameters.DESCRIPTOR.fields_by_name:
            findings.expect(f"{spec.id} {parameter.name} known to this SDK", "unknown parameter")
            continue
        wrongs: list[tuple[str, pb.PackParameters]] = []
        if parameter.type == pb.PARAMETER_TYPE_INTEGER:
            for value in (parameter.minimum - 1, parameter.maximum + 1):
                wrong = pb.PackParameters()
                wrong.CopyFrom(valid)
                setattr(wrong, parameter.name, value)
                wrongs.append((f"{parameter.name}={value}", wrong))
        elif parameter.type == pb.PARAMETER_TYPE_ENTITY_IDS and pool:
            wrong = pb.PackParameters()
            wrong.CopyFrom(valid)
            ids = getattr(wrong, parameter.name)
            del ids[:]
            ids.extend((list(pool) * (parameter.maximum + 1))[: parameter.maximum + 1])
            wrongs.append((f"{parameter.maximum + 1} {parameter.name}", wrong))
        if parameter.required:
            wrong = pb.PackParameters()
            wrong.CopyFrom(valid)
            wrong.ClearField(parameter.name)  # type: ignore[arg-type]
            wrongs.append((f"no {parameter.name}", wrong))
        for label, parameters in wrongs:
            error = await _refused(analytics.run_pack(pack_id=spec.id, parameters=parameters))
            findings.expect(
                f"RunPack {spec.id} {label} refused", refusal_problem(error, field_name=field_name)
            )
        if parameter.type == pb.PARAMETER_TYPE_INTEGER:  # the cost hint refuses it too
            wrong = pb.PackParameters()
            wrong.CopyFrom(valid)
            setattr(wrong, parameter.name, parameter.maximum + 1)
            error = await _refused(analytics.estimate_pack(pack_id=spec.id, parameters=wrong))
            findings.expect(
                f"EstimatePack {spec.id} {parameter.name}={parameter.maximum + 1} refused",
                refusal_problem(error, field_name=field_name),
            )


async def _hints(
    findings: Findings,
    analytics: AsyncAnalyticsClient,
    spec: pb.PackSpec,
    pool: Sequence[str],
    answers: Sequence[pb.PackResult],
) -> dict[str, Any]:
    """EstimatePack's cost hints for `spec`: consistent with its answers, and the budget held."""
    rng = random.Random(1)  # noqa: S311 - not crypto
    estimate = (
        await analytics.estimate_pack(pack_id=spec.id, parameters=parameters_for(spec, pool, rng))
    ).estimate
    mine = [answer for answer in answers if answer.pack_id == spec.id]
    problem = None
    if estimate.expected_ms <= 0 or estimate.graph_revision <= 0:
        problem = f"prices nothing ({estimate.expected_ms} ms, revision {estimate.graph_revision})"
    elif not estimate.within_budget:
        problem = f"{estimate.expected_ms:.0f} ms is over the {spec.timeout_ms} ms budget"
    elif (estimate.sampling_applies and not spec.sample) or (
        estimate.sampling_applies != bool(estimate.sampler)
    ):  # a pack samples only with the sampler its spec names, and then says which
        problem = (
            f"sampling {estimate.sampling_applies} ({estimate.sampler!r}), spec {spec.sample!r}"
        )
    elif any(answer.estimate.materialized != estimate.materialized for answer in mine):
        problem = "the estimate and the answers disagree on whether it is a lookup"
    findings.expect(f"EstimatePack {spec.id} hints", problem)
    heaviest = parameters_for(spec, pool, rng)
    for parameter in spec.parameters:
        if parameter.type == pb.PARAMETER_TYPE_INTEGER and parameter.name in {"max_hops", "top_k"}:
            setattr(heaviest, parameter.name, parameter.maximum)
    heavy = (await analytics.estimate_pack(pack_id=spec.id, parameters=heaviest)).estimate
    over_budget = "within budget at its heaviest: the refusal was not exercised"
    if not heavy.within_budget:
        error = await _refused(analytics.run_pack(pack_id=spec.id, parameters=heaviest))
        hint = refusal_problem(error, field_name="", code="FAILED_PRECONDITION")
        if (
            hint is None
            and error is not None
            and not {"expected_ms", "budget_ms"} <= set(error.metadata)
        ):
            hint = f"refused without the hint ({error.metadata})"
        findings.expect(f"RunPack {spec.id} over budget refused with the hint", hint)
        over_budget = hint or "refused FAILED_PRECONDITION with expected_ms and budget_ms"
    return {
        "estimate": MessageToDict(estimate),
        "heaviest": MessageToDict(heaviest),
        "heaviest_estimate": MessageToDict(heavy),
        "over_budget": over_budget,
    }


async def _graphql(
    context: Context, tenant: uuid.UUID, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An ad-hoc GraphQL document as an analyst; with `admin.write` where only persisted run.

    No analytics operation is persisted, and in production only persisted ones
    run for callers without `admin.write`: the document is then sent again as an
    operator's.
    """
    _, body, _ = await context.graphql(context.token(tenant, READER), query, variables)
    errors = body.get("errors") or []
    if errors and errors[0].get("extensions", {}).get("code") == "PERSISTED_QUERY_REQUIRED":
        token = context.token(tenant, [*READER, "admin.write"])
        _, body, _ = await context.graphql(token, query, variables)
    return body


RUN_PACK = """
mutation Run($packId: ID!, $parameters: PackParametersInput) {
  runPack(packId: $packId, parameters: $parameters) {
    result {
      packId graphRevision communities modularity
      accuracy { exact epsilon delta l1ErrorBound method }
      sampling { sampled sampler ratio }
      estimate { samplingApplies sampler materialized withinBudget expectedMs }
      freshness { revision computedAt stale latestRevision }
      entities { entityId score }
    }
  }
}
"""
PACKS_AND_ESTIMATE = """
query Hints($packId: ID!) {
  packs { packs { id sample parameters { name minimum maximum required } } }
  estimatePack(packId: $packId) { estimate { materialized withinBudget samplingApplies } }
}
"""


async def _through_graphql(
    findings: Findings, context: Context, graph: Graph, packs: Sequence[pb.PackSpec]
) -> dict[str, Any]:
    """The same promises through GraphQL: specs, a cost hint, an answer, a refusal."""
    ranking = next(iter(_ranking_packs(packs)), packs[0])
    listed = await _graphql(context, graph.tenant, PACKS_AND_ESTIMATE, {"packId": ranking.id})
    data = listed.get("data") or {}
    ids = {spec["id"] for spec in (data.get("packs") or {}).get("packs", [])}
    findings.expect(
        "GraphQL lists the packs ListPacks does",
        None if ids == {spec.id for spec in packs} else f"{sorted(ids)} ({listed.get('errors')})",
    )
    hint = (data.get("estimatePack") or {}).get("estimate") or {}
    findings.expect(
        f"GraphQL estimatePack {ranking.id} is a lookup within budget",
        None if hint.get("materialized") and hint.get("withinBudget") else str(listed)[:200],
    )
    ran = await _graphql(
        context, graph.tenant, RUN_PACK, {"packId": ranking.id, "parameters": {"topK": 5}}
    )
    result = ((ran.get("data") or {}).get("runPack") or {}).get("result")
    problem: str | None
    try:
        parsed = ParseDict(result or {}, pb.PackResult(), ignore_unknown_fields=True)
        problems = result_problems(parsed, spec_sample=ranking.sample) if result else []
        problem = "; ".join(problems) or (None if result else f"no result: {ran.get('errors')}")
    except ParseError as error:
        problem = f"unreadable answer: {error}"
    findings.expect(f"GraphQL runPack {ranking.id} states accuracy and freshness", problem)
    top_k = next((p for p in ranking.parameters if p.name == "top_k"), None)
    refused: dict[str, Any] = {}
    if top_k is not None:
        too_many = top_k.maximum + 1
        refused = await _graphql(
            context,
            graph.tenant,
            RUN_PACK,
            {"packId": ranking.id, "parameters": {"topK": too_many}},
        )
        extensions = ((refused.get("errors") or [{}])[0]).get("extensions", {})
        named = (extensions.get("metadata") or {}).get("field")  # the ErrorInfo's facts
        findings.expect(
            f"GraphQL runPack {ranking.id} topK={too_many} refused",
            None
            if (extensions.get("code"), named) == ("INVALID_ARGUMENT", "parameters.top_k")
            else f"answered {str(refused)[:200]}",
        )
    return {"packs": sorted(ids), "estimate": hint, "run": result, "refusal": refused}


async def check_sampling_and_hints(
    context: Context, graph: Graph, client: AsyncClient, packs: Sequence[pb.PackSpec], load: Load
) -> None:
    """What the contract promises about accuracy, sampling, bounds, pages and cost hints."""
    findings = Findings()
    analytics, pool = client.analytics, graph.entity_ids
    samples = {spec.id: spec.sample for spec in packs}
    for spec in packs:
        findings.expect(f"{spec.id} publishes sane bounds", _spec_problem(spec))
    dishonest = [
        problem
        for answer in load.answers
        for problem in result_problems(answer, spec_sample=samples.get(answer.pack_id, ""))
    ]
    findings.expect(
        f"all {len(load.answers)} answers state accuracy, sampling and freshness",
        "; ".join(sorted(set(dishonest))[:5]) or (None if load.answers else "no answers"),
    )
    hints: dict[str, Any] = {}
    for spec in packs:
        await _bounds(findings, analytics, spec, pool)
        hints[spec.id] = await _hints(findings, analytics, spec, pool, load.answers)
    pages: dict[str, Any] = {}
    rankings = _ranking_packs(packs)
    if rankings:
        spec = rankings[0]
        page = await analytics.run_pack(pack_id=spec.id, page=PageRequest(page_size=10 * PAGE_CAP))
        got, expected = len(page.result.entities), min(PAGE_CAP, graph.status.entities)
        pages = {"pack": spec.id, "asked": 10 * PAGE_CAP, "got": got, "entities": expected}
        findings.expect(
            f"RunPack {spec.id} pages capped at {PAGE_CAP}",
            None if got == expected else f"asked {10 * PAGE_CAP}, got {got}",
        )
    for spec in packs:
        if spec in rankings:
            continue
        parameters = parameters_for(spec, pool, random.Random(2))  # noqa: S311 - not crypto
        error = await _refused(
            analytics.run_pack(
                pack_id=spec.id, parameters=parameters, page=PageRequest(page_size=10)
            )
        )
        findings.expect(
            f"RunPack {spec.id} refuses paging", refusal_problem(error, field_name="page")
        )
    graphql = await _through_graphql(findings, context, graph, packs)
    context.raw(
        "sampling",
        {
            "tenant": str(graph.tenant),
            "graph": graph.origin,
            "specs": [MessageToDict(spec) for spec in packs],
            "accuracy_seen": _accuracy_seen(load.answers),
            "hints": hints,
            "pages": pages,
            "graphql": graphql,
            "checks": findings.checked,
        },
    )
    problems = findings.problems
    total = len(findings.checked)
    context.check(
        "sampling and hints enforced",
        threshold="every promise holds",
        measured=f"{total - len(problems)} of {total} held",
        passed=not problems,
        value=float(len(problems)),
        detail=(
            f"{len(load.answers)} answers state accuracy, sampling and freshness honestly;"
            " out-of-bounds parameters refused INVALID_ARGUMENT naming the field (SDK and"
            f" GraphQL); pages capped at {PAGE_CAP}; cost hints consistent and within budget"
            if not problems
            else "; ".join(problems)[:500]
        ),
    )


def _accuracy_seen(answers: Sequence[pb.PackResult]) -> dict[str, dict[str, Any]]:
    """Per pack, what its answers said of their accuracy, sampling and freshness."""
    seen: dict[str, dict[str, Any]] = {}
    for answer in answers:
        accuracy = answer.accuracy
        pack = seen.setdefault(
            answer.pack_id,
            {"answers": 0, "methods": [], "exact": [], "sampled": 0, "stale": 0},
        )
        pack["answers"] += 1
        for key, value in (("methods", accuracy.method), ("exact", accuracy.exact)):
            if value not in pack[key]:
                pack[key].append(value)
        for key, bound in (
            ("epsilon_max", accuracy.epsilon),
            ("delta_max", accuracy.delta),
            ("l1_error_bound_max", accuracy.l1_error_bound),
        ):
            pack[key] = max(pack.get(key, 0.0), bound)
        pack["sampled"] += answer.sampling.sampled
        pack["stale"] += answer.freshness.stale
        if answer.communities:
            pack["modularity"] = answer.modularity
    return seen


async def run(context: Context) -> None:
    """The Analytics pack's two checks, on one tenant's graph."""
    graph = await graph_tenant(context)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(context.client(graph.tenant, READER))
        packs = list((await client.analytics.list_packs()).packs)
        if not packs:
            raise RuntimeError("ListPacks offers no pack")
        graph.entity_ids, graph.pool = await entity_pool(client.analytics, packs)
        load = await check_latency(context, graph, client, packs)
        await check_sampling_and_hints(context, graph, client, packs, load)
