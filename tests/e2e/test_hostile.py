"""Every RPC of the contracts, tried as an attacker and as a careless client would.

A `conductor serve` subprocess (on SQLite, and on PostgreSQL) gets, for every
RPC in the descriptors, requests drawn from the request's own message type
(`tests/contract_strategies.py`) with a valid token of tenant A holding every
permission. Whatever it is sent:

* it never answers INTERNAL or UNKNOWN, and never hangs;
* its health check answers within 200 ms throughout (probed from a process
  of its own, so the test's own work does not count);
* tenant B's rows, seeded before, are exactly as they were.

Then every RPC, and the GraphQL endpoint, gets a corpus of malformed,
forged and misplaced tokens: each is UNAUTHENTICATED with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intelgraph.access.v1 import access_service_pb2 as access
from intelgraph.analytics.v1 import analytics_service_pb2 as analytics
from intelgraph.billing.v1 import billing_service_pb2 as billing
from intelgraph.catalog.v1 import catalog_service_pb2 as catalog
from intelgraph.common.v1 import authorization_pb2
from intelgraph.common.v1.money_pb2 import Money
from intelgraph.sdk import ConductorError, from_grpc_error
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from interceptors import keys, tokens
from servers.facade import build_facade_schema
from servers.models import metadata
from servers.registry import all_services
from tests.support.contract_strategies import requests
from tests.support.processes import Served, run_conductor, start_conductor
from tests.support.serving import IN_CI, POSTGRES_SKIP_REASON, POSTGRES_URL, all_permissions

pytestmark = pytest.mark.e2e

METHODS = [method for service in all_services() for method in service.descriptor.methods]
METHOD_IDS = [f"{method.containing_service.name}.{method.name}" for method in METHODS]
TENANT_A = uuid.UUID("a0000000-0000-4000-8000-00000000000a")
TENANT_B = uuid.UUID("b0000000-0000-4000-8000-00000000000b")
#: Examples drawn per RPC (more with CONDUCTOR_FUZZ_EXAMPLES).
EXAMPLES = int(os.environ.get("CONDUCTOR_FUZZ_EXAMPLES", "30"))
#: Longest a health check may take while the server is being fuzzed.
HEALTH_BOUND_S = 0.2
CALL_TIMEOUT_S = 15.0
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def _probe(target: str, pipe: Connection) -> None:
    """Check health every 20 ms; answer the worst latency since the last question."""
    channel = grpc.insecure_channel(target)
    # typeshed's HealthStub declares no methods.
    health: Any = health_pb2_grpc.HealthStub(channel)
    worst, failures = 0.0, 0
    while True:
        if pipe.poll():
            if pipe.recv() == "stop":
                break
            pipe.send((worst, failures))
            worst, failures = 0.0, 0
        started = time.perf_counter()
        try:
            health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            failures += 1
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.02)
    channel.close()


class HealthProbe:
    """A process of its own that keeps checking the server's health."""

    def __init__(self, target: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(target=_probe, args=(target, theirs), daemon=True)
        self._process.start()

    def worst(self) -> tuple[float, int]:
        """(slowest answer in seconds, failed checks) since the last call."""
        self._pipe.send("report")
        found: tuple[float, int] = self._pipe.recv()
        return found

    def stop(self) -> None:
        self._pipe.send("stop")
        self._process.join(10)


@dataclass
class Target:
    """The served platform, its keys, and what was seeded in it."""

    served: Served
    database_url: str
    keys_dir: Path
    probe: HealthProbe
    known: list[str] = field(default_factory=list)
    tenant_b: str = ""

    def token(self, tenant: uuid.UUID, scopes: list[str], subject: str = "fuzzer") -> str:
        return tokens.mint(
            keys.load(self.keys_dir),
            issuer="intelgraph-conductor",
            audience="intelgraph",
            subject=subject,
            tenant=tenant,
            scopes=scopes,
            ttl_s=3600,
        )

    def bearer(self, tenant: uuid.UUID, scopes: list[str] | None = None, **more: Any) -> Any:
        token = self.token(tenant, all_permissions() if scopes is None else scopes, **more)
        return (("authorization", f"Bearer {token}"),)


def call(
    channel: grpc.Channel, method: MethodDescriptor, request: Any, metadata: Any
) -> ConductorError | None:
    """Make one call of any kind; its error, or None when it succeeded.

    It never ends INTERNAL or UNKNOWN, and never runs into the client's deadline (a hang).
    """
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)
    options = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": lambda data: data,
    }
    timeout = CALL_TIMEOUT_S
    started = time.perf_counter()
    try:
        if method.client_streaming:
            messages = request if isinstance(request, list) else [request]
            channel.stream_unary(path, **options)(
                iter(messages), metadata=metadata, timeout=timeout
            )
        elif method.server_streaming:
            list(channel.unary_stream(path, **options)(request, metadata=metadata, timeout=timeout))
        else:
            channel.unary_unary(path, **options)(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as raised:
        error = from_grpc_error(raised)
    else:
        return None
    if error.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        assert time.perf_counter() - started < timeout * 0.9, f"{path} hung"
    assert error.code not in FORBIDDEN, (path, error.code, error.details)
    return error


def _sync_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    return url


def tenant_rows(database_url: str, tenant: uuid.UUID) -> str:
    """A digest of every row of `tenant` in every tenant table."""
    engine = create_engine(_sync_url(database_url))
    digest = hashlib.sha256()
    try:
        with engine.connect() as connection:
            for table in sorted(metadata.sorted_tables, key=lambda table: table.name):
                if "tenant_id" not in table.c:
                    continue
                rows = connection.execute(select(table).where(table.c.tenant_id == tenant))
                for row in sorted(repr(tuple(row)) for row in rows):
                    digest.update(f"{table.name}:{row}\n".encode())
    finally:
        engine.dispose()
    return digest.hexdigest()


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def seed(target: Target) -> None:
    """Both tenants get a graph, access requests, billing facts and a catalog (with the same
    names in both); A's ids and names become `known`."""
    from intelgraph.access.v1 import access_service_pb2_grpc  # noqa: PLC0415
    from intelgraph.analytics.v1 import analytics_service_pb2_grpc  # noqa: PLC0415
    from intelgraph.billing.v1 import billing_service_pb2_grpc  # noqa: PLC0415
    from intelgraph.catalog.v1 import catalog_service_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(target.served.grpc) as channel:
        graph = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        people = access_service_pb2_grpc.AccessServiceStub(channel)
        money = billing_service_pb2_grpc.BillingServiceStub(channel)
        services = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        batch = analytics.ImportGraphRequest(
            entities=[analytics.Entity(id=f"e{i}", type="person") for i in range(20)],
            relationships=[
                analytics.Relationship(
                    id=f"r{i}", source_id=f"e{i % 20}", target_id=f"e{(i * 7) % 20}"
                )
                for i in range(40)
            ],
        )
        for relationship in batch.relationships:
            relationship.weight = 1.0
        later = _timestamp(datetime.now(UTC) + timedelta(hours=1))
        for tenant in (TENANT_A, TENANT_B):
            caller, approver = target.bearer(tenant), target.bearer(tenant, subject="approver")
            graph.ImportGraph(iter([batch]), metadata=caller)
            for _ in range(2):
                requested = people.RequestAccess(
                    access.RequestAccessRequest(scope=["catalog.read"], expires_at=later),
                    metadata=caller,
                )
                target.known.append(requested.access_request.id)
            people.DenyAccess(
                access.DenyAccessRequest(id=requested.access_request.id), metadata=approver
            )
            money.SetRollout(
                billing.SetRolloutRequest(tenant_id=str(tenant), stage=billing.ROLLOUT_STAGE_PILOT),
                metadata=caller,
            )
            money.SetPrice(
                billing.SetPriceRequest(
                    tenant_id=str(tenant),
                    meter="api.call",
                    unit_price=Money(minor_units=3, currency_code="USD"),
                ),
                metadata=caller,
            )
            target.known += seed_catalog(services, money, caller)
        for tenant in (TENANT_A, TENANT_B):  # the graph's results are computed in the background
            for _ in range(600):
                status = graph.GetGraphStatus(
                    analytics.GetGraphStatusRequest(), metadata=target.bearer(tenant)
                )
                if status.ready_revision >= 1:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"tenant {tenant}'s graph results were never ready")
        usage = billing.RecordUsageRequest(event_id="seed", meter="api.call", quantity=2)
        money.RecordUsage(usage, metadata=target.bearer(TENANT_A))
        invoices = money.ListInvoices(
            billing.ListInvoicesRequest(), metadata=target.bearer(TENANT_A)
        )
        target.known += [invoice.id for invoice in invoices.invoices]
        target.known += [line.id for invoice in invoices.invoices for line in invoice.lines]
    target.known.append(str(TENANT_A))


