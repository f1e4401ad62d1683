"""The GraphQL facade against a test-only proto service (tests/protos): schema generation,
resolution of every field kind, auth directive enforcement, error mapping, persisted
operations and limits."""

from __future__ import annotations

import base64
import importlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from intelgraph.sdk import INSECURE
from intelgraph.sdk.transport import async_interceptors, open_async_channel
from starlette.applications import Starlette
from starlette.routing import Route

from core.errors import DomainError, ErrorReason, status_code_of
from graphql import get_introspection_query
from interceptors import PolicyEngine, TokenVerifier, platform_chain
from interceptors.keys import KeyStore, load, rotate
from interceptors.tokens import InMemoryRevocations, mint
from servers.facade import (
    FacadeLimits,
    Gateway,
    GraphqlEndpoint,
    OperationRegistry,
    SchemaError,
    build_facade_schema,
    caller_token,
    executable_schema,
    operation_id,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _gadget_rpcs(channel: grpc.aio.Channel) -> Callable[[str], Callable[..., Any]]:
    """What `AsyncClient.by_path` gives the gateway, for the test's own Gadget contract.

    The SDK has methods for the platform's contracts only; these are built the same way
    (the SDK's interceptors on the channel: caller's token, deadline, typed errors).
    """

    def by_path(path: str) -> Callable[..., Any]:
        method = descriptor_pool.Default().FindMethodByName(path[1:].replace("/", "."))
        codec: dict[str, Any] = {
            "request_serializer": GetMessageClass(method.input_type).SerializeToString,
            "response_deserializer": GetMessageClass(method.output_type).FromString,
        }
        if not method.server_streaming:
            return channel.unary_unary(path, **codec)
        stream = channel.unary_stream(path, **codec)

        async def streamed(request: Any) -> AsyncIterator[Any]:
            async for response in stream(request):
                yield response

        return streamed

    return by_path


ROOT = Path(__file__).resolve().parents[2]
TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")
ISSUER, AUDIENCE = "test-issuer", "test-audience"


@pytest.fixture(scope="module")
def gadgets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The test service's generated modules, compiled from tests/protos for this run."""
    out = tmp_path_factory.mktemp("gadget_gen")
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{ROOT / 'tests' / 'protos'}", f"-I{ROOT / 'proto'}",
            f"--python_out={out}", f"--grpc_python_out={out}",
            "intelgraph/facadetest/v1/gadget_service.proto",
        ],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(out))
    try:
        yield (
            importlib.import_module("intelgraph.facadetest.v1.gadget_service_pb2"),
            importlib.import_module("intelgraph.facadetest.v1.gadget_service_pb2_grpc"),
        )
    finally:
        sys.path.remove(str(out))


def _service(pb2: ModuleType) -> Any:
    return pb2.DESCRIPTOR.services_by_name["GadgetService"]


# -- schema generation -------------------------------------------------------------


async def test_the_sdl_maps_every_kind_of_field(gadgets: tuple[ModuleType, ModuleType]) -> None:
    sdl = build_facade_schema([_service(gadgets[0])]).sdl
    expected_gadget = """type Gadget {
  id: ID!
  name: String!
  color: Color!
  madeAt: DateTime
  weightMicrograms: Int64!
  labels: [GadgetLabelsEntry!]!
  battery: Battery
  mainsVoltage: String
  firmware: Base64!
  rating: Int
  tags: [String!]!
  serial: Int64!
  manual: Source
  spares: [GadgetSparesEntry!]!
}"""
    assert expected_gadget in sdl
    assert "type GadgetSparesEntry {\n  key: String!\n  value: Battery\n}" in sdl
    assert "enum Color {\n  UNSPECIFIED\n  RED\n  GREEN\n}" in sdl
    assert "input SourceInput @oneOf {\n  url: String\n  blob: Base64\n}" in sdl
    assert "input GadgetInput {\n  id: ID\n" in sdl
    assert "  labels: [GadgetInputLabelsEntryInput!]\n" in sdl


async def test_rpcs_become_queries_and_mutations_with_their_authorization(
    gadgets: tuple[ModuleType, ModuleType],
) -> None:
    facade = build_facade_schema([_service(gadgets[0])])
    assert 'gadget(id: ID!): GetGadgetResponse @auth(abac: "gadget.read")' in facade.sdl
    assert 'gadgets(count: Int): [ListGadgetsResponse!] @auth(abac: "gadget.read")' in facade.sdl
    assert (
        "upsertGadget(gadget: GadgetInput!, "
        "annotations: [UpsertGadgetRequestAnnotationsEntryInput!])"
        ': UpsertGadgetResponse @auth(abac: "gadget.write")'
    ) in facade.sdl
    assert "breakGadget(reason: String): BreakGadgetResponse\n" in facade.sdl
    assert "pingGadget: PingGadgetResponse @public" in facade.sdl
    assert sorted(facade.roots) == [
        ("mutation", "breakGadget"),
        ("mutation", "upsertGadget"),
        ("query", "gadget"),
        ("query", "gadgets"),
        ("query", "pingGadget"),
    ]


