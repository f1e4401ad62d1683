"""Error mapping: every reason reaches the caller with its status and `ErrorInfo`, on every
RPC kind, over sync and async clients; unknown failures leak nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from intelgraph.common.v1 import errors_pb2
from intelgraph.rag.v1 import rag_service_pb2 as rag
from intelgraph.rag.v1 import rag_service_pb2_grpc
from intelgraph.sdk import ConductorError, ErrorReason, from_grpc_error
from prometheus_client import CollectorRegistry

from core import errors
from interceptors import ErrorMappingInterceptor, InterceptorChain, MetricsInterceptor
from interceptors.metrics import RPC_STATS, RpcStatsCollector

WIRE_REASONS: list[errors.ReasonValue] = [
    errors.ErrorReason.ValueType(value.number)
    for value in errors_pb2.ErrorReason.DESCRIPTOR.values
    if value.number != ErrorReason.ERROR_REASON_UNSPECIFIED
]
DOMAIN_ERRORS: list[type[errors.DomainError]] = [
    errors.DomainError,
    *errors.DomainError.__subclasses__(),
]
SECRET = "password=hunter2 at /srv/conductor/secret.py"


def error_for(reason: errors.ReasonValue) -> errors.DomainError:
    """The domain error class of `reason`'s status, raised with `reason`."""
    status = errors.status_code_of(reason)
    (error_class,) = [cls for cls in DOMAIN_ERRORS if cls.status is status]
    message = f"scripted {errors.reason_name(reason)}"
    if error_class is errors.InvalidArgument:
        return errors.InvalidArgument(message, field="upload_id", reason=reason)
    return error_class(message, reason=reason, metadata={"script": "yes"})


def run_script(script: str) -> None:
    """Raise what `script` asks for; return when it says "ok"."""
    if script == "ok":
        return
    if script == "crash":
        raise RuntimeError(SECRET)
    raise error_for(errors.ErrorReason.Value(script))


