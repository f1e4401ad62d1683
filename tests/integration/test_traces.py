"""Traces: one GraphQL call is one trace, from the HTTP request through gRPC to the database."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from intelgraph.analytics.v1 import analytics_service_pb2 as analytics
from intelgraph.catalog.v1 import catalog_service_pb2 as catalog
from intelgraph.catalog.v1 import catalog_service_pb2_grpc
from intelgraph.sdk import INSECURE, AsyncClient
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from servers.app import Platform
from servers.tracing import Tracing, sampler
from tests.support.serving import Minter, serving
from tests.support.webhooks import Webhook

pytestmark = pytest.mark.asyncio(loop_scope="module")

TENANT = uuid.UUID("5d1f0c3a-8b6e-4f2d-9a7c-1e3b5d7f9a2c")


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, exporter: InMemorySpanExporter
) -> AsyncIterator[Platform]:
    provider = TracerProvider(sampler=sampler(1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serving(
        tmp_path_factory.mktemp("traces"),
        tracing=Tracing(provider),
        services="catalog,analytics,access",
    ) as running:
        yield running
    provider.shutdown()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


def access_lines(caplog: pytest.LogCaptureFixture, call_id: str) -> list[dict[str, Any]]:
    return [
        record.msg
        for record in caplog.records
        if record.name == "conductor.access"
        and isinstance(record.msg, dict)
        and record.msg.get("request_id") == call_id
    ]


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id)


async def graphql(platform: Platform, query: str, call_id: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        response = await http.post(
            "/graphql",
            json={"query": query},
            headers={"authorization": f"Bearer {token}", "x-request-id": call_id},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == call_id
    body: dict[str, Any] = response.json()
    return body


async def ended(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    """The one span `name` once it has ended (waits up to 5 s).

    A server span ends just after its answer is sent: the caller can see the answer first.
    """
    async with asyncio.timeout(5):
        found = [span for span in exporter.get_finished_spans() if span.name == name]
        while not found:  # the exporter has no event to wait on
            await asyncio.sleep(0.01)
            found = [span for span in exporter.get_finished_spans() if span.name == name]
    return only(found, name)


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (found,) = [span for span in spans if span.name == name]
    return found


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert parent.context is not None
    return child.parent is not None and child.parent.span_id == parent.context.span_id


async def test_a_graphql_call_is_one_trace_from_http_to_the_database(
    platform: Platform, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conductor.access")
    token = Minter(platform.settings)(["catalog.read"], tenant=TENANT)
    body = await graphql(
        platform, "query Listing { entities { entities { name } } }", "tr-1", token
    )
    assert body["data"] == {"entities": {"entities": []}}
    finished = spans.get_finished_spans()
    http_span = only(finished, "POST /graphql")
    operation = only(finished, "query Listing")
    resolver = only(finished, "resolve entities")
    method = "/intelgraph.catalog.v1.CatalogService/ListEntities"
    (rpc_server,) = [s for s in finished if s.name == method and s.kind == SpanKind.SERVER]
    (rpc_client,) = [s for s in finished if s.name == method and s.kind == SpanKind.CLIENT]
    statements = [span for span in finished if "db.system" in attributes(span)]
    # One trace (no background query started one of its own), each span the child of the
    # one that made it: HTTP, the operation, its root field, the RPC's client then server
    # side, and the SQL the servicer ran.
    assert {hex_trace(span) for span in finished} == {hex_trace(http_span)}
    chain = [http_span, operation, resolver, rpc_client, rpc_server]
    for parent, child in itertools.pairwise(chain):
        assert is_child(child, parent), (parent.name, child.name)
    assert statements
    assert all(is_child(statement, rpc_server) for statement in statements)
    assert attributes(operation)["graphql.operation.name"] == "Listing"
    # The request id is on the spans that took it, and the log lines name the trace.
    assert attributes(http_span)["conductor.request_id"] == "tr-1"
    assert attributes(rpc_server)["conductor.request_id"] == "tr-1"
    lines = access_lines(caplog, "tr-1")
    assert sorted(line["event"] for line in lines) == ["http", "rpc"]
    assert {line["trace_id"] for line in lines} == {hex_trace(http_span)}


async def test_a_callers_trace_context_is_followed(
    platform: Platform, spans: InMemorySpanExporter
) -> None:
    token = Minter(platform.settings)(["catalog.read"], tenant=TENANT)
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    metadata = (
        ("authorization", f"Bearer {token}"),
        ("traceparent", f"00-{caller_trace}-{caller_span}-01"),
    )
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetEntity(catalog.GetEntityRequest(name="nobody"), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    server = await ended(spans, "/intelgraph.catalog.v1.CatalogService/GetEntity")
    assert hex_trace(server) == caller_trace
    assert server.parent is not None
    assert trace.format_span_id(server.parent.span_id) == caller_span
    assert attributes(server)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_an_analytics_run_is_a_span_of_its_rpc(
    platform: Platform, spans: InMemorySpanExporter
) -> None:
    tenant = uuid.uuid4()
    token = Minter(platform.settings)(["analytics.read", "analytics.write"], tenant=tenant)
    async with AsyncClient(platform.grpc_target, INSECURE, token=lambda: token) as client:
        await client.analytics.import_graph(
            iter(
                [
                    analytics.ImportGraphRequest(
                        entities=[analytics.Entity(id=name, type="person") for name in "abc"],
                        relationships=[
                            analytics.Relationship(id="r1", source_id="a", target_id="b", weight=1),
                            analytics.Relationship(id="r2", source_id="b", target_id="c", weight=1),
                        ],
                    )
                ]
            )
        )
        spans.clear()
        await client.analytics.run_pack(
            pack_id="analytics.neighborhood:v1",
            parameters=analytics.PackParameters(source_id="a"),
        )
    server = await ended(spans, "/intelgraph.analytics.v1.AnalyticsService/RunPack")
    run = only(spans.get_finished_spans(), "run analytics.neighborhood:v1")
    assert is_child(run, server)
    assert attributes(run)["analytics.entities"] == 3
    assert attributes(run)["analytics.relationships"] == 2


async def test_tracing_is_off_unless_configured(tmp_path: Path) -> None:
    async with serving(tmp_path, services="access") as plain:
        assert not plain.tracing.enabled
        assert isinstance(plain.tracing.tracer("x"), trace.NoOpTracer)


async def test_background_work_a_call_starts_carries_its_request_id_and_trace(
    platform: Platform, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conductor.analytics")
    tenant = uuid.uuid4()
    token = Minter(platform.settings)(["analytics.write"], tenant=tenant)
    async with AsyncClient(
        platform.grpc_target,
        INSECURE,
        token=lambda: token,
        metadata=lambda: [("x-request-id", "imp-1")],
    ) as client:
        await client.analytics.import_graph(
            iter([analytics.ImportGraphRequest(entities=[analytics.Entity(id="a", type="p")])])
        )
    # The results are computed after the import answered, by a task the import started.
    async with asyncio.timeout(10):
        done = [s for s in spans.get_finished_spans() if s.name == "materialize"]
        while not done:  # the exporter has no event to wait on
            await asyncio.sleep(0.02)
            done = [s for s in spans.get_finished_spans() if s.name == "materialize"]
    finished = spans.get_finished_spans()
    build = only(finished, "build snapshot")
    materialize = only(finished, "materialize")
    server = only(finished, "/intelgraph.analytics.v1.AnalyticsService/ImportGraph")
    assert is_child(materialize, server)
    assert is_child(build, materialize)
    (line,) = [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict)
        and record.msg["event"] == "analytics snapshot built"
        and record.msg["tenant"] == str(tenant)
    ]
    assert line["request_id"] == "imp-1"
    assert line["trace_id"] == hex_trace(server)
    assert (line["entities"], line["relationships"]) == (1, 0)


async def test_spans_are_exported_over_otlp_to_the_configured_collector(tmp_path: Path) -> None:
    collector = Webhook(decode=ExportTraceServiceRequest.FromString)
    async with collector as url:
        endpoint = url.removesuffix("/hook")
        async with serving(tmp_path, services="access", otlp_endpoint=endpoint) as exporting:
            assert exporting.tracing.enabled
            token = Minter(exporting.settings)(["access.read"], tenant=TENANT)
            async with AsyncClient(exporting.grpc_target, INSECURE, token=lambda: token) as sdk:
                await sdk.access.get_caller()
        # Stopping flushed the batch: one export request, as a collector receives it.
        (export,) = await collector.received(1)
    (resource_spans,) = export.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "intelgraph-conductor"
    names = {span.name for scope in resource_spans.scope_spans for span in scope.spans}
    assert "/intelgraph.access.v1.AccessService/GetCaller" in names


async def test_an_unsampled_call_names_no_trace_in_its_line(
    platform: Platform, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conductor.access")
    token = Minter(platform.settings)(["catalog.read"], tenant=TENANT)
    metadata = (
        ("authorization", f"Bearer {token}"),
        ("x-request-id", "unsampled-1"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00"),
    )
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        await stub.ListEntities(catalog.ListEntitiesRequest(), metadata=metadata)
    (line,) = access_lines(caplog, "unsampled-1")
    assert "trace_id" not in line
    assert spans.get_finished_spans() == ()
