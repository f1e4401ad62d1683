"""The Edge acceptance pack: mutation coverage, zero cross-tenant leaks, coalescing's saving.

Three criteria of the seed, each checked as a client sees the deployment:

* **mutation→key coverage ≥ 95 %**: `GetMutationGraph` (SDK) says which cached
  reads each mutating RPC invalidates; the share of mutating RPCs that
  invalidate something is recomputed from the edges it lists and must agree
  with the figure it reports (and with the same figure read through GraphQL).
  Raw: `coverage.json`.
* **zero cache leaks (fuzz)**: two fresh tenants, each given data only it has
  (prices, spend caps, access requests, catalog entities: its *marks*), are read
  many times with a seeded random mix of persisted GraphQL operations (the
  cached path) and SDK reads, with varied variables, scopes and subjects that
  both tenants share (so that cache keys differ by tenant only), in concurrent
  rounds between which the tenants' data is changed. No response to one tenant
  may contain a mark of the other, and `ListLeakAlarms` must show no alarm.
  Raw: `leaks.json`.
* **coalescing cuts origin hits ≥ 20 % on target operations**: bursts of
  identical cold reads of the dashboards' hot operations on a fresh tenant.
  Origin calls are what the platform reports (`GetCacheStats.origin_calls`),
  cross-checked with each response's `x-cache`. Raw: `coalescing.json`.

The baseline without coalescing is measured on a deployment the run owns (one
started for it): the same bursts again with the backout switch `edge.coalescing`
off, and the switch put back. On a deployment given by address the lane never
flips a platform-wide switch (it would change every tenant's traffic); there the
baseline is counterfactual — with coalescing off every miss calls the origin
(the cache looks for a call in flight only when coalescing is on), so origin
calls without it are the burst's misses, waiters included — and the raw results
say which it was. The lane reads the switch so that a run with coalescing backed
out says why it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import AsyncClient, ConductorError
from intelgraph.sdk import catalog as catalog_pb
from intelgraph.sdk.money import Money
from intelgraph.sdk.pagination import PageRequest

from servers.acceptance.checks import OPERATIONS_DIR, Context, persisted_operations

LANE = "edge"

#: The seed's thresholds.
COVERAGE_THRESHOLD = 0.95
REDUCTION_THRESHOLD = 0.20
#: The backout switch of coalescing (flipped only on a deployment the run owns).
EDGE_COALESCING = "edge.coalescing"
#: Who flips it.
OPERATOR = "acceptance-operator"
#: Seconds for a switch change to hold on every replica (they poll every 0.5 s).
SWITCH_SETTLE_S = 1.2
#: The fuzz's random seed (recorded in leaks.json): the same run every time.
FUZZ_SEED = 20261221
#: The dashboards' hot reads (bench/edge_burst.py's keys): (operation, variables).
TARGET_OPERATIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("PriceBook", {}),
    ("SpendCap", {}),
    ("AccessRequests", {"pageSize": 20}),
    ("Invoices", {"pageSize": 20}),
)
#: Scope sets the fuzz's readers hold, shared by both tenants (cache keys hash the scopes).
READER_SCOPES: tuple[tuple[str, ...], ...] = (
    ("admin.write", "billing.read", "catalog.read", "edge.read"),
    ("admin.write", "billing.read", "catalog.read"),
    ("admin.write", "analytics.read", "billing.read", "catalog.read"),
)
#: Subjects the fuzz reads as, the same in both tenants (some reads are cached per caller).
SUBJECTS = ("alice", "bob")
#: Prices and caps are drawn from here: far above any price of the default price book.
AMOUNTS = (10_000_000, 99_999_999)
#: The meter whose price each tenant overrides.
METER = "api.call"
CURRENCY = "USD"


def operation_ids() -> dict[str, str]:
    """Each persisted GraphQL operation's id (what a client app sends), by name.

    >>> len(operation_ids()["PriceBook"])
    64
    """
    return {name: operation.id for name, operation in persisted_operations().items()}


# -- judgments (pure: tests give them bad data) -----------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """What GetMutationGraph's edges say, and whether it holds.

    Attributes:
        recomputed: Mutating RPCs with a non-empty invalidation set, over all of them.
        reported: The coverage the platform reported.
        passed: Recomputed at least the threshold, and the report agrees with the edges.
        problems: Why not, one line each.
    """

    recomputed: float
    reported: float
    passed: bool
    problems: tuple[str, ...]


def judge_coverage(
    edges: Mapping[str, Sequence[str]],
    *,
    mutating_rpcs: int,
    covered_rpcs: int,
    reported: float,
    threshold: float = COVERAGE_THRESHOLD,
) -> Coverage:
    """Judge a mutation graph: `edges` maps each mutating RPC to the reads it invalidates.

    >>> judge_coverage({"/a/M": ["/a/R"], "/a/N": []}, mutating_rpcs=2, covered_rpcs=1,
    ...                reported=0.5).passed
    False
    """
    problems: list[str] = []
    covered = sum(1 for reads in edges.values() if reads)
    recomputed = covered / mutating_rpcs if mutating_rpcs else 0.0
    if mutating_rpcs == 0:
        problems.append("the graph names no mutating RPC")
    if len(edges) != mutating_rpcs:
        problems.append(f"{len(edges)} mutations listed for {mutating_rpcs} mutating RPCs")
    if covered != covered_rpcs:
        problems.append(f"{covered} mutations invalidate something, {covered_rpcs} reported")
    if abs(recomputed - reported) > 1e-9:
        problems.append(f"reported coverage {reported:.4f}, the edges give {recomputed:.4f}")
    if recomputed < threshold:
        uncovered = sorted(method for method, reads in edges.items() if not reads)
        problems.append(f"below {threshold:.0%}; invalidating nothing: {', '.join(uncovered)}")
    return Coverage(recomputed, reported, not problems, tuple(problems))


@dataclass
class Marks:
    """Data only one tenant has: strings (ids, names) and amounts (minor units)."""

    strings: set[str] = field(default_factory=set)
    amounts: set[int] = field(default_factory=set)


def _amounts_in(payload: Any) -> Iterable[int]:
    """Every `minorUnits` value in a decoded response (GraphQL or an SDK message as JSON)."""
    if isinstance(payload, Mapping):
        for key, value in payload.items():
            if key in {"minorUnits", "minor_units"} and isinstance(value, int | str):
                with contextlib.suppress(ValueError):
                    yield int(value)
            else:
                yield from _amounts_in(value)
    elif isinstance(payload, list):
        for item in payload:
            yield from _amounts_in(item)


def leaked_marks(payload: Any, others: Marks) -> list[str]:
    """The marks of other tenants found in a response given to one tenant (none: no leak).

    >>> leaked_marks({"data": {"caller": {"tenantId": "t-2"}}}, Marks({"t-2"}))
    ['t-2']
    >>> leaked_marks({"prices": [{"unitPrice": {"minorUnits": "12"}}]}, Marks(amounts={12}))
    ['amount 12']
    >>> leaked_marks({"data": {"priceBook": {"prices": []}}}, Marks({"t-2"}, {12}))
    []
    """
    text = json.dumps(payload, sort_keys=True)
    found = sorted(mark for mark in others.strings if mark in text)
    found += [f"amount {amount}" for amount in sorted(set(_amounts_in(payload)) & others.amounts)]
    return found


def origin_reduction(with_coalescing: int, without_coalescing: int) -> float:
    """The share of origin calls coalescing saved (0 when there were none to save).

    >>> origin_reduction(4, 40)
    0.9
    >>> origin_reduction(0, 0)
    0.0
    """
    if without_coalescing <= 0:
        return 0.0
    return 1 - with_coalescing / without_coalescing


def judge_reduction(
    with_coalescing: int, without_coalescing: int, threshold: float = REDUCTION_THRESHOLD
) -> bool:
    """Whether coalescing cut origin calls by at least `threshold` (on a real burst).

    >>> judge_reduction(4, 40), judge_reduction(9, 10), judge_reduction(0, 0)
    (True, False, False)
    """
    return (
        without_coalescing > 0
        and with_coalescing <= without_coalescing
        and origin_reduction(with_coalescing, without_coalescing) >= threshold
    )


# -- helpers ---------------------------------------------------------------------------------


async def _graphql_read(
    context: Context, tenant: uuid.UUID, scopes: Sequence[str], query: str
) -> dict[str, Any]:
    """An ad-hoc GraphQL read; with `admin.write` added where only persisted ones may run.

    In production only persisted operations run, except for callers holding
    `admin.write` (an operator's ad-hoc query): the read is sent again as one.
    """
    _, body, _ = await context.graphql(context.token(tenant, scopes), query)
    if _error_code(body) == "PERSISTED_QUERY_REQUIRED":
        _, body, _ = await context.graphql(context.token(tenant, [*scopes, "admin.write"]), query)
    return body


def _error_code(body: Mapping[str, Any]) -> str:
    errors = body.get("errors") or []
    return str(errors[0].get("extensions", {}).get("code", "")) if errors else ""


def _until(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return stamp


def _as_json(message: Message) -> dict[str, Any]:
    return MessageToDict(message)


@contextlib.asynccontextmanager
async def _http(context: Context, connections: int) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=context.http_url, timeout=30.0, limits=limits) as http:
        yield http


@dataclass(frozen=True)
class HttpAnswer:
    """One persisted operation's answer: HTTP status (0: no answer), body, x-cache, retried."""

    status: int
    body: dict[str, Any]
    cache: str
    retried: bool = False

    @property
    def ok(self) -> bool:
        """Answered 200 without GraphQL errors."""
        return self.status == 200 and not self.body.get("errors")


async def _persisted(
    http: httpx.AsyncClient, token: str, operation_id: str, variables: Mapping[str, Any]
) -> HttpAnswer:
    """POST a persisted operation, once more if the connection broke under it.

    A kept-alive connection the server closes (idle past its keep-alive) just as
    a request goes out on it is reset; a persisted query is a read, so a client
    sends it again, as this one does once.
    """
    request = {"id": operation_id, "variables": dict(variables)}
    headers = {"authorization": f"Bearer {token}"}
    retried = False
    try:
        response = await http.post("/graphql", json=request, headers=headers)
    except httpx.TransportError:
        retried = True
        try:
            response = await http.post("/graphql", json=request, headers=headers)
        except httpx.TransportError as error:
            failed = {"errors": [{"message": f"{type(error).__name__}: {error}"}]}
            return HttpAnswer(0, failed, "none", retried=True)
    try:
        body = response.json()
    except ValueError:
        body = {"errors": [{"message": response.text[:200]}]}
    return HttpAnswer(response.status_code, body, response.headers.get("x-cache", "none"), retried)


# -- mutation coverage -----------------------------------------------------------------------


async def check_coverage(context: Context) -> None:
    """Coverage from GetMutationGraph, recomputed from its edges, and read through GraphQL."""
    tenant = context.tenant()
    async with context.client(tenant, ["edge.read"]) as client:
        graph = await client.edge.get_mutation_graph()
    edges = {edge.method: list(edge.invalidated_reads) for edge in graph.mutations}
    judged = judge_coverage(
        edges,
        mutating_rpcs=graph.mutating_rpcs,
        covered_rpcs=graph.covered_rpcs,
        reported=graph.coverage,
    )
    problems = list(judged.problems)
    body = await _graphql_read(
        context, tenant, ["edge.read"], "{ mutationGraph { coverage mutatingRpcs coveredRpcs } }"
    )
    through_graphql = (body.get("data") or {}).get("mutationGraph") or {}
    if through_graphql.get("coverage") != graph.coverage:
        problems.append(f"GraphQL reports {through_graphql or body.get('errors')}")
    context.raw(
        "coverage",
        {
            "coverage": graph.coverage,
            "recomputed": judged.recomputed,
            "mutating_rpcs": graph.mutating_rpcs,
            "covered_rpcs": graph.covered_rpcs,
            "graphql": through_graphql,
            "mutations": [
                {
                    "method": edge.method,
                    "resource_types": list(edge.resource_types),
                    "invalidated_reads": list(edge.invalidated_reads),
                }
                for edge in graph.mutations
            ],
            "problems": problems,
        },
    )
    context.check(
        "mutation→key coverage",
        threshold=f"≥ {COVERAGE_THRESHOLD:.0%}",
        measured=f"{judged.recomputed:.1%}",
        passed=not problems,
        value=round(judged.recomputed * 100, 2),
        detail=(
            f"{graph.covered_rpcs} of {graph.mutating_rpcs} mutating RPCs invalidate cached"
            " reads (GetMutationGraph, recomputed from its edges; GraphQL agrees)"
            if not problems
            else "; ".join(problems)
        ),
    )


# -- the leak fuzz ---------------------------------------------------------------------------


@dataclass
class FuzzTenant:
    """One tenant of the fuzz: its id, its marks and its current price and cap."""

    id: uuid.UUID
    label: str
    marks: Marks
    price: int = 0
    cap: int = 0
    made: int = 0
    tokens: dict[tuple[int, str], str] = field(default_factory=dict)


class Fuzz:
    """Two tenants' data, changed and read at random; every response searched for the other's."""

    def __init__(
        self,
        context: Context,
        rng: random.Random,
        operations: Mapping[str, str],
        stack: contextlib.AsyncExitStack,
    ) -> None:
        self.context = context
        self.stack = stack
        self._clients: dict[tuple[uuid.UUID, tuple[str, ...], str], AsyncClient] = {}
        self.rng = rng
        self.operations = operations
        self.tenants = [
            FuzzTenant(tenant, f"tenant-{index}", Marks({str(tenant)}))
            for index, tenant in enumerate((context.tenant(), context.tenant()))
        ]
        self.used_amounts: set[int] = set()
        self.reads: list[dict[str, Any]] = []
        self.leaks: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.stale: list[dict[str, Any]] = []
        self.mutations: list[dict[str, Any]] = []

    def _amount(self) -> int:
        while True:
            amount = self.rng.randint(*AMOUNTS)
            if amount not in self.used_amounts:
                self.used_amounts.add(amount)
                return amount

    def others(self, tenant: FuzzTenant) -> Marks:
        """Every mark of the tenants other than `tenant`."""
        marks = Marks()
        for other in self.tenants:
            if other is not tenant:
                marks.strings |= other.marks.strings
                marks.amounts |= other.marks.amounts
        return marks

    async def client(
        self, tenant: FuzzTenant, scopes: Sequence[str], subject: str = "acceptance"
    ) -> AsyncClient:
        """An SDK client of `tenant` as `subject` with `scopes` (one each, closed with the fuzz)."""
        key = (tenant.id, tuple(scopes), subject)
        if key not in self._clients:
            self._clients[key] = await self.stack.enter_async_context(
                self.context.client(tenant.id, scopes, subject=subject)
            )
        return self._clients[key]

    # mutations, each over the SDK with the scope it needs, and what it marks

    async def mutate(self, tenant: FuzzTenant, kind: str) -> None:
        """Change `tenant`'s data one way (`kind`), adding what only it now has to its marks."""
        hexa = tenant.id.hex[:8]
        tenant.made += 1
        if kind == "price":
            operator = await self.client(tenant, ["platform.admin"])
            tenant.price = self._amount()
            await operator.billing.set_price(
                tenant_id=str(tenant.id),
                meter=METER,
                unit_price=Money(minor_units=tenant.price, currency_code=CURRENCY),
            )
            tenant.marks.amounts.add(tenant.price)
        elif kind == "cap":
            admin = await self.client(tenant, ["admin.write"])
            tenant.cap = self._amount()
            await admin.billing.set_spend_cap(
                cap=Money(minor_units=tenant.cap, currency_code=CURRENCY)
            )
            tenant.marks.amounts.add(tenant.cap)
        elif kind == "access_request":
            requester = f"fuzz-{hexa}-requester"
            asker = await self.client(tenant, [], requester)
            asked = await asker.access.request_access(
                scope=["catalog.read"], expires_at=_until(3600), reason="edge acceptance fuzz"
            )
            tenant.marks.strings |= {requester, asked.access_request.id}
        else:
            writer = await self.client(tenant, ["catalog.write"])
            name = f"svc-{hexa}-{tenant.made}"
            await writer.catalog.create_entity(
                entity=catalog_pb.Entity(
                    kind=catalog_pb.ENTITY_KIND_COMPONENT, name=name, owner=f"team-{hexa}"
                )
            )
            tenant.marks.strings |= {name, f"team-{hexa}"}
        self.mutations.append({"tenant": tenant.label, "kind": kind})

    # reads

    def graphql_read(self) -> tuple[str, dict[str, Any]]:
        """A persisted operation and variables, drawn from values both tenants are read with."""
        owners = [f"team-{tenant.id.hex[:8]}" for tenant in self.tenants]
        name = self.rng.choice(
            ["PriceBook", "SpendCap", "AccessRequests", "Invoices", "CatalogEntities", "Caller"]
        )
        size = self.rng.choice([1, 5, 10, 20, 50])
        variables: dict[str, Any] = {}
        if name == "AccessRequests":
            variables = {"pageSize": size}
            if self.rng.random() < 0.3:
                variables["status"] = "PENDING"
        elif name == "Invoices":
            variables = {"pageSize": size}
        elif name == "CatalogEntities":
            variables = {"pageSize": size}
            if self.rng.random() < 0.4:
                variables["owner"] = self.rng.choice(owners)
            elif self.rng.random() < 0.3:
                variables["search"] = "svc"
        return name, variables

    def judge(
        self, tenant: FuzzTenant, read: dict[str, Any], payload: Any, *, ok: bool, detail: str = ""
    ) -> None:
        """Record one answered read: its leaks, whether it failed, and stale own data."""
        self.reads.append(read)
        leaks = leaked_marks(payload, self.others(tenant))
        if leaks:
            self.leaks.append({**read, "marks": leaks})
        if not ok:
            self.errors.append({**read, "error": detail[:300]})
            return
        amounts = set(_amounts_in(payload))
        if read["operation"] in {"PriceBook", "GetPriceBook"} and tenant.price not in amounts:
            self.stale.append({**read, "expected": tenant.price})
        if read["operation"] in {"SpendCap", "GetSpendCap"} and tenant.cap not in amounts:
            self.stale.append({**read, "expected": tenant.cap})

    async def read_graphql(self, http: httpx.AsyncClient, tenant: FuzzTenant) -> None:
        """One persisted GraphQL read of `tenant`, as a random reader."""
        name, variables = self.graphql_read()
        scopes = self.rng.randrange(len(READER_SCOPES))
        subject = self.rng.choice(SUBJECTS)
        token = tenant.tokens.get((scopes, subject))
        if token is None:
            token = self.context.token(tenant.id, READER_SCOPES[scopes], subject=subject)
            tenant.tokens[scopes, subject] = token
        read = {
            "tenant": tenant.label,
            "via": "graphql",
            "operation": name,
            "variables": variables,
            "scopes": scopes,
            "subject": subject,
        }
        answer = await _persisted(http, token, self.operations[name], variables)
        read["x_cache"] = answer.cache
        if answer.retried:
            read["retried"] = True
        detail = json.dumps(answer.body.get("errors"))[:300]
        self.judge(tenant, read, answer.body, ok=answer.ok, detail=detail)

    async def read_sdk(self, client: AsyncClient, tenant: FuzzTenant) -> None:
        """One SDK read of `tenant` (gRPC, never cached: the origin the cache must agree with)."""
        name = self.rng.choice(
            [
                "GetPriceBook",
                "GetSpendCap",
                "ListAccessRequests",
                "ListEntities",
                "GetCaller",
                "GetCacheStats",
            ]
        )
        size = self.rng.choice([1, 5, 20, 50])
        read = {"tenant": tenant.label, "via": "sdk", "operation": name}
        answer: Message
        try:
            if name == "GetPriceBook":
                answer = await client.billing.get_price_book()
            elif name == "GetSpendCap":
                answer = await client.billing.get_spend_cap()
            elif name == "ListAccessRequests":
                answer = await client.access.list_access_requests(page=PageRequest(page_size=size))
            elif name == "ListEntities":
                answer = await client.catalog.list_entities(page=PageRequest(page_size=size))
            elif name == "GetCaller":
                answer = await client.access.get_caller()
            else:
                answer = await client.edge.get_cache_stats()
        except ConductorError as error:
            self.judge(tenant, read, {}, ok=False, detail=str(error))
            return
        self.judge(tenant, read, _as_json(answer), ok=True)


async def check_leaks(context: Context, operations: Mapping[str, str]) -> None:
    """The fuzz: rounds of concurrent reads of two tenants, their data changed between rounds."""
    rng = random.Random(FUZZ_SEED)  # noqa: S311 - a reproducible fuzz, not crypto
    rounds, per_round = (12, 20) if context.quick else (60, 25)
    started = datetime.now(UTC)
    began = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        fuzz = Fuzz(context, rng, operations, stack)
        for tenant in fuzz.tenants:  # each tenant's own data before any read
            for kind in ("price", "cap", "access_request", "catalog_entity"):
                await fuzz.mutate(tenant, kind)
        readers = [
            await fuzz.client(tenant, READER_SCOPES[0], SUBJECTS[0]) for tenant in fuzz.tenants
        ]
        http = await stack.enter_async_context(_http(context, per_round))
        for _ in range(rounds):
            reads = []
            for _ in range(per_round):
                index = rng.randrange(len(fuzz.tenants))
                tenant = fuzz.tenants[index]
                if rng.random() < 0.2:
                    reads.append(fuzz.read_sdk(readers[index], tenant))
                else:
                    reads.append(fuzz.read_graphql(http, tenant))
            await asyncio.gather(*reads)
            if rng.random() < 0.6:  # then the next round reads what changed
                kind = rng.choice(["price", "cap", "access_request", "catalog_entity"])
                await fuzz.mutate(rng.choice(fuzz.tenants), kind)
        await asyncio.sleep(0.5)  # alarms are recorded in the background
        since = Timestamp()
        since.FromDatetime(started)
        alarms: dict[str, list[dict[str, Any]]] = {}
        counted: dict[str, int] = {}
        for tenant, reader in zip(fuzz.tenants, readers, strict=True):
            listed = await reader.edge.list_leak_alarms(since=since)
            alarms[tenant.label] = [_as_json(alarm) for alarm in listed.alarms]
            counted[tenant.label] = (await reader.edge.get_cache_stats()).stats.leak_alarms
    seconds = time.perf_counter() - began
    alarm_count = sum(len(found) for found in alarms.values()) + sum(counted.values())
    served = Counter(read.get("x_cache", "sdk") for read in fuzz.reads)
    total = len(fuzz.reads)
    context.raw(
        "leaks",
        {
            "seed": FUZZ_SEED,
            "rounds": rounds,
            "reads_per_round": per_round,
            "seconds": round(seconds, 2),
            "tenants": {tenant.label: str(tenant.id) for tenant in fuzz.tenants},
            "reads": total,
            "served": dict(served),
            "by_operation": dict(Counter(read["operation"] for read in fuzz.reads)),
            "mutations": fuzz.mutations,
            "leaks": fuzz.leaks,
            "errors": fuzz.errors,
            "stale_own_reads": fuzz.stale,
            "retried_after_a_broken_connection": sum(1 for r in fuzz.reads if r.get("retried")),
            "leak_alarms": alarms,
            "leak_alarms_counted": counted,
            "log": fuzz.reads,
        },
    )
    problems = []
    if fuzz.leaks:
        first = fuzz.leaks[0]
        problems.append(
            f"{len(fuzz.leaks)} responses held another tenant's data, e.g. {first['operation']}"
            f" to {first['tenant']}: {', '.join(first['marks'][:3])}"
        )
    if alarm_count:
        problems.append(f"{alarm_count} leak alarms raised during the fuzz")
    if fuzz.errors:
        problems.append(f"{len(fuzz.errors)} reads failed, e.g. {fuzz.errors[0]['error'][:160]}")
    hits = served["hit"] + served["stale"]
    context.check(
        "zero cache leaks (fuzz)",
        threshold="0 leaks, no new leak alarm",
        measured=f"{len(fuzz.leaks)} leaks in {total} reads",
        passed=not problems,
        value=float(len(fuzz.leaks)),
        detail=(
            f"seed {FUZZ_SEED}: {total} reads of 2 fresh tenants ({hits} from the cache) with"
            f" {len(fuzz.mutations)} mutations between rounds; no alarm;"
            f" {len(fuzz.stale)} reads of stale own data"
            if not problems
            else "; ".join(problems)
        ),
    )


# -- coalescing ------------------------------------------------------------------------------


@dataclass
class Burst:
    """Origin calls of bursts of identical cold reads, with the platform's coalescing.

    Attributes:
        requests: Reads sent.
        origin_with: Origin calls the platform made (GetCacheStats.origin_calls).
        origin_without: Origin calls without coalescing had it been off: every miss,
            waiters included (the counterfactual baseline).
        served: Responses by x-cache.
        operations: Per target operation, the same figures from the responses.
        stats_agree: Whether GetCacheStats saw exactly the misses the responses said
            (not so when the stats come from another replica than the reads, or when a
            read was sent again after its connection broke).
        retried: Reads sent again after their connection broke.
        errors: The first few failed reads' status and errors.
    """

    requests: int = 0
    origin_with: int = 0
    origin_without: int = 0
    served: Counter[str] = field(default_factory=Counter)
    operations: list[dict[str, Any]] = field(default_factory=list)
    stats_agree: bool = True
    retried: int = 0
    errors: list[str] = field(default_factory=list)


async def origin_burst(
    context: Context,
    operations: Mapping[str, str],
    *,
    copies: int,
    rounds: int,
    tenant: uuid.UUID | None = None,
) -> Burst:
    """`rounds` bursts of `copies` identical cold reads of each target operation at once.

    Each round starts cold (the tenant's entries purged); GetCacheStats is read
    before and after it.
    """
    tenant = tenant or context.tenant()
    token = context.token(tenant, ["admin.write", "billing.read"], subject="dashboard")
    burst = Burst()
    per_operation: dict[str, Counter[str]] = {name: Counter() for name, _ in TARGET_OPERATIONS}
    async with context.client(tenant, ["admin.write", "edge.read"]) as admin:
        for _ in range(rounds):
            await admin.edge.purge(all=True)
            before = (await admin.edge.get_cache_stats()).stats
            # A connection per read, new each round: none waits idle for its next use.
            async with _http(context, copies * len(TARGET_OPERATIONS)) as http:
                sent = [
                    (name, _persisted(http, token, operations[name], variables))
                    for name, variables in TARGET_OPERATIONS
                    for _ in range(copies)
                ]
                answers = await asyncio.gather(*(call for _, call in sent))
            after = (await admin.edge.get_cache_stats()).stats
            kinds: Counter[str] = Counter()
            for (name, _), answer in zip(sent, answers, strict=True):
                kind = answer.cache if answer.ok else "error"
                kinds[kind] += 1
                per_operation[name][kind] += 1
                burst.retried += answer.retried
                if not answer.ok and len(burst.errors) < 5:
                    burst.errors.append(
                        f"{name}: {answer.status} {answer.body.get('errors')}"[:300]
                    )
            misses = after.misses - before.misses
            origin_calls = after.origin_calls - before.origin_calls
            seen_misses = kinds["miss"] + kinds["coalesced"] + kinds["shared"]
            burst.requests += len(sent)
            burst.served += kinds
            if misses == seen_misses:
                burst.origin_with += origin_calls
                burst.origin_without += misses
            else:  # the stats are another replica's: count what the responses said
                burst.stats_agree = False
                burst.origin_with += kinds["miss"]
                burst.origin_without += seen_misses
    for name, variables in TARGET_OPERATIONS:
        kinds = per_operation[name]
        burst.operations.append(
            {
                "name": name,
                "variables": variables,
                "requests": sum(kinds.values()),
                "origin_hits_with": kinds["miss"],
                "origin_hits_without": kinds["miss"] + kinds["coalesced"] + kinds["shared"],
                "served": dict(kinds),
            }
        )
    return burst


async def _coalescing_switch(context: Context) -> str:
    """The switch `edge.coalescing`'s value, read (never set); "unknown" if it cannot be read."""
    try:
        async with context.client(context.tenant(), ["platform.admin"]) as operator:
            listed = await operator.access.list_switches()
    except ConductorError:
        return "unknown"
    return next((s.value for s in listed.switches if s.name == EDGE_COALESCING), "unknown")


@contextlib.asynccontextmanager
async def _coalescing_off(context: Context) -> AsyncIterator[None]:
    """The switch `edge.coalescing` off meanwhile, then back as it was (owned deployments)."""
    async with context.client(context.tenant(), ["platform.admin"], subject=OPERATOR) as operator:
        listed = await operator.access.list_switches()
        was = next(s.value for s in listed.switches if s.name == EDGE_COALESCING)
        await operator.access.set_switch(
            name=EDGE_COALESCING, value="off", reason="acceptance: baseline without coalescing"
        )
        try:
            await asyncio.sleep(SWITCH_SETTLE_S)  # every replica follows within a second
            yield
        finally:
            await operator.access.set_switch(
                name=EDGE_COALESCING, value=was, reason="acceptance: baseline measured"
            )
            await asyncio.sleep(SWITCH_SETTLE_S)


async def check_coalescing(context: Context, operations: Mapping[str, str]) -> None:
    """Bursts of identical cold reads: origin calls with coalescing against without."""
    copies, rounds = (20, 3) if context.quick else (50, 6)
    burst = await origin_burst(context, operations, copies=copies, rounds=rounds)
    switch = await _coalescing_switch(context)
    without, baseline = burst.origin_without, "counterfactual"
    measured_without: Burst | None = None
    if context.owned and switch == "on":
        async with _coalescing_off(context):
            measured_without = await origin_burst(context, operations, copies=copies, rounds=rounds)
        without, baseline = measured_without.origin_with, "measured"
    reduction = origin_reduction(burst.origin_with, without)
    failed_reads = burst.served["error"] + (
        measured_without.served["error"] if measured_without else 0
    )
    passed = judge_reduction(burst.origin_with, without) and not failed_reads
    context.raw(
        "coalescing",
        {
            "requests": burst.requests,
            "origin_hits_with": burst.origin_with,
            "origin_hits_without": without,
            "reduction": round(reduction, 4),
            "baseline": baseline,
            "baseline_how": (
                "the same bursts with the backout switch edge.coalescing off on this run's own"
                " deployment (put back afterwards); origin calls from GetCacheStats"
                if measured_without
                else "counterfactual: without coalescing every miss calls the origin, so origin"
                " hits without = the burst's misses (GetCacheStats), waiters included; the"
                " deployment is not the run's own, so no switch was flipped"
            ),
            "origin_hits_without_counterfactual": burst.origin_without,
            "origin_hits_source": (
                "GetCacheStats" if burst.stats_agree else "x-cache (stats disagreed)"
            ),
            "copies_per_burst": copies,
            "rounds": rounds,
            "served": dict(burst.served),
            "served_without": dict(measured_without.served) if measured_without else None,
            "retried_after_a_broken_connection": burst.retried,
            "errors": burst.errors + (measured_without.errors if measured_without else []),
            "switch_edge_coalescing": switch,
            "operations": burst.operations,
            "operations_without": measured_without.operations if measured_without else None,
        },
    )
    detail = (
        f"{rounds} cold bursts of {copies} identical reads of"
        f" {', '.join(name for name, _ in TARGET_OPERATIONS)}: {burst.origin_with} origin calls"
        f" for {burst.requests} requests; {without} without coalescing ("
        + (
            "measured with the switch edge.coalescing off, then put back)"
            if measured_without
            else "counterfactual: every miss calls the origin)"
        )
    )
    if failed_reads:
        errors = burst.errors + (measured_without.errors if measured_without else [])
        detail += f"; {failed_reads} reads failed, e.g. {errors[0] if errors else '?'}"
    if not passed and switch != "on":
        detail += f"; switch edge.coalescing is {switch}"
    context.check(
        "coalescing cuts origin hits",
        threshold=f"≥ {REDUCTION_THRESHOLD:.0%} fewer origin hits on target ops",
        measured=f"{reduction:.0%} fewer ({burst.origin_with} vs {without}, {baseline})",
        passed=passed,
        value=round(reduction * 100, 2),
        detail=detail,
    )


async def run(context: Context) -> None:
    """The Edge pack's three checks."""
    operations = operation_ids()
    missing = [
        name
        for name in ("PriceBook", "SpendCap", "AccessRequests", "Invoices", "CatalogEntities")
        if name not in operations
    ]
    if missing:
        raise FileNotFoundError(f"persisted operations not found in {OPERATIONS_DIR}: {missing}")
    await check_coverage(context)
    await check_leaks(context, operations)
    await check_coalescing(context, operations)