def seed_catalog(services: Any, money: Any, caller: tuple[tuple[str, str], ...]) -> list[str]:
    """Entities with an SLO and events, a saved scenario and a budget link; what they are called."""
    minute = _timestamp(datetime.now(UTC).replace(second=0, microsecond=0))
    slo = catalog.Slo(name="availability", objective=0.999)
    money.SetBudget(
        billing.SetBudgetRequest(
            budget=billing.Budget(
                id="hosting", monthly_amount=Money(minor_units=1000, currency_code="USD")
            )
        ),
        metadata=caller,
    )
    for name, needs in (("db", []), ("api", ["db"])):
        services.CreateEntity(
            catalog.CreateEntityRequest(
                entity=catalog.Entity(
                    kind=catalog.ENTITY_KIND_COMPONENT,
                    name=name,
                    dependencies=[catalog.Dependency(targets=needs)] if needs else [],
                    slos=[slo],
                )
            ),
            metadata=caller,
        )
    services.RecordSloEvents(
        catalog.RecordSloEventsRequest(
            entity="api",
            slo="availability",
            minutes=[catalog.MinuteEvents(minute=minute, good_events=9, total_events=10)],
        ),
        metadata=caller,
    )
    services.LinkBudget(
        catalog.LinkBudgetRequest(entity="api", budget_id="hosting"), metadata=caller
    )
    saved = services.SaveScenario(
        catalog.SaveScenarioRequest(
            scenario=catalog.Scenario(
                overrides=[catalog.EntityOverride(entity="db", availability=1.0)]
            )
        ),
        metadata=caller,
    )
    return ["api", "db", "availability", "hosting", saved.scenario.id]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("hostile")
    keys_dir = directory / "keys"
    keys.rotate(keys_dir, "EdDSA")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'store.db'}"
    else:
        if not POSTGRES_URL:
            pytest.skip(POSTGRES_SKIP_REASON)
        url = request.getfixturevalue("postgres_module_url")
    env = {"CONDUCTOR_DATABASE_URL": url, "CONDUCTOR_KEYS_DIR": str(keys_dir)}
    assert run_conductor(directory, "migrate", env=env).returncode == 0
    served = start_conductor(directory, "--grpc-port", "0", "--http-port", "0", **env)
    probe = HealthProbe(served.grpc)
    running = Target(served, url, keys_dir, probe)
    try:
        seed(running)
        running.tenant_b = tenant_rows(url, TENANT_B)
        probe.worst()  # start-up and seeding do not count
        yield running
    finally:
        probe.stop()
        served.close()