async def test_client_streaming_rpcs_are_left_out_and_the_schema_says_so(
    gadgets: tuple[ModuleType, ModuleType],
) -> None:
    facade = build_facade_schema([_service(gadgets[0])])
    assert "uploadGadgets" not in facade.sdl
    assert facade.skipped == ["intelgraph.facadetest.v1.GadgetService/UploadGadgets"]
    assert "call them over gRPC: intelgraph.facadetest.v1.GadgetService/UploadGadgets." in (
        facade.sdl
    )


async def test_two_rpcs_mapping_to_one_field_are_refused(
    gadgets: tuple[ModuleType, ModuleType],
) -> None:
    with pytest.raises(SchemaError, match=r"would both be query\.gadget"):
        build_facade_schema([_service(gadgets[0]), _service(gadgets[0])])


# -- a running facade over the test service -----------------------------------------


class Gadgets:
    """The test service: stores gadgets in memory, echoes them, fails on request."""

    def __init__(self, pb2: ModuleType) -> None:
        self.pb2 = pb2
        self.stored: dict[str, Any] = {}
        self.calls = 0

    async def GetGadget(self, request: Any, context: Any) -> Any:
        self.calls += 1
        return self.pb2.GetGadgetResponse(gadget=self.stored.get(request.id))

    async def ListGadgets(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.calls += 1
        for index in range(request.count):
            yield self.pb2.ListGadgetsResponse(gadget=self.pb2.Gadget(id=f"g-{index}"))

    async def UpsertGadget(self, request: Any, context: Any) -> Any:
        self.calls += 1
        self.stored[request.gadget.id] = request.gadget
        return self.pb2.UpsertGadgetResponse(
            gadget=request.gadget, annotations=dict(request.annotations)
        )

    async def BreakGadget(self, request: Any, context: Any) -> Any:
        reason = ErrorReason.Value(request.reason)
        (error_class,) = [
            cls for cls in DomainError.__subclasses__() if cls.status is status_code_of(reason)
        ][:1]
        raise error_class(f"broken: {request.reason}", reason=reason)

    async def PingGadget(self, request: Any, context: Any) -> Any:
        return self.pb2.PingGadgetResponse(pong="pong")

    async def UploadGadgets(self, request_iterator: Any, context: Any) -> Any:
        return self.pb2.UploadGadgetsResponse(received=len([r async for r in request_iterator]))


@dataclass
class Facade:
    client: httpx.AsyncClient
    servicer: Gadgets
    operations: OperationRegistry
    keys_dir: Path
    limits: FacadeLimits
    endpoint_parts: tuple[Any, ...]

    def token(self, scopes: list[str]) -> dict[str, str]:
        token = mint(
            load(self.keys_dir),
            issuer=ISSUER,
            audience=AUDIENCE,
            subject="alice",
            tenant=TENANT,
            scopes=scopes,
            ttl_s=600,
        )
        return {"authorization": f"Bearer {token}"}

    async def post(self, body: dict[str, Any], scopes: list[str] | None = None) -> httpx.Response:
        headers = self.token(scopes) if scopes is not None else {}
        return await self.client.post("/graphql", json=body, headers=headers)

    def with_limits(self, **changes: Any) -> httpx.AsyncClient:
        """A client for the same facade with other limits (e.g. production)."""
        schema, operations, verifier, engine = self.endpoint_parts
        endpoint = GraphqlEndpoint(
            schema, operations, verifier, engine, replace(self.limits, **changes)
        )
        app = Starlette(routes=[Route("/graphql", endpoint.handle, methods=["GET", "POST"])])
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facade")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def facade(
    gadgets: tuple[ModuleType, ModuleType], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Facade]:
    pb2, pb2_grpc = gadgets
    keys_dir = tmp_path_factory.mktemp("keys")
    rotate(keys_dir, "EdDSA")
    verifier = TokenVerifier(
        KeyStore(keys_dir),
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_s=5,
        revocations=InMemoryRevocations(),
    )
    engine = PolicyEngine()
    servicer = Gadgets(pb2)
    server = grpc.aio.server(interceptors=[platform_chain(verifier, engine)])
    pb2_grpc.add_GadgetServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    operations_dir = tmp_path_factory.mktemp("operations")
    (operations_dir / "Ping.graphql").write_text("query Ping { pingGadget { pong } }\n")
    (operations_dir / "Broken.graphql").write_text("query Broken { nope }\n")
    channel = open_async_channel(
        f"127.0.0.1:{port}", INSECURE, async_interceptors(caller_token), retry=None
    )
    facade_schema = build_facade_schema([_service(pb2)])
    gateway = Gateway(_gadget_rpcs(channel), engine, max_stream_items=5)
    schema = executable_schema(facade_schema, gateway)
    operations = OperationRegistry(schema, operations_dir)
    limits = FacadeLimits(
        production=False,
        auto_register=False,
        max_document_bytes=4096,
        max_depth=6,
        max_fields=60,
    )
    endpoint = GraphqlEndpoint(schema, operations, verifier, engine, limits)
    app = Starlette(routes=[Route("/graphql", endpoint.handle, methods=["GET", "POST"])])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://facade"
    ) as client:
        yield Facade(
            client, servicer, operations, keys_dir, limits, (schema, operations, verifier, engine)
        )
    await channel.close()
    await server.stop(0)


