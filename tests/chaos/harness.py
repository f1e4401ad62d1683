"""What every chaos case shares: a platform of its own, the load mix, probes, and the timeline.

`Stack` starts a private PostgreSQL and Redis, two replicas (replica b reaches
Redis through a `Proxy`, so it alone can be cut off), and runs the load mix
while a case injects its fault. Meanwhile:

* `Freshness` changes a probe tenant's price every few hundred milliseconds and
  reads it back through each replica's edge cache: the staleness of each read
  after the change was acknowledged;
* `Watcher` probes each replica's listener every 100 ms: when it went away and
  came back.

A case ends with the mix's own checks (nothing lost or duplicated) and a `Row`
of the results table: case, injected at, detected at, recovered at, lost,
duplicated (seconds from the start of the load).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import yaml
from intelgraph.sdk import INSECURE, AsyncClient, ConductorError, bearer_token
from intelgraph.sdk import access as access_pb
from intelgraph.sdk import billing as billing_pb
from intelgraph.sdk import rag as rag_pb
from intelgraph.sdk.money import Money

from tests.support.cluster import (
    BIN,
    OPERATOR_SCOPES,
    Cluster,
    PrivatePostgres,
    PrivateRedis,
    Proxy,
    Replica,
    free_port,
    libpq,
)
from tests.support.loadmix import (
    OPERATIONS,
    Findings,
    Graphql,
    Mix,
    Rates,
    Sample,
    check,
    document,
    stamp,
)

#: Seconds of load each case runs (the fault comes a fifth of the way in).
LOAD_S = float(os.environ.get("CONDUCTOR_CHAOS_SECONDS", "16"))
#: The edge cache's TTL and grace in the chaos platform: the staleness bound is their sum.
EDGE_TTL_S, EDGE_STALE_S = 4.0, 2.0
#: Where the results table is written.
ARTIFACTS = Path(os.environ.get("CONDUCTOR_TEST_ARTIFACTS", "test-artifacts")) / "chaos"
PROBE_METER = "analytics.pack_run"
#: Clock skew the chaos platform's replicas tolerate on token times (NTP-synchronised machines).
TOKEN_LEEWAY_S = 1.0


@dataclass
class Row:
    """One line of the results table (times in seconds from the start of the load)."""

    case: str
    injected_at: float
    detected_at: float | None
    recovered_at: float | None
    lost: int
    duplicated: int
    failed_calls: int
    retried_calls: int
    note: str = ""
    failed_by_operation: dict[str, int] = field(default_factory=dict)


ROWS: list[Row] = []


def write_table() -> str:
    """The results table as Markdown (also written, with JSON, to the artifacts directory)."""

    def at(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| case | injected at | detected at | recovered at | lost | duplicated | failed calls "
        "| retried calls | note |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {row.case} | {at(row.injected_at)} | {at(row.detected_at)} | "
            f"{at(row.recovered_at)} | {row.lost} | {row.duplicated} | {row.failed_calls} | "
            f"{row.retried_calls} | {row.note} |"
            for row in ROWS
        ),
    ]
    table = "\n".join(lines)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "chaos.md").write_text(table + "\n")
    (ARTIFACTS / "chaos.json").write_text(json.dumps([row.__dict__ for row in ROWS], indent=2))
    return table


class Watcher:
    """When each replica's gRPC listener stopped and started answering (TCP, every 100 ms)."""

    def __init__(self, cluster: Cluster, clock: Callable[[], float]) -> None:
        self.cluster = cluster
        self.clock = clock
        self.changes: list[tuple[float, str, bool]] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until `stop`."""
        up = {replica.name: True for replica in self.cluster.members}
        while not stop.is_set():
            for replica in self.cluster.members:
                now = await asyncio.to_thread(_answers, replica.grpc_port)
                if now != up[replica.name]:
                    up[replica.name] = now
                    self.changes.append((self.clock(), replica.name, now))
            await asyncio.sleep(0.1)

    def first(self, name: str, up: bool, after: float) -> float | None:
        """When replica `name` was first seen up (or down) after `after`."""
        return next((t for t, n, u in self.changes if n == name and u == up and t >= after), None)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


@dataclass
class Freshness:
    """A probe tenant's price, changed every 300 ms and read through each replica every 50 ms.

    A change's staleness on a replica: from its acknowledgement to the end of
    the first read, started after it, that showed it (or a later one).
    """

    cluster: Cluster
    clock: Callable[[], float]
    tenant: uuid.UUID = field(default_factory=uuid.uuid4)
    #: (value, acknowledged at)
    changes: list[tuple[int, float]] = field(default_factory=list)
    #: replica -> (read started, read ended, value seen)
    reads: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    ended: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Change and read back until `stop`."""
        token = self.cluster.token(self.tenant, OPERATOR_SCOPES, "probe")
        async with AsyncClient(self.cluster.target, INSECURE, token=bearer_token(token)) as client:
            await asyncio.gather(
                self._change(client, stop),
                *(self._read(replica, token, stop) for replica in self.cluster.members),
            )
        self.ended = self.clock()

    async def _change(self, client: AsyncClient, stop: asyncio.Event) -> None:
        value = 100
        while not stop.is_set():
            value += 1
            with contextlib.suppress(ConductorError):
                await client.billing.set_price(
                    tenant_id=str(self.tenant),
                    meter=PROBE_METER,
                    unit_price=Money(minor_units=value, currency_code="USD"),
                    per_quantity=1,
                )
                self.changes.append((value, self.clock()))
            await asyncio.sleep(0.3)

    async def _read(self, replica: Replica, token: str, stop: asyncio.Event) -> None:
        reader = Graphql([replica.http], per_replica=2)
        body = json.dumps({"id": OPERATIONS["PriceBook"], "variables": {}}).encode()
        seen = self.reads.setdefault(replica.name, [])
        try:
            while not stop.is_set():
                started = self.clock()
                with contextlib.suppress(
                    ConnectionError, KeyError, StopIteration, TypeError, ValueError
                ):
                    status, _, payload, _ = await reader.post(token, body)
                    if status == 200:
                        seen.append((started, self.clock(), _price(payload)))
                await asyncio.sleep(0.05)
        finally:
            reader.close()

    @property
    def staleness(self) -> list[tuple[float, str, float]]:
        """(acknowledged at, replica, seconds until its reads showed the change) of each change."""
        found = []
        for value, acknowledged in self.changes:
            for name, reads in self.reads.items():
                shown = next(
                    (ended for started, ended, seen in reads
                     if started >= acknowledged and seen >= value),
                    None,
                )  # fmt: skip
                if shown is not None:
                    found.append((acknowledged, name, shown - acknowledged))
        return found

    @property
    def unseen(self) -> list[tuple[float, str]]:
        """Changes a replica's reads never showed, though the run went on past the bound."""
        bound = EDGE_TTL_S + EDGE_STALE_S + 2
        shown = {(t, n) for t, n, _ in self.staleness}
        return [
            (acknowledged, name)
            for _, acknowledged in self.changes
            for name in self.reads
            if acknowledged + bound < self.ended and (acknowledged, name) not in shown
        ]

    @property
    def stale_reads(self) -> list[tuple[float, str, float]]:
        """(read started, replica, staleness) of each answered read that showed a superseded price.

        Its staleness: how long before the read began a newer price had been acknowledged
        (a replica that answers nothing serves nothing stale).
        """
        found = []
        for name, reads in self.reads.items():
            for started, _, seen in reads:
                newer = [t for value, t in self.changes if value > seen and t <= started]
                if newer:
                    found.append((started, name, started - min(newer)))
        return found

    def worst(self, name: str | None = None, after: float = 0.0) -> float:
        """The stalest read answered (by one replica; of reads begun after `after`)."""
        return max(
            (s for t, n, s in self.stale_reads if (name is None or n == name) and t >= after),
            default=0.0,
        )