class ScriptedRag(rag_service_pb2_grpc.RagServiceServicer):
    """Rag RPCs of each kind that fail as their request says."""

    async def GetUploadStatus(self, request: Any, context: Any) -> Any:
        run_script(request.upload_id)
        return rag.GetUploadStatusResponse(status=rag.UploadStatus(upload_id="ok"))

    async def UploadDocument(self, request_iterator: Any, context: Any) -> Any:
        parts = [part async for part in request_iterator]
        run_script(parts[0].metadata.upload_id)
        return rag.UploadDocumentResponse(status=rag.UploadStatus(offset=len(parts)))

    async def ExportDocument(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield rag.ExportDocumentResponse(offset=0, data=b"first chunk")
        run_script(request.document_id)
        yield rag.ExportDocumentResponse(offset=11, data=b"second chunk")

    async def ListChunks(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "aborted by the servicer itself")


@pytest.fixture
async def rag_target() -> AsyncIterator[str]:
    chain = InterceptorChain([ErrorMappingInterceptor(), MetricsInterceptor()])
    server = grpc.aio.server(interceptors=[chain])
    rag_service_pb2_grpc.add_RagServiceServicer_to_server(
        ScriptedRag(),  # type: ignore[abstract] # unbuilt RPCs come from the generated base
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


Call = Callable[[str, str], Awaitable[list[Any]]]


def _requests(script: str) -> list[Any]:
    return [
        rag.UploadDocumentRequest(
            metadata=rag.UploadMetadata(upload_id=script, sha256="0" * 64, size_bytes=1)
        ),
        rag.UploadDocumentRequest(chunk=rag.UploadChunk(offset=0, data=b"x")),
    ]


@pytest.fixture(params=["async", "sync"])
async def call(request: pytest.FixtureRequest, rag_target: str) -> AsyncIterator[Call]:
    """call(kind, script) -> responses; raises ConductorError. Over an async or a sync client."""
    if request.param == "async":
        async with grpc.aio.insecure_channel(rag_target) as channel:
            stub = rag_service_pb2_grpc.RagServiceStub(channel)

            async def call_async(kind: str, script: str) -> list[Any]:
                try:
                    if kind == "unary":
                        return [
                            await stub.GetUploadStatus(rag.GetUploadStatusRequest(upload_id=script))
                        ]
                    if kind == "client_stream":
                        return [await stub.UploadDocument(iter(_requests(script)))]
                    responses = stub.ExportDocument(
                        rag.ExportDocumentRequest(document_id=script, purpose="support")
                    )
                    return [response async for response in responses]
                except grpc.aio.AioRpcError as error:
                    raise from_grpc_error(error) from None

            yield call_async
        return

    with grpc.insecure_channel(rag_target) as sync_channel:
        sync_stub = rag_service_pb2_grpc.RagServiceStub(sync_channel)

        def call_sync(kind: str, script: str) -> list[Any]:
            try:
                if kind == "unary":
                    return [sync_stub.GetUploadStatus(rag.GetUploadStatusRequest(upload_id=script))]
                if kind == "client_stream":
                    return [sync_stub.UploadDocument(iter(_requests(script)))]
                return list(
                    sync_stub.ExportDocument(
                        rag.ExportDocumentRequest(document_id=script, purpose="support")
                    )
                )
            except grpc.RpcError as error:
                raise from_grpc_error(error) from None

        async def in_thread(kind: str, script: str) -> list[Any]:
            # The server shares this event loop: block a thread, not the loop.
            return await asyncio.to_thread(call_sync, kind, script)

        yield in_thread


KINDS = ["unary", "client_stream", "server_stream"]


@pytest.mark.parametrize("kind", KINDS)
async def test_successful_calls_pass_through(call: Call, kind: str) -> None:
    responses = await call(kind, "ok")
    assert len(responses) == (2 if kind == "server_stream" else 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reason", WIRE_REASONS, ids=errors.reason_name)
async def test_every_reason_arrives_with_its_declared_status(
    call: Call, kind: str, reason: errors.ReasonValue
) -> None:
    with pytest.raises(ConductorError) as raised:
        await call(kind, errors.reason_name(reason))
    error = raised.value
    assert error.code is errors.status_code_of(reason)
    assert isinstance(error.reason, ErrorReason)
    assert error.reason.name == errors.reason_name(reason)
    assert error.details == f"scripted {errors.reason_name(reason)}"
    expected_metadata = (
        {"field": "upload_id"}
        if error.code is grpc.StatusCode.INVALID_ARGUMENT
        else {"script": "yes"}
    )
    assert error.metadata == expected_metadata
    assert type(error).status in {error.code, None}


@pytest.mark.parametrize("kind", KINDS)
async def test_unknown_failures_become_internal_without_internals(
    call: Call, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(ConductorError) as raised:
        await call(kind, "crash")
    error = raised.value
    assert error.code is grpc.StatusCode.INTERNAL
    assert error.reason == ErrorReason.ERROR_REASON_INTERNAL
    incident = error.metadata["incident"]
    assert error.details == f"internal error (incident {incident})"
    assert "hunter2" not in str(error)
    assert "secret.py" not in str(error)
    # Operators find the real failure in the log, under the same incident id.
    logged = [r for r in caplog.records if incident in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert SECRET in str(logged[0].exc_info[1])


async def test_a_servicer_abort_keeps_its_own_status(rag_target: str) -> None:
    async with grpc.aio.insecure_channel(rag_target) as channel:
        stub = rag_service_pb2_grpc.RagServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListChunks(rag.ListChunksRequest())
    assert raised.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert raised.value.details() == "aborted by the servicer itself"


def test_every_wire_reason_has_a_domain_error_class() -> None:
    for reason in WIRE_REASONS:
        assert error_for(reason).status_code is errors.status_code_of(reason)


def test_a_reason_cannot_travel_with_another_status() -> None:
    with pytest.raises(ValueError, match="declared as PERMISSION_DENIED, not NOT_FOUND"):
        errors.NotFound("x", reason=errors.ErrorReason.ERROR_REASON_PERMISSION_DENIED)


#: The metrics as a scrape sees them, whichever other tests registered collectors.
SCRAPED = CollectorRegistry()
SCRAPED.register(RpcStatsCollector(RPC_STATS))


def _handled(method: str, kind: str, code: str) -> float:
    value = SCRAPED.get_sample_value(
        "grpc_server_handled_total",
        {
            "grpc_type": kind,
            "grpc_service": "intelgraph.rag.v1.RagService",
            "grpc_method": method,
            "grpc_code": code,
        },
    )
    return value or 0.0


async def _counted(method: str, kind: str, code: str, expected: float) -> float:
    """The count once it reaches `expected` (or after 5 s): the server records a call's
    status as the call's task ends, which may be just after the client has it."""
    for _ in range(500):
        if _handled(method, kind, code) >= expected:
            break
        await asyncio.sleep(0.01)
    return _handled(method, kind, code)


async def test_metrics_count_each_call_under_its_final_status(call: Call) -> None:
    cases = [
        ("unary", "GetUploadStatus", "unary", "ok", "OK"),
        ("unary", "GetUploadStatus", "unary", "ERROR_REASON_NOT_FOUND", "NOT_FOUND"),
        ("unary", "GetUploadStatus", "unary", "crash", "INTERNAL"),
        ("client_stream", "UploadDocument", "client_stream", "ERROR_REASON_CONFLICT", "ABORTED"),
        ("server_stream", "ExportDocument", "server_stream", "ok", "OK"),
        ("server_stream", "ExportDocument", "server_stream", "crash", "INTERNAL"),
    ]
    for kind, method, grpc_type, script, code in cases:
        before = _handled(method, grpc_type, code)
        with contextlib.suppress(ConductorError):
            await call(kind, script)
        assert await _counted(method, grpc_type, code, before + 1) == before + 1, (method, script)


async def test_metrics_see_a_servicer_abort(rag_target: str) -> None:
    before = _handled("ListChunks", "unary", "OUT_OF_RANGE")
    async with grpc.aio.insecure_channel(rag_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await rag_service_pb2_grpc.RagServiceStub(channel).ListChunks(rag.ListChunksRequest())
    assert await _counted("ListChunks", "unary", "OUT_OF_RANGE", before + 1) == before + 1


@pytest.mark.parametrize("kind", ["unary", "client_stream", "server_stream"])
async def test_a_request_that_is_not_a_valid_message_is_invalid_argument(
    rag_target: str, kind: str
) -> None:
    """grpc answered UNKNOWN with the parser's own message before the chain parsed requests."""
    method = {
        "unary": "GetUploadStatus",
        "client_stream": "UploadDocument",
        "server_stream": "ExportDocument",
    }[kind]
    path = f"/intelgraph.rag.v1.RagService/{method}"
    garbage = b"\x0a\x03\xff\xfe\xfd"  # field 1, a string whose bytes are not UTF-8

    def raw(data: bytes) -> bytes:
        return data

    options = {"request_serializer": raw, "response_deserializer": raw}

    async def send(channel: grpc.aio.Channel) -> None:
        if kind == "unary":
            await channel.unary_unary(path, **options)(garbage)
        elif kind == "client_stream":
            await channel.stream_unary(path, **options)(iter([garbage]))
        else:
            [_ async for _ in channel.unary_stream(path, **options)(garbage)]

    async with grpc.aio.insecure_channel(rag_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await send(channel)
    error = from_grpc_error(raised.value)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata == {"field": "request"}
    assert "UTF-8" not in error.details