UPSERT = """
mutation Upsert($gadget: GadgetInput!, $annotations: [UpsertGadgetRequestAnnotationsEntryInput!]) {
  upsertGadget(gadget: $gadget, annotations: $annotations) {
    gadget {
      id name color madeAt weightMicrograms firmware rating tags serial
      labels { key value }
      battery { cells }
      mainsVoltage
      manual { url blob }
      spares { key value { cells } }
    }
    annotations { key value }
  }
}
"""
GADGET = {
    "id": "g-1",
    "name": "widget",
    "color": "GREEN",
    "madeAt": "2026-05-27T09:30:00Z",
    "weightMicrograms": "9007199254740993",  # beyond a JavaScript double's exact range
    "firmware": base64.b64encode(b"\x00\xffboot").decode(),
    "rating": 4,
    "tags": ["new", "shiny"],
    "serial": "4294967295",
    "labels": [{"key": "team", "value": "edge"}],
    "battery": {"cells": 3},
    "manual": {"url": "https://example.invalid/manual"},
    "spares": [{"key": "left", "value": {"cells": 2}}],
}


async def test_every_field_kind_round_trips(facade: Facade) -> None:
    response = await facade.post(
        {
            "query": UPSERT,
            "variables": {"gadget": GADGET, "annotations": [{"key": "by", "value": "test"}]},
        },
        ["gadget.write"],
    )
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    echoed = body["data"]["upsertGadget"]
    assert echoed["annotations"] == [{"key": "by", "value": "test"}]
    assert echoed["gadget"] == {
        **GADGET,
        "mainsVoltage": None,
        "manual": {"url": "https://example.invalid/manual", "blob": None},
    }
    stored = facade.servicer.stored["g-1"]
    assert stored.weight_micrograms == 9007199254740993
    assert stored.made_at.seconds == 1779874200
    assert stored.WhichOneof("power") == "battery"


async def test_server_streaming_reads_collect_into_a_bounded_list(facade: Facade) -> None:
    query = "query($n: Int) { gadgets(count: $n) { gadget { id } } }"
    ok = (await facade.post({"query": query, "variables": {"n": 3}}, ["gadget.read"])).json()
    assert ok["data"]["gadgets"] == [{"gadget": {"id": f"g-{i}"}} for i in range(3)]
    too_long = (await facade.post({"query": query, "variables": {"n": 9}}, ["gadget.read"])).json()
    assert too_long["data"] == {"gadgets": None}
    assert too_long["errors"][0]["extensions"]["code"] == "RESOURCE_EXHAUSTED"