def _price(payload: bytes) -> int:
    prices = json.loads(payload)["data"]["priceBook"]["prices"]
    return next(int(p["unitPrice"]["minorUnits"]) for p in prices if p["meter"] == PROBE_METER)


@dataclass
class Outcome:
    """What a case's run produced."""

    mix: Mix
    findings: Findings
    freshness: Freshness
    watcher: Watcher
    injected_at: float
    fault: Any
    wall_start: float = 0.0

    def fault_seen(self, replica: Replica, pattern: str) -> float | None:
        """When `replica` first logged a warning or error matching `pattern` after the injection."""
        compiled = re.compile(pattern)
        for line in replica.log_lines(r'"level": "(warning|error)"'):
            if not compiled.search(line):
                continue
            with contextlib.suppress(ValueError, KeyError):
                stamp = datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
                at = stamp - self.wall_start
                if at >= self.injected_at:
                    return at
        return None

    @property
    def samples(self) -> list[Sample]:
        """Every call the load made."""
        return self.mix.recorder.samples

    def failures(self, kinds: tuple[str, ...] = ("error:", "retried:")) -> list[Sample]:
        """Calls that failed (finally, or before a retry)."""
        return [s for s in self.samples if s.outcome.startswith(kinds)]

    def last_failure(self) -> float | None:
        """When the last failed call ended."""
        failed = self.failures()
        return max((s.at + s.seconds for s in failed), default=None)

    def first_failure(self, after: float) -> float | None:
        """When the first call that failed after `after` ended."""
        return min((s.at + s.seconds for s in self.failures() if s.at + s.seconds >= after),
                   default=None)  # fmt: skip