def _strategy(method: MethodDescriptor, known: list[str]) -> st.SearchStrategy[Any]:
    drawn = requests(method.input_type, known)
    return st.lists(drawn, min_size=1, max_size=3) if method.client_streaming else drawn


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
def test_no_request_breaks_the_server_or_reaches_another_tenant(
    target: Target, method: MethodDescriptor
) -> None:
    metadata = target.bearer(TENANT_A)
    codes: set[grpc.StatusCode] = set()
    with grpc.insecure_channel(target.served.grpc) as channel:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=IN_CI,
            suppress_health_check=list(HealthCheck),
        )
        @given(_strategy(method, target.known))
        def fuzz(request: Any) -> None:
            error = call(channel, method, request, metadata)
            codes.add(grpc.StatusCode.OK if error is None else error.code)

        fuzz()
    worst, failed = target.probe.worst()
    assert failed == 0, f"health checks failed while {method.name} was fuzzed"
    assert worst <= HEALTH_BOUND_S, f"health took {worst * 1000:.0f} ms during {method.name}"
    assert codes  # something was sent


def test_the_other_tenant_is_untouched(target: Target) -> None:
    """Run after the fuzzing (file order): tenant B's rows are exactly what was seeded."""
    assert tenant_rows(target.database_url, TENANT_B) == target.tenant_b


