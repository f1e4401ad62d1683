"""The seed's load mix, all lanes at once, against replicas of the platform.

Lanes (rates per second; `Rates` scales them):

* graphql: persisted GraphQL reads over HTTP, in bursts every 100 ms, keys
  drawn with a Zipf skew over tenants x operations x page sizes (hot keys), the
  replicas taken in turn (a replica that does not answer is skipped: reads are
  safe to send elsewhere); and a mutation stream over gRPC (access requests,
  price changes) that makes cached reads stale;
* analytics: packs on each tenant's graph (materialized rankings, shortest
  paths, neighbourhoods, personalised PageRank);
* billing: metered usage events (each with its own event id, repeated until
  acknowledged), invoices finalized now and then, credit notes on them;
* access: request, approve, claim, call with the JIT token, revoke, and the
  revoked token refused on every replica (an intended refusal);
* rag: resumable uploads of generated documents, then a summary of each;
* catalog: what-if runs over an imported catalog.

Every call is recorded (operation, latency, outcome). What the lanes were told
succeeded is kept (`Ledger`), so that afterwards `check` can prove nothing was
lost or counted twice: usage per tenant equals what was acknowledged, the
reconciliation finds no drift, the audit chain verifies, every upload finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    ConductorError,
    bearer_token,
    upload_document_async,
)
from intelgraph.sdk import analytics as analytics_pb
from intelgraph.sdk import billing as billing_pb
from intelgraph.sdk import catalog as catalog_pb
from intelgraph.sdk.money import Money

from servers.facade import DEFAULT_OPERATIONS_DIR
from servers.facade.operations import operation_id
from tests.support.cluster import OPERATOR_SCOPES, Cluster

T = TypeVar("T")

OPERATIONS = {
    path.stem: operation_id(path.read_text())
    for path in Path(DEFAULT_OPERATIONS_DIR).glob("*.graphql")
}
#: Reads dashboards make: (operation, variables) per tenant; page sizes as real clients vary them.
READS = [
    *(("AccessRequests", {"pageSize": size}) for size in (20, 50, 10)),
    *(("Invoices", {"pageSize": size}) for size in (20, 10)),
    ("PriceBook", {}),
    ("SpendCap", {}),
    ("CatalogEntities", {"pageSize": 20}),
]
BURST_S = 0.1
#: Failures after which a request that is safe to repeat is sent again.
TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
)
#: The meter the billing lane records (nothing else on the platform meters it).
METER = "api.call"
CURRENCY = "GBP"
PACKS = (
    "analytics.pagerankTop:v1",
    "analytics.degreeTop:v1",
    "analytics.communities:v1",
    "analytics.shortestPath:v1",
    "analytics.neighborhood:v1",
    "analytics.personalizedPagerank:v1",
)


@dataclass(frozen=True)
class Rates:
    """Calls per second of each lane (the seed's mix; `scaled` multiplies them)."""

    graphql_reads: float = 300
    mutations: float = 4
    analytics: float = 10
    #: 300 transactions a day, run 1,440 times faster (a day in a minute): 5 a second.
    billing_usage: float = 5
    invoices: float = 0.2
    access_flows: float = 1
    rag_uploads: float = 0.5
    what_ifs: float = 2

    def scaled(self, factor: float) -> Rates:
        """Every rate times `factor`."""
        return Rates(**{name: value * factor for name, value in self.__dict__.items()})


@dataclass
class Sample:
    """One call: what, when (seconds since the run began), how long, how it ended."""

    operation: str
    at: float
    seconds: float
    outcome: str  # "ok", "refused:<CODE>" (intended), "retried:<CODE>", "error:<CODE>"
    replica: str = ""
    detail: str = ""  # what a failure said


@dataclass
class Ledger:
    """What the platform acknowledged, per tenant: the proof of nothing lost or doubled."""

    usage: Counter[str] = field(default_factory=Counter)
    usage_events: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    unacknowledged: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    uploads: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    uploads_failed: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    finalized: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    credit_notes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    revoked_tokens: list[tuple[str, str]] = field(default_factory=list)


class Recorder:
    """Every call's sample, and the run's clock."""

    def __init__(self) -> None:
        self.begin = time.perf_counter()
        self.samples: list[Sample] = []
        self.lagging = 0  # ticks a lane could not start on time (the generator fell behind)

    def now(self) -> float:
        """Seconds since the run began."""
        return time.perf_counter() - self.begin

    async def call(
        self,
        operation: str,
        awaitable: Awaitable[T],
        *,
        intended: tuple[grpc.StatusCode, ...] = (),
    ) -> T | None:
        """Await `awaitable`, recording it; None when it failed (recorded with its code)."""
        started = self.now()
        try:
            result = await awaitable
        except ConductorError as error:
            kind = "refused" if error.code in intended else "error"
            outcome = f"{kind}:{error.code.name}"
            self.samples.append(
                Sample(operation, started, self.now() - started, outcome, detail=error.details)
            )
            return None
        self.samples.append(Sample(operation, started, self.now() - started, "ok"))
        return result

    async def acknowledged(
        self, operation: str, make: Callable[[], Awaitable[T]], attempts: int = 40
    ) -> T | None:
        """`make()` repeated while it fails transiently, as a client of a keyed write does.

        The request must be safe to repeat (an event id or idempotency key):
        each transient failure is recorded as "retried:<CODE>" and the call is
        made again after a backoff; None once it is refused or `attempts` ran out.
        """
        for attempt in range(attempts):
            started = self.now()
            try:
                result = await make()
            except ConductorError as error:
                last = attempt + 1 == attempts or error.code not in TRANSIENT
                kind = "error" if last else "retried"
                self.record(operation, started, f"{kind}:{error.code.name}", detail=error.details)
                if last:
                    return None
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                continue
            self.record(operation, started, "ok")
            return result
        return None

    def record(
        self, operation: str, started: float, outcome: str, replica: str = "", detail: str = ""
    ) -> None:
        """Record a call timed by its caller."""
        self.samples.append(
            Sample(operation, started, self.now() - started, outcome, replica, detail)
        )


def percentile(ordered: list[float], share: float) -> float:
    """The `share` quantile of sorted samples (0 when there are none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def summary(samples: list[Sample]) -> dict[str, dict[str, Any]]:
    """Per operation: calls, p50/p95/p99 (ms, successful calls), unintended errors, refusals."""
    by: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by[sample.operation].append(sample)
    table = {}
    for operation, taken in sorted(by.items()):
        ok = sorted(s.seconds * 1000 for s in taken if s.outcome == "ok")
        errors = Counter(s.outcome for s in taken if s.outcome.startswith("error:"))
        table[operation] = {
            "calls": len(taken),
            "p50_ms": round(percentile(ok, 0.50), 1),
            "p95_ms": round(percentile(ok, 0.95), 1),
            "p99_ms": round(percentile(ok, 0.99), 1),
            "errors": sum(errors.values()),
            "error_codes": dict(errors),
            "retried": sum(1 for s in taken if s.outcome.startswith("retried:")),
            "refused": sum(1 for s in taken if s.outcome.startswith("refused:")),
        }
    return table


class Graphql:
    """Persisted GraphQL over lean keep-alive HTTP/1.1, the replicas taken in turn.

    A replica that refuses or drops the connection is skipped for that request
    (reads are safe to send to another), as a load balancer's health check would.
    """

    def __init__(self, addresses: list[str], per_replica: int = 24) -> None:
        self.addresses = addresses
        self._idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {
            address: [] for address in addresses
        }
        self._next = 0
        self._per_replica = per_replica
        self.failovers = 0
        self.cache: Counter[str] = Counter()

    async def _send(self, address: str, token: str, body: bytes) -> tuple[int, str, bytes]:
        idle = self._idle[address]
        while idle:
            # A kept connection the server has since closed (idle timeout) fails at once:
            # drop it and go on, as any HTTP client does.
            reader, writer = idle.pop()
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                return await self._exchange(address, reader, writer, token, body)
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return await self._exchange(address, reader, writer, token, body)

    async def _exchange(
        self,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        token: str,
        body: bytes,
    ) -> tuple[int, str, bytes]:
        idle = self._idle[address]
        try:
            writer.write(
                (
                    f"POST /graphql HTTP/1.1\r\nhost: {address}\r\n"
                    f"content-type: application/json\r\nauthorization: Bearer {token}\r\n"
                    f"content-length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            payload = await reader.readexactly(int(length[1]) if length else 0)
        except BaseException:
            writer.close()
            raise
        if len(idle) < self._per_replica and b"connection: close" not in head.lower():
            idle.append((reader, writer))
        else:
            writer.close()
        status = int(head.split(b" ", 2)[1])
        cache = re.search(rb"x-cache: (\w+)", head, re.IGNORECASE)
        return status, (cache[1].decode() if cache else "none"), payload

    async def post(self, token: str, body: bytes) -> tuple[int, str, bytes, str]:
        """(HTTP status, x-cache, body, replica address) of one request."""
        last: Exception | None = None
        first = self._next
        self._next += 1
        for turn in range(len(self.addresses)):  # each replica once, from the next in turn
            address = self.addresses[(first + turn) % len(self.addresses)]
            try:
                status, cache, payload = await self._send(address, token, body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                last = error
                self.failovers += 1
                continue
            self.cache[cache] += 1
            return status, cache, payload, address
        raise ConnectionError(f"no replica answered: {last}")

    def close(self) -> None:
        """Close every kept connection."""
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
            idle.clear()


def zipf(size: int, rng: random.Random, skew: float = 1.2) -> Iterator[int]:
    """Endless draws of 0..size-1, the first most often."""
    weights = [1 / (rank**skew) for rank in range(1, size + 1)]
    while True:
        yield from rng.choices(range(size), weights=weights, k=1024)


def stamp(moment: datetime) -> Timestamp:
    """A protobuf timestamp."""
    value = Timestamp()
    value.FromDatetime(moment)
    return value


async def every(
    rate: float,
    stop: asyncio.Event,
    recorder: Recorder,
    work: Callable[[int], Coroutine[Any, Any, None]],
) -> None:
    """Start `work(tick)` `rate` times a second until `stop` (open loop), then wait for it all.

    A tick that comes while the previous ones are still running starts anyway
    (the load does not slow down because the platform does); at most 256 run at
    once, past which a tick is counted as the generator lagging.
    """
    if rate <= 0:
        return
    interval = 1 / rate
    running: set[asyncio.Task[None]] = set()
    tick = 0
    start = time.perf_counter()
    while not stop.is_set():
        if len(running) < 256:
            task = asyncio.create_task(work(tick))
            running.add(task)
            task.add_done_callback(running.discard)
        else:
            recorder.lagging += 1
        tick += 1
        delay = start + tick * interval - time.perf_counter()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    if running:
        await asyncio.gather(*running, return_exceptions=True)


class Mix:
    """The load mix over a cluster's replicas, for `tenants` tenants.

    Args:
        cluster: The replicas (their gRPC target and HTTP addresses, and tokens).
        tenants: How many tenants share the load.
        rates: Calls per second of each lane.
        seed: The same seed draws the same keys and choices.
        nodes: Entities of each tenant's graph (four times as many relationships).
    """

    def __init__(
        self,
        cluster: Cluster,
        tenants: int = 4,
        rates: Rates | None = None,
        seed: int = 7,
        nodes: int = 2000,
    ) -> None:
        self.cluster = cluster
        self.tenants = [uuid.uuid5(uuid.NAMESPACE_URL, f"load-{seed}-{n}") for n in range(tenants)]
        self.rates = rates or Rates()
        self.rng = random.Random(seed)
        self.recorder = Recorder()
        self.ledger = Ledger()
        self.nodes = nodes
        self._stack = contextlib.AsyncExitStack()
        self.operators: list[AsyncClient] = []
        self.requesters: list[AsyncClient] = []
        self.approvers: list[AsyncClient] = []
        self.read_tokens: list[str] = []
        self.graphql = Graphql([replica.http for replica in cluster.members])

    def client(self, tenant: uuid.UUID, scopes: list[str], subject: str) -> AsyncClient:
        """An SDK client over every replica (closed with the mix)."""
        return AsyncClient(
            self.cluster.target,
            INSECURE,
            token=bearer_token(self.cluster.token(tenant, scopes, subject)),
        )

    async def __aenter__(self) -> Mix:
        for tenant in self.tenants:
            for group, scopes, subject in (
                (self.operators, OPERATOR_SCOPES, "operator"),
                (self.requesters, [], "alice"),
                (self.approvers, ["admin.write"], "bob"),
            ):
                group.append(
                    await self._stack.enter_async_context(self.client(tenant, scopes, subject))
                )
            self.read_tokens.append(
                self.cluster.token(
                    tenant, ["billing.read", "admin.write", "catalog.read", "edge.read"], "dash"
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.graphql.close()
        await self._stack.aclose()

    # -- set-up ---------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Enrol every tenant in billing, import its graph and catalog; wait for its analytics."""
        await asyncio.gather(*(self._prepare(index) for index in range(len(self.tenants))))

    async def _prepare(self, index: int) -> None:
        operator = self.operators[index]
        tenant = str(self.tenants[index])
        await operator.billing.set_rollout(tenant_id=tenant, stage=billing_pb.ROLLOUT_STAGE_PILOT)
        await operator.billing.set_billing_profile(
            profile=billing_pb.BillingProfile(
                currency_code=CURRENCY, jurisdiction="GB", tax_mode=billing_pb.TAX_MODE_EXCLUSIVE
            )
        )
        await operator.billing.set_price(
            tenant_id=tenant,
            meter=METER,
            unit_price=Money(minor_units=3, currency_code=CURRENCY),
            per_quantity=1,
        )
        rng = random.Random(index)
        entities = [analytics_pb.Entity(id=f"e{n}", type="person") for n in range(self.nodes)]
        relationships = [
            analytics_pb.Relationship(
                id=f"r{n}",
                source_id=f"e{rng.randrange(self.nodes)}",
                target_id=f"e{int(self.nodes * rng.random() ** 2)}",
                type="knows",
                weight=1.0,
            )
            for n in range(self.nodes * 4)
        ]
        imported = await operator.analytics.import_graph_from(
            entities=entities, relationships=relationships
        )
        await operator.catalog.import_catalog(yaml=catalog_yaml(index))
        for _ in range(1200):
            status = await operator.analytics.get_graph_status()
            if status.ready_revision >= imported.graph_revision:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"tenant {tenant}'s graph was never ready")

    # -- the lanes --------------------------------------------------------------------------------

    async def run(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        """Every lane at once for `seconds` (or until `stop` is set)."""
        stop = stop or asyncio.Event()
        rates = self.rates
        lanes = [
            self._graphql_reads(stop),
            every(rates.mutations, stop, self.recorder, self._mutation),
            every(rates.analytics, stop, self.recorder, self._analytics),
            every(rates.billing_usage, stop, self.recorder, self._usage),
            every(rates.invoices, stop, self.recorder, self._invoice),
            every(rates.access_flows, stop, self.recorder, self._access),
            every(rates.rag_uploads, stop, self.recorder, self._upload),
            every(rates.what_ifs, stop, self.recorder, self._what_if),
        ]

        async def timer() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            stop.set()

        await asyncio.gather(timer(), *lanes)

    async def saturate(self, seconds: float, concurrency: int = 64) -> Recorder:
        """Closed loop: `concurrency` callers, each calling again as soon as answered.

        The same kinds of call in about the mix's proportions (GraphQL reads, a
        materialized analytics lookup, what-if runs, usage events); what the
        replicas sustain is the calls answered per second. Usage events go to
        the ledger as in `run`, so `check` covers them too.
        """
        recorder, self.recorder = self.recorder, Recorder()
        saturated = self.recorder
        keys = [(t, op, vars_) for t in range(len(self.tenants)) for op, vars_ in READS]
        draws = zipf(len(keys), random.Random(11))
        menu = ["read"] * 16 + ["analytics", "what-if", "usage"]
        deadline = time.perf_counter() + seconds

        async def caller(index: int) -> None:
            rng = random.Random(index)
            tick = index
            while time.perf_counter() < deadline:
                kind = rng.choice(menu)
                tick += concurrency
                if kind == "read":
                    await self._read(*keys[next(draws)])
                elif kind == "analytics":
                    await self.recorder.call(
                        "analytics.pagerankTop",
                        self.operators[tick % len(self.tenants)].analytics.run_pack(
                            pack_id=PACKS[0], parameters=analytics_pb.PackParameters(top_k=20)
                        ),
                    )
                elif kind == "what-if":
                    await self._what_if(tick)
                else:
                    await self._usage(tick)

        try:
            await asyncio.gather(*(caller(index) for index in range(concurrency)))
        finally:
            self.recorder = recorder
        return saturated

    async def _graphql_reads(self, stop: asyncio.Event) -> None:
        keys = [(t, op, vars_) for t in range(len(self.tenants)) for op, vars_ in READS]
        self.rng.shuffle(keys)
        draws = zipf(len(keys), random.Random(self.rng.random()))
        per_burst = max(int(self.rates.graphql_reads * BURST_S), 1)

        async def burst(_: int) -> None:
            await asyncio.gather(*(self._read(*keys[next(draws)]) for _ in range(per_burst)))

        await every(1 / BURST_S, stop, self.recorder, burst)

    async def _read(self, tenant: int, operation: str, variables: dict[str, Any]) -> None:
        body = json.dumps({"id": OPERATIONS[operation], "variables": variables}).encode()
        started = self.recorder.now()
        try:
            status, _, payload, replica = await self.graphql.post(self.read_tokens[tenant], body)
        except ConnectionError as error:
            self.recorder.record(
                f"graphql.{operation}", started, "error:UNAVAILABLE", detail=str(error)
            )
            return
        if status != 200 or b'"errors"' in payload:
            self.recorder.record(
                f"graphql.{operation}",
                started,
                _graphql_error(status, payload),
                replica,
                payload[:300].decode(errors="replace"),
            )
            return
        self.recorder.record(f"graphql.{operation}", started, "ok", replica)

    async def _mutation(self, tick: int) -> None:
        index = self.rng.randrange(len(self.tenants))
        if tick % 8 == 7:
            await self.recorder.call(
                "billing.SetPrice",
                self.operators[index].billing.set_price(
                    tenant_id=str(self.tenants[index]),
                    meter="rag.bytes",
                    unit_price=Money(minor_units=8 + tick % 5, currency_code=CURRENCY),
                    per_quantity=1_000_000,
                ),
            )
            return
        await self.recorder.call(
            "access.RequestAccess",
            self.requesters[index].access.request_access(
                scope=["catalog.read"], expires_at=stamp(datetime.now(UTC) + timedelta(hours=1))
            ),
        )

    async def _analytics(self, tick: int) -> None:
        index = tick % len(self.tenants)
        pack = PACKS[tick % len(PACKS)]
        source, target = (f"e{self.rng.randrange(self.nodes)}" for _ in range(2))
        parameters = analytics_pb.PackParameters(top_k=20)
        if pack.endswith(("shortestPath:v1", "neighborhood:v1", "personalizedPagerank:v1")):
            parameters = analytics_pb.PackParameters(
                source_id=source, target_id=target, seed_ids=[source], max_hops=2, top_k=20
            )
        await self.recorder.call(
            f"analytics.{pack.split('.')[1].split(':')[0]}",
            self.operators[index].analytics.run_pack(pack_id=pack, parameters=parameters),
        )

    async def _usage(self, tick: int) -> None:
        index = tick % len(self.tenants)
        tenant = str(self.tenants[index])
        event_id = f"load-{uuid.uuid4().hex}"
        quantity = 1 + tick % 9
        self.ledger.unacknowledged[tenant][event_id] = quantity
        # Repeated with the same event id until acknowledged: the platform counts it once.
        done = await self.recorder.acknowledged(
            "billing.RecordUsage",
            lambda: self.operators[index].billing.record_usage(
                event_id=event_id, meter=METER, quantity=quantity
            ),
        )
        if done is not None:
            del self.ledger.unacknowledged[tenant][event_id]
            self.ledger.usage[tenant] += quantity
            self.ledger.usage_events[tenant][event_id] = quantity

    async def _invoice(self, tick: int) -> None:
        index = tick % len(self.tenants)
        operator = self.operators[index]
        tenant = str(self.tenants[index])
        drafts = await self.recorder.call(
            "billing.ListInvoices",
            operator.billing.list_invoices(status=billing_pb.INVOICE_STATUS_DRAFT),
        )
        if drafts is None or not drafts.invoices:
            return
        draft = drafts.invoices[0]
        key = f"finalize-{draft.id}"
        finalized = await self.recorder.acknowledged(
            "billing.FinalizeInvoice",
            lambda: operator.billing.finalize_invoice(id=draft.id, idempotency_key=key),
        )
        if finalized is None or finalized.invoice.status != billing_pb.INVOICE_STATUS_FINALIZED:
            return
        self.ledger.finalized[tenant].add(draft.id)
        if finalized.invoice.total.minor_units >= 2:
            credited = await self.recorder.acknowledged(
                "billing.CreateCreditNote",
                lambda: operator.billing.create_credit_note(
                    invoice_id=draft.id,
                    amount=Money(minor_units=1, currency_code=CURRENCY),
                    reason=billing_pb.CREDIT_NOTE_REASON_OTHER,
                    idempotency_key=f"credit-{draft.id}",
                ),
            )
            if credited is not None:
                self.ledger.credit_notes[tenant].add(credited.credit_note.id)

    async def _access(self, tick: int) -> None:
        index = tick % len(self.tenants)
        alice, bob = self.requesters[index], self.approvers[index]
        call = self.recorder.call
        requested = await call(
            "access.RequestAccess",
            alice.access.request_access(
                scope=["rag.read"], expires_at=stamp(datetime.now(UTC) + timedelta(minutes=30))
            ),
        )
        if requested is None:
            return
        approved = await call(
            "access.ApproveAccess", bob.access.approve_access(id=requested.access_request.id)
        )
        if approved is None:
            return
        claimed = await call(
            "access.ClaimGrant", alice.access.claim_grant(grant_id=approved.grant.id)
        )
        if claimed is None:
            return
        async with AsyncClient(
            self.cluster.target, INSECURE, token=bearer_token(claimed.token)
        ) as jit:
            await call("access.GetCaller(jit)", jit.access.get_caller())
            revoked = await call(
                "access.RevokeGrant", alice.access.revoke_grant(grant_id=approved.grant.id)
            )
            if revoked is None:
                return
            self.ledger.revoked_tokens.append((str(self.tenants[index]), claimed.token))
            # Every replica refuses it within the revocation bound (0.5 s polling, or Redis).
            await asyncio.sleep(1.0)
            await call(
                "access.GetCaller(revoked)",
                _refused(jit.access.get_caller()),
                intended=(grpc.StatusCode.UNAUTHENTICATED,),
            )

    async def _upload(self, tick: int) -> None:
        index = tick % len(self.tenants)
        operator = self.operators[index]
        tenant = str(self.tenants[index])
        text = document(tick, self.rng.random())
        upload_id = str(uuid.uuid4())
        digest = hashlib.sha256(text).hexdigest()
        started = self.recorder.now()
        try:
            uploaded = await upload_document_async(
                operator.rag,
                text,
                filename=f"note-{tick}.txt",
                upload_id=upload_id,
                chunk_bytes=4096,
                attempts=5,
                backoff_s=0.3,
            )
        except ConductorError as error:
            self.recorder.record("rag.UploadDocument", started, f"error:{error.code.name}")
            self.ledger.uploads_failed[tenant][upload_id] = str(error)
            return
        self.recorder.record("rag.UploadDocument", started, "ok")
        self.ledger.uploads[tenant][uploaded.document.id] = digest
        await self.recorder.call(
            "rag.Summarize",
            operator.rag.summarize(document_id=uploaded.document.id, purpose="legal-review"),
        )

    async def _what_if(self, tick: int) -> None:
        index = tick % len(self.tenants)
        entity = f"svc-{self.rng.randrange(CATALOG_SERVICES)}"
        scenario = catalog_pb.Scenario(
            overrides=[
                catalog_pb.EntityOverride(
                    entity=entity, availability=round(0.99 + self.rng.random() / 101, 6)
                )
            ]
        )
        await self.recorder.call(
            "catalog.RunWhatIf", self.operators[index].catalog.run_what_if(scenario=scenario)
        )


def _graphql_error(status: int, payload: bytes) -> str:
    """ "error:<the gRPC code the facade names>" (or the HTTP status when it names none)."""
    try:
        errors = json.loads(payload).get("errors") or [{}]
        code = errors[0].get("extensions", {}).get("code")
    except (ValueError, AttributeError):
        code = None
    return f"error:{code or f'HTTP_{status}'}"


async def _refused(awaitable: Awaitable[object]) -> None:
    """Raise what `awaitable` raises; a success of what must be refused is an error."""
    await awaitable
    raise ConductorError(
        "a revoked JIT token was accepted", code=grpc.StatusCode.FAILED_PRECONDITION
    )


CATALOG_SERVICES = 24


def catalog_yaml(seed: int) -> bytes:
    """A catalog of CATALOG_SERVICES services, each depending on up to two earlier ones."""
    rng = random.Random(seed)
    documents = []
    for index in range(CATALOG_SERVICES):
        depends = sorted({f"svc-{rng.randrange(index)}" for _ in range(2)}) if index else []
        documents.append(
            "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
            f"metadata:\n  name: svc-{index}\n  annotations:\n"
            f'    conductor.intelgraph.io/expected-availability: "{0.999 - index / 10000:.4f}"\n'
            f'    conductor.intelgraph.io/requests-per-second: "{10 + index}"\n'
            "spec:\n  type: service\n  owner: team-load\n  lifecycle: production\n"
            f"  dependsOn: [{', '.join(depends)}]\n"
        )
    return "---\n".join(documents).encode()


WORDS = [
    "contract", "renewal", "counterparty", "liability", "clause", "invoice", "delivery",
    "schedule", "warranty", "termination", "notice", "arbitration", "payment",
    "confidentiality", "supplier", "obligations", "review",
]  # fmt: skip


def document(tick: int, salt: float) -> bytes:
    """A generated text document of about 8 KiB (two chunks of the upload lane)."""
    rng = random.Random(f"{tick}-{salt}")
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
        for _ in range(90)
    ]
    return ("\n\n".join(" ".join(sentences[i : i + 6]) for i in range(0, 90, 6))).encode()