async def test_auth_directives_are_enforced_before_the_call(facade: Facade) -> None:
    query = '{ gadget(id: "g-1") { gadget { id } } }'
    before = facade.servicer.calls
    anonymous = (await facade.post({"query": query})).json()
    assert anonymous["errors"][0]["extensions"] == {
        "code": "UNAUTHENTICATED",
        "reason": "ERROR_REASON_TOKEN_MISSING",
    }
    denied = (await facade.post({"query": query}, ["gadget.write"])).json()
    assert denied["errors"][0]["extensions"] == {
        "code": "PERMISSION_DENIED",
        "reason": "ERROR_REASON_PERMISSION_DENIED",
        "permission": "gadget.read",
        "denied": "scope_missing",
    }
    assert facade.servicer.calls == before, "a refused field must not reach the service"
    allowed = (await facade.post({"query": query}, ["gadget.read"])).json()
    assert "errors" not in allowed
    public = (await facade.post({"query": "{ pingGadget { pong } }"})).json()
    assert public == {"data": {"pingGadget": {"pong": "pong"}}}


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("ERROR_REASON_NOT_FOUND", "NOT_FOUND"),
        ("ERROR_REASON_FAILED_PRECONDITION", "FAILED_PRECONDITION"),
        ("ERROR_REASON_RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"),
    ],
)
async def test_grpc_errors_become_graphql_errors_with_code_and_reason(
    facade: Facade, reason: str, code: str
) -> None:
    query = "mutation($r: String) { breakGadget(reason: $r) { __typename } }"
    body = (await facade.post({"query": query, "variables": {"r": reason}}, [])).json()
    assert body["data"] == {"breakGadget": None}
    (error,) = body["errors"]
    assert error["message"] == f"broken: {reason}"
    assert error["path"] == ["breakGadget"]
    assert error["extensions"] == {"code": code, "reason": reason}


async def test_a_bad_token_refuses_the_whole_request(facade: Facade) -> None:
    response = await facade.client.post(
        "/graphql",
        json={"query": "{ pingGadget { pong } }"},
        headers={"authorization": "Bearer not.a.token"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {
        "code": "UNAUTHENTICATED",
        "reason": "ERROR_REASON_TOKEN_MALFORMED",
    }


# -- persisted operations and limits -----------------------------------------------


async def test_committed_operations_register_and_broken_ones_are_reported(facade: Facade) -> None:
    ids = {operation.name: operation.id for operation in facade.operations}
    assert ids == {"Ping": operation_id("query Ping { pingGadget { pong } }\n")}
    assert facade.operations.problems == [
        "Broken.graphql: Cannot query field 'nope' on type 'Query'."
    ]


async def test_persisted_operations_run_by_id_over_post_and_get(facade: Facade) -> None:
    (ping,) = list(facade.operations)
    by_id = (await facade.post({"id": ping.id})).json()
    assert by_id == {"data": {"pingGadget": {"pong": "pong"}}}
    apq = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": ping.id}}}
    assert (await facade.post(apq)).json() == by_id
    got = await facade.client.get("/graphql", params={"id": ping.id})
    assert got.json() == by_id


async def test_production_runs_only_persisted_operations(facade: Facade) -> None:
    async with facade.with_limits(production=True) as production:
        (ping,) = list(facade.operations)
        assert (await production.post("/graphql", json={"id": ping.id})).status_code == 200
        # The exact text of a registered document counts as that operation.
        by_text = await production.post("/graphql", json={"query": ping.document})
        assert by_text.json() == {"data": {"pingGadget": {"pong": "pong"}}}
        # So does the same document laid out differently (as client libraries print it).
        relaid = "query Ping {\n  pingGadget {\n    pong\n  }\n}"
        assert (await production.post("/graphql", json={"query": relaid})).status_code == 200
        ad_hoc = await production.post("/graphql", json={"query": "{ pingGadget { pong } }"})
        assert ad_hoc.status_code == 400
        assert ad_hoc.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
        admin = await production.post(
            "/graphql",
            json={"query": "{ pingGadget { pong } }"},
            headers=facade.token(["admin.write"]),
        )
        assert admin.json() == {"data": {"pingGadget": {"pong": "pong"}}}
        graphiql = await production.get("/graphql", headers={"accept": "text/html"})
        assert graphiql.status_code == 404


async def test_graphiql_is_served_in_development(facade: Facade) -> None:
    page = await facade.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "GraphiQL" in page.text


async def test_automatic_registration_is_opt_in(facade: Facade) -> None:
    document = "query Auto { pingGadget { pong } }"
    identifier = operation_id(document)
    request = {"query": document, "id": identifier}
    refused = await facade.post(request)
    assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    async with facade.with_limits(auto_register=True, production=True) as registering:
        assert (await registering.post("/graphql", json=request)).status_code == 200
        assert (await registering.post("/graphql", json={"id": identifier})).status_code == 200
        forged = {"query": "{ pingGadget { pong } }", "id": "0" * 64}
        bad = await registering.post("/graphql", json=forged)
        assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def _nested(depth: int) -> str:
    inner = "pong"
    for _ in range(depth):
        inner = f"... on PingGadgetResponse {{ {inner} }}"
    return "{ pingGadget { " + inner + " } }"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": "f" * 64}, "PERSISTED_QUERY_NOT_FOUND"),
        ({"query": "{ pingGadget { pong "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "{ pingGadget { pong } }", "variables": [1, 2]}, "BAD_USER_INPUT"),
        ({"query": "{ pingGadget { pong } }", "operationName": "Missing"}, "BAD_USER_INPUT"),
        ({"query": "# " + "x" * 5000 + "\n{ pingGadget { pong } }"}, "DOCUMENT_TOO_LARGE"),
        (
            {"query": "{ " + " ".join(f"a{i}: pingGadget {{ pong }}" for i in range(40)) + " }"},
            "QUERY_TOO_COMPLEX",
        ),
        ({"query": '{ gadget(id: "x") { gadget { battery { cells } manual { url } } } }'}, None),
        ({}, "BAD_REQUEST"),
    ],
    ids=[
        "unknown-id",
        "unparsable",
        "invalid",
        "variables-not-an-object",
        "unknown-operation",
        "oversized",
        "too-many-fields",
        "within-limits",
        "empty",
    ],
)
async def test_bad_requests_get_a_clear_code_never_a_500(
    facade: Facade, body: dict[str, Any], code: str | None
) -> None:
    response = await facade.post(body, ["gadget.read"])
    if code is None:
        assert response.status_code == 200
        return
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == code