def _unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def malformed_tokens(target: Target) -> dict[str, str]:
    """Authorization values that must each be refused as UNAUTHENTICATED."""
    ring = keys.load(target.keys_dir)
    now = int(time.time())
    claims = {
        "iss": "intelgraph-conductor",
        "aud": "intelgraph",
        "sub": "mallory",
        "tenant": str(TENANT_A),
        "scopes": all_permissions(),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    key = ring.current

    def signed(changes: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        headers = {"kid": key.kid, **(headers or {})}
        return jwt.encode({**claims, **changes}, key.private_key, key.algorithm, headers)

    def unsigned(header: dict[str, Any], body: dict[str, Any] = claims) -> str:
        parts = (json.dumps(header).encode(), json.dumps(body).encode())
        return ".".join(_unpadded(part) for part in parts) + ".c2ln"

    stranger = keys.generate_key("EdDSA")
    forged = jwt.encode(claims, stranger.private_key, "EdDSA", {"kid": key.kid})
    return {
        "empty": "",
        "no_scheme": signed({}),
        "basic": "Basic YWxpY2U6c2VjcmV0",
        "bearer_only": "Bearer",
        "not_a_jwt": "Bearer not.a.jwt",
        "two_parts": "Bearer a.b",
        "kid_not_a_string": "Bearer " + unsigned({"alg": "EdDSA", "kid": 5}),
        "crit_header": "Bearer " + unsigned({"alg": "EdDSA", "kid": key.kid, "crit": ["exp"]}),
        "header_not_json": "Bearer " + _unpadded(b"{nope") + "." + _unpadded(b"{}") + ".c2ln",
        "alg_none": "Bearer " + unsigned({"alg": "none", "kid": key.kid})[:-4],
        "forged_signature": f"Bearer {forged}",
        "expired": "Bearer " + signed({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "absurd_exp": "Bearer " + signed({"exp": 10**20}),
        "wrong_audience": "Bearer " + signed({"aud": "someone-else"}),
        "tenant_not_a_uuid": "Bearer " + signed({"tenant": "acme"}),
        "scopes_not_a_list": "Bearer " + signed({"scopes": "admin.write"}),
        "nul_in_subject": "Bearer " + signed({"sub": "mal\x00lory"}),
    }


def _needs_a_token(method: MethodDescriptor) -> bool:
    rule = method.GetOptions().Extensions[authorization_pb2.authorization]
    return rule.WhichOneof("rule") != "public"


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
def test_every_malformed_token_is_unauthenticated_on_every_rpc(
    target: Target, method: MethodDescriptor
) -> None:
    request_class = message_factory.GetMessageClass(method.input_type)
    corpus = malformed_tokens(target)
    good = target.bearer(TENANT_A)[0]
    corpus_metadata: dict[str, tuple[tuple[str, str], ...]] = {
        name: (("authorization", value),) for name, value in corpus.items()
    }
    corpus_metadata["two_authorizations"] = (good, ("authorization", "Bearer x.y.z"))
    with grpc.insecure_channel(target.served.grpc) as channel:
        for name, metadata in corpus_metadata.items():
            refused = call(channel, method, request_class(), metadata)
            if not _needs_a_token(method):
                continue  # public: whatever the token, never INTERNAL (checked by call)
            assert refused is not None, f"{name} got through to {method.name}"
            assert refused.code is grpc.StatusCode.UNAUTHENTICATED, (name, refused.code)
            assert refused.reason.name.startswith(
                ("ERROR_REASON_TOKEN_", "ERROR_REASON_UNAUTHENTICATED")
            ), name


def test_every_malformed_token_is_unauthenticated_on_graphql(target: Target) -> None:
    facade = build_facade_schema(service.descriptor for service in all_services())
    fields = sorted({name for _, name in facade.roots})
    corpus = malformed_tokens(target)
    oversized = "Bearer " + "a" * (tokens.MAX_TOKEN_CHARS + 1)
    with httpx.Client(base_url=f"http://{target.served.http}", timeout=10) as client:
        for name, value in {**corpus, "oversized": oversized}.items():
            for root in fields:
                answer = client.post(
                    "/graphql",
                    json={"query": f"{{ {root} }}"},
                    headers={"authorization": value},
                )
                assert answer.status_code == 400, (name, root, answer.text)
                error = answer.json()["errors"][0]
                assert error["extensions"]["code"] == "UNAUTHENTICATED", (name, root, error)
        good = f"Bearer {target.token(TENANT_A, ['catalog.read'])}"
        doubled = client.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers=[("authorization", good), ("authorization", good)],
        )
        assert doubled.status_code == 400
        assert doubled.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