# -- checks after a run -------------------------------------------------------------------------


@dataclass
class Findings:
    """What the checks found: lost and duplicated counts, and what failed to hold."""

    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        """Note something that must hold and did not."""
        self.problems.append(problem)


async def check(mix: Mix) -> Findings:
    """Prove nothing was lost or counted twice (call once the load has stopped)."""
    findings = Findings()
    for index, tenant_id in enumerate(mix.tenants):
        await _check_usage(mix, index, findings)
        await _check_documents(mix, index, findings)
        tenant, operator = str(tenant_id), mix.operators[index]
        chain = await operator.access.verify_audit_chain()
        if not chain.valid:
            findings.fail(f"{tenant}: the audit chain breaks: {chain}")
        for document_id, digest in mix.ledger.uploads[tenant].items():
            try:
                stored = (await operator.rag.get_document(document_id=document_id)).document
            except ConductorError as error:
                findings.lost += 1
                findings.fail(f"{tenant}: uploaded document {document_id}: {error}")
                continue
            if stored.sha256 != digest:
                findings.fail(f"{tenant}: document {document_id} is not what was uploaded")
    return findings


async def _check_usage(mix: Mix, index: int, findings: Findings) -> None:
    """Usage recorded = usage acknowledged; the ledger reconciles with usage and documents."""
    tenant, operator = str(mix.tenants[index]), mix.operators[index]
    waiting = mix.ledger.unacknowledged[tenant]
    if waiting:
        findings.fail(f"{tenant}: {len(waiting)} usage events never acknowledged")
    recorded = 0
    async for invoice in operator.billing.iter_invoices():
        recorded += sum(line.quantity for line in invoice.lines if line.meter == METER)
    expected = mix.ledger.usage[tenant]
    if recorded != expected:
        findings.lost += max(0, expected - recorded)
        findings.duplicated += max(0, recorded - expected)
        findings.fail(f"{tenant}: usage {recorded} recorded, {expected} acknowledged")
    # Each acknowledged event, sent again, must be one the platform already has: none was
    # lost (and compensated by another counted twice).
    slots = asyncio.Semaphore(16)

    async def known(event_id: str, quantity: int) -> bool:
        async with slots:
            again = await operator.billing.record_usage(
                event_id=event_id, meter=METER, quantity=quantity
            )
            return again.duplicate

    events = mix.ledger.usage_events[tenant]
    answers = await asyncio.gather(*(known(e, q) for e, q in events.items()))
    missing = answers.count(False)
    if missing:
        findings.lost += missing
        findings.fail(f"{tenant}: {missing} acknowledged usage events were not stored")
    day = datetime.now(UTC).date()
    for when in sorted({day - timedelta(days=1), day}):
        report = (await operator.billing.run_reconciliation(day=when.isoformat())).report
        if report.drift.minor_units != 0:
            findings.fail(f"{tenant}: reconciliation of {when} drifts {report.drift}")


