"""The SDK's client-side helpers, without a server: token refresh, stream batching, retries."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from intelgraph.sdk import (
    ErrorReason,
    RefreshingToken,
    Retry,
    analytics,
    bearer_token,
    from_grpc_error,
    rag,
)
from intelgraph.sdk.services import RETRYABLE_METHODS
from intelgraph.sdk.streams import Source, batches, file_parts, write_data
from intelgraph.sdk.transport import expires_at

pytestmark = pytest.mark.unit


def _jwt(exp: float) -> str:
    """A JWT-shaped token with this `exp` (unsigned: the SDK only schedules by it)."""

    def part(claims: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    return f"{part({'alg': 'EdDSA'})}.{part({'exp': exp, 'sub': 'alice'})}.c2ln"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_refreshing_token_is_fetched_again_only_near_its_expiry() -> None:
    clock = Clock()
    fetched: list[str] = []

    def fetch() -> str:
        fetched.append(_jwt(clock.now + 300))
        return fetched[-1]

    source = RefreshingToken(fetch, margin_s=30, clock=clock)
    first = source()
    clock.now += 269
    assert source() == first
    assert len(fetched) == 1
    clock.now += 1  # 30 s before exp
    second = source()
    assert second != first
    assert len(fetched) == 2
    assert expires_at(second) == clock.now + 300


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", f"x.{base64.b64encode(b'[]').decode()}.y"])
def test_a_token_without_exp_cannot_be_scheduled(token: str) -> None:
    with pytest.raises(ValueError, match="exp"):
        expires_at(token)


@pytest.mark.parametrize("token", ["", " abc", "abc\n"])
def test_a_static_token_is_a_clean_string(token: str) -> None:
    with pytest.raises(ValueError, match="bearer token"):
        bearer_token(token)


def test_uploads_are_batched_within_the_contract_bounds() -> None:
    entities = (analytics.Entity(id=f"e{i}", type="t") for i in range(12))
    relationships = [analytics.Relationship(id="r", source_id="e0", target_id="e1")]
    sent = list(
        batches(
            analytics.ImportGraphRequest,
            {"entities": (entities, 5), "relationships": (relationships, 5)},
        )
    )
    assert [(len(b.entities), len(b.relationships)) for b in sent] == [
        (5, 0),
        (5, 0),
        (2, 0),
        (0, 1),
    ]
    assert [e.id for b in sent for e in b.entities] == [f"e{i}" for i in range(12)]


@pytest.mark.parametrize("kind", ["bytes", "path", "file"])
def test_a_file_upload_sends_its_head_then_chunks_at_their_offsets(
    kind: str, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    path = tmp_path / "doc.bin"
    path.write_bytes(data)
    sources: dict[str, Source] = {"bytes": data, "path": path, "file": io.BytesIO(data)}
    source = sources[kind]
    head = rag.UploadMetadata(upload_id="u1", size_bytes=len(data))
    parts = list(
        file_parts(
            rag.UploadDocumentRequest,
            ("metadata", head),
            ("chunk", rag.UploadChunk),
            source,
            offset=1000,
            chunk_bytes=4096,
        )
    )
    assert parts[0].metadata == head
    chunks = [part.chunk for part in parts[1:]]
    assert [c.offset for c in chunks] == [1000, 5096, 9192]
    assert b"".join(c.data for c in chunks) == data[1000:]


def test_a_file_upload_refuses_empty_chunks() -> None:
    with pytest.raises(ValueError, match="chunk_bytes"):
        list(
            file_parts(
                rag.UploadDocumentRequest,
                ("metadata", rag.UploadMetadata()),
                ("chunk", rag.UploadChunk),
                b"x",
                offset=0,
                chunk_bytes=0,
            )
        )


def test_a_download_writes_every_chunk_to_a_path_or_a_caller_file(tmp_path: Path) -> None:
    responses = [rag.ExportDocumentResponse(data=bytes([i]) * 3) for i in range(4)]
    assert write_data(responses, tmp_path / "out.bin") == 12
    assert (tmp_path / "out.bin").read_bytes() == b"".join(r.data for r in responses)
    stream = io.BytesIO()
    assert write_data(responses, stream) == 12
    assert not stream.closed  # the caller's file is the caller's to close
    assert stream.getvalue() == (tmp_path / "out.bin").read_bytes()


def test_only_rpcs_safe_to_repeat_are_retried() -> None:
    retried = {f"{service.rsplit('.', 1)[1]}/{method}" for service, method in RETRYABLE_METHODS}
    assert {"AccessService/GetCaller", "BillingService/RecordUsage"} <= retried  # read, idempotent
    assert "BillingService/CreateRefund" in retried  # carries an idempotency key
    assert not {"AccessService/RequestAccess", "AnalyticsService/ImportGraph"} & retried
    config = json.loads(Retry(attempts=3).service_config())
    (entry,) = config["methodConfig"]
    assert len(entry["name"]) == len(RETRYABLE_METHODS)
    assert entry["retryPolicy"]["maxAttempts"] == 3
    assert entry["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


@pytest.mark.parametrize(
    "options", [{"attempts": 1}, {"attempts": 6}, {"initial_backoff_s": 0}, {"codes": ()}]
)
def test_a_retry_policy_gRPC_would_refuse_is_refused_here(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"attempts|backoff|status code"):
        Retry(**options)  # type: ignore[arg-type]


class _Failed(grpc.RpcError):
    def __init__(self, reason: str) -> None:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="intelgraph"))
        self._status = status_pb2.Status(code=5, details=[detail]).SerializeToString()

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.NOT_FOUND

    def details(self) -> str:
        return "gone"

    def trailing_metadata(self) -> Any:
        return (("grpc-status-details-bin", self._status),)


def test_the_reason_is_an_enum_member_and_an_unknown_one_is_unspecified() -> None:
    known = from_grpc_error(_Failed("ERROR_REASON_NOT_FOUND"))
    assert known.reason is ErrorReason.ERROR_REASON_NOT_FOUND
    assert repr(known.reason) == "<ErrorReason.ERROR_REASON_NOT_FOUND: 5>"
    assert f"{known.reason}" == "ERROR_REASON_NOT_FOUND"
    newer = from_grpc_error(_Failed("ERROR_REASON_FROM_THE_FUTURE"))
    assert newer.reason is ErrorReason.ERROR_REASON_UNSPECIFIED