async def test_deep_documents_are_refused(facade: Facade) -> None:
    query = """
    query Deep { gadget(id: "g") { gadget { spares { value { cells } } } } }
    """
    assert (await facade.post({"query": query}, ["gadget.read"])).status_code == 200
    deeper = (
        "fragment A on Gadget { spares { value { cells } } }\n"
        'query { gadget(id: "g") { gadget { spares { key } ...A } } }'
    )
    assert (await facade.post({"query": deeper}, ["gadget.read"])).status_code == 200
    too_deep = await facade.client.post(
        "/graphql",
        json={
            "query": 'query { gadget(id: "g") '
            "{ gadget { manual { url } spares { value { cells } key } } } }"
        },
    )
    assert too_deep.status_code == 200  # depth 5 of 6
    limited = facade.with_limits(max_depth=3)
    async with limited:
        refused = await limited.post("/graphql", json={"query": query})
    assert refused.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"


async def test_introspection_may_nest_as_deep_as_graphiql_asks_and_no_deeper(
    facade: Facade,
) -> None:
    standard = get_introspection_query(descriptions=True)
    async with facade.with_limits(max_depth=3) as limited:
        answered = await limited.post("/graphql", json={"query": standard})
        assert answered.status_code == 200, answered.text
        assert answered.json()["data"]["__schema"]["queryType"]["name"] == "Query"
        nested = "ofType { " * 20 + "name" + " }" * 20
        abusive = await limited.post(
            "/graphql", json={"query": f'{{ __type(name: "Query") {{ {nested} }} }}'}
        )
        mixed = await limited.post(
            "/graphql",
            json={"query": '{ __typename gadget(id: "g") { gadget { spares { key } } } }'},
        )
    assert abusive.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"
    assert mixed.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"


async def test_fragment_bombs_are_measured_without_expanding_them(facade: Facade) -> None:
    fragments = ["fragment F0 on PingGadgetResponse { pong }"]
    for level in range(1, 40):
        fragments.append(
            f"fragment F{level} on PingGadgetResponse {{ ...F{level - 1} ...F{level - 1} }}"
        )
    query = "\n".join(fragments) + "\n{ pingGadget { ...F39 } }"
    response = await facade.post({"query": query})
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_malformed_variables_are_bad_user_input(facade: Facade) -> None:
    query = "query($id: ID!) { gadget(id: $id) { gadget { id } } }"
    wrong = await facade.post({"query": query, "variables": {"id": {"no": 1}}}, ["gadget.read"])
    body = wrong.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad_time = {"gadget": {**GADGET, "madeAt": "yesterday"}}
    timed = (await facade.post({"query": UPSERT, "variables": bad_time}, ["gadget.write"])).json()
    assert timed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    both = {"gadget": {**GADGET, "manual": {"url": "u", "blob": "AA=="}}}
    oneof = (await facade.post({"query": UPSERT, "variables": both}, ["gadget.write"])).json()
    assert oneof["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_mutations_are_not_sent_with_get(facade: Facade) -> None:
    response = await facade.client.get(
        "/graphql", params={"query": 'mutation { breakGadget(reason: "x") { __typename } }'}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