async def _check_documents(mix: Mix, index: int, findings: Findings) -> None:
    """Finalized invoices stay so; one credit note per acknowledged one, no more."""
    tenant, operator = str(mix.tenants[index]), mix.operators[index]
    notes = 0
    for invoice_id in mix.ledger.finalized[tenant]:
        invoice = (await operator.billing.get_invoice(id=invoice_id)).invoice
        if invoice.status != billing_pb.INVOICE_STATUS_FINALIZED:
            findings.fail(f"{tenant}: invoice {invoice_id} is no longer finalized")
        async for _ in operator.billing.iter_credit_notes(invoice_id=invoice_id):
            notes += 1
    acknowledged = len(mix.ledger.credit_notes[tenant])
    if notes != acknowledged:
        findings.duplicated += max(0, notes - acknowledged)
        findings.lost += max(0, acknowledged - notes)
        findings.fail(f"{tenant}: {notes} credit notes stored, {acknowledged} acknowledged")


@contextlib.asynccontextmanager
async def mix_on(cluster: Cluster, **options: Any) -> AsyncIterator[Mix]:
    """A prepared mix over `cluster`'s replicas."""
    async with Mix(cluster, **options) as mix:
        await mix.prepare()
        yield mix


def latency(samples: list[Sample], prefix: str, share: float) -> float:
    """The `share` quantile (ms) of successful calls whose operation starts with `prefix`."""
    ordered = sorted(s.seconds * 1000 for s in samples if s.operation.startswith(prefix)
                     and s.outcome == "ok")  # fmt: skip
    return round(percentile(ordered, share), 1)


def error_rate(samples: list[Sample]) -> float:
    """Unintended errors over calls."""
    errors = sum(1 for s in samples if s.outcome.startswith("error:"))
    return errors / max(len(samples), 1)


def median(values: list[float]) -> float:
    """The median, 0 of nothing."""
    return statistics.median(values) if values else 0.0