class TaxApi:
    """`conductor billing tax-sandbox` in a process of its own, on a port kept across restarts."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "tax-api.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it serves."""
        with self.log.open("a") as output:
            self.process = subprocess.Popen(
                [str(BIN / "conductor"), "billing", "tax-sandbox", "--port", str(self.port)],
                stdout=output, stderr=output,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while "tax sandbox serving" not in self.log.read_text().split("--- start")[-1]:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the tax API did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill it (callers' connections are refused until it starts again)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
        with self.log.open("a") as output:
            output.write("--- start\n")


class Stack:
    """A private PostgreSQL and Redis, and two replicas (b reaches Redis through a proxy).

    With `tax_api`, invoices are taxed by a remote tax API (a sandbox process)
    that every replica reaches through a proxy, so it can fail or hang.
    """

    def __init__(self, directory: Path, *, tax_api: bool = False, **settings: str) -> None:
        self.directory = directory
        self.tax_api: TaxApi | None = None
        self.tax_proxy: Proxy | None = None
        # Each part is stopped in reverse order, by `close` or by a failure to build the rest.
        self._teardown = contextlib.ExitStack()
        try:
            self.postgres = PrivatePostgres()
            self._teardown.callback(self.postgres.remove)
            self.postgres.start()
            self.redis = PrivateRedis(directory)
            self._teardown.callback(self.redis.stop)
            self.redis.start()
            self.redis_proxy = self._teardown.enter_context(
                contextlib.closing(Proxy(self.redis.port))
            )
            if tax_api:
                self.tax_api = TaxApi(directory)
                self._teardown.callback(self.tax_api.stop)
                self.tax_api.start()
                self.tax_proxy = self._teardown.enter_context(
                    contextlib.closing(Proxy(self.tax_api.port))
                )
                settings = {
                    "CONDUCTOR_TAX_URL": f"http://127.0.0.1:{self.tax_proxy.port}",
                    "CONDUCTOR_TAX_TIMEOUT": "1",
                    **settings,
                }
            self.cluster = Cluster(
                directory / "cluster",
                self.postgres.url,
                self.redis.url,
                2,
                settings={
                    "CONDUCTOR_LOG_LEVEL": "info",
                    "CONDUCTOR_ANALYTICS_WORKERS": "1",
                    "CONDUCTOR_EDGE_TTL": str(EDGE_TTL_S),
                    "CONDUCTOR_EDGE_STALE": str(EDGE_STALE_S),
                    "CONDUCTOR_TOKEN_LEEWAY": str(TOKEN_LEEWAY_S),
                    **settings,
                },
            )
            self._teardown.callback(self.cluster.close)
            self.cluster.use_redis(1, f"redis://127.0.0.1:{self.redis_proxy.port}/0")
        except BaseException:
            self._teardown.close()
            raise

    def start(self) -> None:
        """Start the replicas."""
        self.cluster.start()

    def hold_lease(self, job: str, seconds: float) -> None:
        """Take a background job's lease for a holder that never runs it (a stuck replica)."""
        with psycopg.connect(libpq(self.cluster.database_url), autocommit=True) as connection:
            connection.execute(
                "INSERT INTO job_leases (name, holder, acquired_at, expires_at) "
                "VALUES (%(name)s, 'chaos:stuck', now(), now() + %(ttl)s * interval '1 second') "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                {"name": job, "ttl": seconds},
            )

    def close(self) -> None:
        """Stop everything, whatever state the case left it in."""
        self.redis_proxy.heal()
        if self.tax_proxy is not None:
            self.tax_proxy.heal()
        self._teardown.close()

    async def under_load(
        self,
        fault: Callable[[Stack, Callable[[], float]], Awaitable[Any]],
        *,
        seconds: float = LOAD_S,
        rates: Rates | None = None,
    ) -> Outcome:
        """Run the load mix for `seconds`; a fifth of the way in, `fault(stack, clock)`.

        The fault may take as long as it likes (the load goes on meanwhile); the
        load stops at `seconds` or when the fault returns, whichever is later,
        and then the checks run. A fault that prepares before it strikes says
        when it struck as "injected" in the dict it returns.
        """
        rates = rates or Rates().scaled(0.5)
        async with Mix(self.cluster, tenants=2, rates=rates, nodes=400) as mix:
            await mix.prepare()
            clock = mix.recorder.now
            mix.recorder.begin = time.perf_counter()
            wall_start = time.time()
            stop = asyncio.Event()
            freshness = Freshness(self.cluster, clock)
            watcher = Watcher(self.cluster, clock)
            background = [
                asyncio.create_task(mix.run(10_000, stop)),
                asyncio.create_task(freshness.run(stop)),
                asyncio.create_task(watcher.run(stop)),
            ]
            await asyncio.sleep(seconds / 5)
            injected_at = clock()
            result = await fault(self, clock)
            if isinstance(result, dict) and "injected" in result:
                injected_at = result["injected"]  # after the fault's own preparations
            remaining = seconds - clock()
            if remaining > 0:
                await asyncio.sleep(remaining)
            stop.set()
            await asyncio.gather(*background)
            findings = await check(mix)
        return Outcome(mix, findings, freshness, watcher, injected_at, result, wall_start)


def record(
    case: str,
    outcome: Outcome,
    detected_at: float | None,
    recovered_at: float | None,
    note: str = "",
) -> Row:
    """Add the case's row to the results table."""
    row = Row(
        case,
        round(outcome.injected_at, 2),
        None if detected_at is None else round(detected_at, 2),
        None if recovered_at is None else round(recovered_at, 2),
        outcome.findings.lost,
        outcome.findings.duplicated,
        len(outcome.failures(("error:",))),
        len(outcome.failures(("retried:",))),
        note,
        dict(Counter(f"{s.operation} {s.outcome}" for s in outcome.failures())),
    )
    ROWS.append(row)
    write_table()
    return row


# -- probes of the platform's own signals -------------------------------------------------------


async def metric(replica: Replica, name: str) -> float:
    """The sum of a metric's samples on `replica`'s /metrics (0 when it does not answer)."""

    def scrape() -> float:
        try:
            with urllib.request.urlopen(f"http://{replica.http}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        pattern = rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$"
        return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))

    return await asyncio.to_thread(scrape)


async def until(
    clock: Callable[[], float], check: Callable[[], Awaitable[bool]], timeout_s: float
) -> float | None:
    """When `check()` first held (polled every 100 ms), or None after `timeout_s`."""
    deadline = clock() + timeout_s
    while clock() < deadline:
        if await check():
            return clock()
        await asyncio.sleep(0.1)
    return None


async def overdue(stack: Stack) -> list[float]:
    """Each replica's `access_grants_overdue` gauge."""
    return [await metric(r, "access_grants_overdue") for r in stack.cluster.members]


async def gauges_above_zero(stack: Stack) -> bool:
    """Whether the overdue alert's condition holds: its expression's max over replicas > 0."""
    return max(await overdue(stack)) > 0


async def gauges_cleared(stack: Stack) -> bool:
    """Whether every replica reports no overdue grant."""
    return max(await overdue(stack)) == 0


def alert_expression(name: str) -> str:
    """The PromQL expression of one of the platform's alert rules."""
    rules = yaml.safe_load(ALERT_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return " ".join(str(rule["expr"]).split())
    raise KeyError(name)


ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "conductor_alerts.yml"


class Jit:
    """JIT grants of a tenant of their own, made on replica a and used on replica b."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.tenant = uuid.uuid4()
        self._clients = contextlib.AsyncExitStack()

    def _client(self, replica: int, token: str) -> AsyncClient:
        target = self.stack.cluster.members[replica].grpc
        return AsyncClient(target, INSECURE, token=bearer_token(token), retry=None)

    async def __aenter__(self) -> Jit:
        cluster = self.stack.cluster
        enter = self._clients.enter_async_context
        self.alice = await enter(self._client(0, cluster.token(self.tenant, [], "alice")))
        self.bob = await enter(self._client(0, cluster.token(self.tenant, ["admin.write"], "bob")))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._clients.aclose()

    async def grant(self, ends: datetime | None = None) -> tuple[str, str]:
        """(grant id, JIT token): Alice asks for rag.read, Bob approves, Alice claims."""
        requested = await self.alice.access.request_access(
            scope=["rag.read"], expires_at=stamp(datetime.now(UTC) + timedelta(minutes=30))
        )
        approve = access_pb.ApproveAccessRequest(id=requested.access_request.id)
        if ends is not None:
            approve.grant_ends_at.CopyFrom(stamp(ends))
        approved = await self.bob.access.approve_access(approve)
        claimed = await self.alice.access.claim_grant(grant_id=approved.grant.id)
        return approved.grant.id, claimed.token

    async def refused_on(self, replica: int, token: str) -> bool:
        """Whether `replica` refuses `token` (UNAUTHENTICATED)."""
        async with self._client(replica, token) as client:
            try:
                await client.access.get_caller()
            except ConductorError as error:
                return error.code == grpc.StatusCode.UNAUTHENTICATED
        return False

    async def revoke_and_watch(self) -> float:
        """Revoke a grant on replica a; seconds until replica b refuses its token."""
        grant_id, token = await self.grant()
        assert not await self.refused_on(1, token)
        await self.alice.access.revoke_grant(grant_id=grant_id)
        started = time.perf_counter()
        while not await self.refused_on(1, token):
            if time.perf_counter() - started > 30:
                raise AssertionError("replica b never refused a revoked token")
            await asyncio.sleep(0.01)
        return time.perf_counter() - started

    async def grants_ending_in(self, seconds: float, count: int) -> list[tuple[datetime, str]]:
        """`count` claimed grants, each ending `seconds` after it was asked for: (end, token)."""
        made = []
        for _ in range(count):
            ends = datetime.now(UTC) + timedelta(seconds=seconds)
            made.append((ends, (await self.grant(ends))[1]))
        return made

    async def all_refused(self, tokens: list[tuple[datetime, str]]) -> bool:
        """Once past each grant's end (and the token leeway), whether every replica refuses it."""
        for ends, token in tokens:
            wait = ends.timestamp() + TOKEN_LEEWAY_S + 0.2 - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            for replica in range(len(self.stack.cluster.members)):
                if not await self.refused_on(replica, token):
                    return False
        return True


class Billed:
    """A billing tenant of its own (GBP, UK VAT 20 %, exclusive) whose invoices a case follows."""

    def __init__(self, stack: Stack) -> None:
        self.tenant = uuid.uuid4()
        token = stack.cluster.token(self.tenant, OPERATOR_SCOPES, "billing-probe")
        self.client = AsyncClient(stack.cluster.target, INSECURE, token=bearer_token(token))

    async def __aenter__(self) -> Billed:
        billing = self.client.billing
        await billing.set_rollout(tenant_id=str(self.tenant), stage=billing_pb.ROLLOUT_STAGE_PILOT)
        await billing.set_billing_profile(
            profile=billing_pb.BillingProfile(
                currency_code="GBP", jurisdiction="GB", tax_mode=billing_pb.TAX_MODE_EXCLUSIVE
            )
        )
        await billing.set_price(
            tenant_id=str(self.tenant),
            meter="api.call",
            unit_price=Money(minor_units=1, currency_code="GBP"),
            per_quantity=1,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def finalize(self, quantity: int) -> billing_pb.Invoice:
        """Record `quantity` api.call usage, then finalize the draft it went to."""
        billing = self.client.billing
        await billing.record_usage(event_id=uuid.uuid4().hex, meter="api.call", quantity=quantity)
        drafts = await billing.list_invoices(status=billing_pb.INVOICE_STATUS_DRAFT)
        (draft,) = drafts.invoices
        return (await billing.finalize_invoice(id=draft.id)).invoice

    async def tax_pending_alerts(self) -> list[str]:
        """The invoices the tax_pending alerts name."""
        alerts = await self.client.billing.list_billing_alerts(
            kind=billing_pb.BILLING_ALERT_KIND_TAX_PENDING
        )
        return [alert.details["invoice_id"] for alert in alerts.alerts]

    async def all_finalized(self, ids: list[str], timeout_s: float) -> list[billing_pb.Invoice]:
        """The invoices once all are finalized (by the platform's own retries)."""
        deadline = time.monotonic() + timeout_s
        while True:
            invoices = [(await self.client.billing.get_invoice(id=i)).invoice for i in ids]
            if all(i.status == billing_pb.INVOICE_STATUS_FINALIZED for i in invoices):
                return invoices
            if time.monotonic() > deadline:
                raise AssertionError(f"still not issued: {invoices}")
            await asyncio.sleep(0.2)


class CutUpload:
    """A document sent slowly to one replica, cut by a fault, then resumed on the other.

    96 KiB in 8 KiB chunks, a chunk every 200 ms: in flight for about 2.5 s.
    """

    CHUNK = 8 * 1024

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.tenant = uuid.uuid4()
        self.data = b"".join(document(index, 0.5) + b"\n\n" for index in range(40))[
            : 12 * self.CHUNK
        ]
        self.metadata = rag_pb.UploadMetadata(
            upload_id=str(uuid.uuid4()),
            filename="cut.txt",
            size_bytes=len(self.data),
            sha256=hashlib.sha256(self.data).hexdigest(),
        )
        self._token = stack.cluster.token(self.tenant, ["rag.read", "rag.write"], "uploader")
        self._task: asyncio.Task[Any] | None = None

    def _client(self, replica: int) -> AsyncClient:
        target = self.stack.cluster.members[replica].grpc
        return AsyncClient(target, INSECURE, token=bearer_token(self._token), retry=None)

    async def _parts(self) -> AsyncIterator[rag_pb.UploadDocumentRequest]:
        yield rag_pb.UploadDocumentRequest(metadata=self.metadata)
        for offset in range(0, len(self.data), self.CHUNK):
            piece = self.data[offset : offset + self.CHUNK]
            yield rag_pb.UploadDocumentRequest(
                chunk=rag_pb.UploadChunk(
                    offset=offset, data=piece, sha256=hashlib.sha256(piece).hexdigest()
                )
            )
            await asyncio.sleep(0.2)

    async def start(self, replica: int, chunks: int = 3) -> None:
        """Start sending to `replica`; return once `chunks` chunks are committed."""

        async def send() -> Any:
            async with self._client(replica) as client:
                return await client.rag.upload_document(self._parts())

        self._task = asyncio.create_task(send())
        while await self.committed() < chunks * self.CHUNK:
            if self._task.done():
                raise AssertionError(f"the upload ended early: {self._task.result()}")
            await asyncio.sleep(0.05)

    async def committed(self, replica: int = 0) -> int:
        """The offset the platform has committed (0 before the upload exists)."""
        async with self._client(replica) as client:
            try:
                status = await client.rag.get_upload_status(upload_id=self.metadata.upload_id)
            except ConductorError:
                return 0
            return status.status.offset

    async def resume(self, replica: int) -> tuple[int, str]:
        """Once the cut stream has failed: resume on `replica` from the committed offset.

        Returns the offset it resumed from and the finished document's SHA-256.
        """
        assert self._task is not None
        with contextlib.suppress(ConductorError):
            await self._task
        offset = await self.committed(replica)
        async with self._client(replica) as client:
            done = await client.rag.upload_document_from_file(
                self.data, metadata=self.metadata, offset=offset, chunk_bytes=self.CHUNK
            )
        return offset, done.document.sha256
