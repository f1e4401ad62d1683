"""Resumable uploads over HTTP: tus 1.0 (core, creation, checksum, expiration, termination).

The endpoint is a client of the platform, like the GraphQL facade: each
request calls the Rag service over gRPC through the SDK with the caller's own
token (a bearer `Authorization` header, or the console's session), so the
service's authorization, validation and tenancy apply unchanged and the
upload is the same one `GetUploadStatus` reports. tus maps onto it directly:

* `POST /files` (creation) creates the upload; `Upload-Metadata` must carry
  `sha256` (hex, the whole file's digest, which the platform checks at the
  end) and may carry `filename` and `filetype`/`content_type`.
* `HEAD /files/{id}` answers `Upload-Offset`, `Upload-Length`, `Upload-Expires`.
* `PATCH /files/{id}` appends the body at `Upload-Offset`; the body is
  streamed through in pieces as it arrives, each committed on its own, so a
  request cut midway keeps every whole piece that arrived. An
  `Upload-Checksum` (sha1, sha256 or md5) is checked over the body (460 when
  it does not match, and nothing of it is kept).
* `DELETE /files/{id}` (termination) abandons the upload.

The response that completes an upload names the document in
`Conductor-Document-Id`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from intelgraph.sdk import ConductorError, ErrorReason
from intelgraph.sdk import rag as pb
from intelgraph.sdk.services import AsyncRagClient
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from servers.console.session import CSRF_HEADER, cookie_without_csrf

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,checksum,expiration,termination"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
#: Bytes per gRPC chunk a PATCH body is cut into (the contract allows 2 MiB).
PIECE_BYTES = 1 << 20
#: tus's status for a checksum mismatch.
CHECKSUM_MISMATCH = 460
#: The largest length or offset the contract allows (1 TiB).
MAX_BYTES = 1 << 40
_DECIMAL = re.compile(r"[0-9]{1,13}")

#: Runs a call as the request's caller (sets the token the shared client sends).
CallAs = Callable[[Request, Callable[[], Awaitable[Any]]], Awaitable[Any]]

_STATUS_OF_REASON = {
    ErrorReason.ERROR_REASON_UPLOAD_OFFSET_MISMATCH: 409,
    ErrorReason.ERROR_REASON_CHECKSUM_MISMATCH: CHECKSUM_MISMATCH,
    ErrorReason.ERROR_REASON_UPLOAD_EXPIRED: 410,
    ErrorReason.ERROR_REASON_STORAGE_QUOTA_EXCEEDED: 413,
    ErrorReason.ERROR_REASON_MEDIA_TYPE_UNSUPPORTED: 415,
}
_STATUS_OF_CODE = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 413,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class TusError(Exception):
    """A tus request refused with an HTTP status and a plain-text reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **(extra or {})}


def _refusal(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, headers=_headers(), media_type="text/plain")


def _mapped(error: ConductorError) -> TusError:
    status = _STATUS_OF_REASON.get(error.reason) or _STATUS_OF_CODE.get(error.code.name, 500)
    return TusError(status, error.details or error.code.name)


def parse_metadata(header: str) -> dict[str, str]:
    """The pairs of an `Upload-Metadata` header (values base64, keys bare).

    >>> parse_metadata("filename d29ybGQudHh0,sha256")
    {'filename': 'world.txt', 'sha256': ''}

    Raises:
        TusError: A value that is not base64 of UTF-8 text (400).
    """
    pairs: dict[str, str] = {}
    for item in header.split(","):
        if not item.strip():
            continue
        key, _, value = item.strip().partition(" ")
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(400, f"Upload-Metadata value of {key!r} is not base64 text") from None
    return pairs


def _integer(request: Request, name: str) -> int:
    raw = request.headers.get(name, "")
    if not _DECIMAL.fullmatch(raw) or int(raw) > MAX_BYTES:
        raise TusError(400, f"{name} must be a whole number of bytes from 0 to {MAX_BYTES}")
    return int(raw)


def _checksum(request: Request) -> tuple[str, bytes] | None:
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise TusError(
            400, f"checksum algorithm {algorithm!r} not supported: {', '.join(CHECKSUMS)}"
        )
    try:
        return algorithm, base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise TusError(400, "Upload-Checksum is not base64") from None


class TusEndpoint:
    """tus 1.0 over the Rag service.

    Args:
        rag: The Rag client every request calls through.
        call_as: Runs a call with the request's caller's token.
        max_size: The largest upload the platform takes (`Tus-Max-Size`).
        prefix: Where the endpoint is mounted (upload URLs are prefix/id).
    """

    def __init__(self, rag: AsyncRagClient, call_as: CallAs, max_size: int, prefix: str) -> None:
        self._rag = rag
        self._call_as = call_as
        self._max_size = max_size
        self._prefix = prefix.rstrip("/")

    def routes(self) -> list[BaseRoute]:
        """The endpoint's routes."""
        return [
            Route(self._prefix, self._collection, methods=["OPTIONS", "POST"]),
            Route(
                self._prefix + "/{upload_id}",
                self._upload,
                methods=["HEAD", "PATCH", "DELETE", "OPTIONS"],
            ),
        ]

    async def _collection(self, request: Request) -> Response:
        return await self._handled(request, self._create)

    async def _upload(self, request: Request) -> Response:
        handlers = {"HEAD": self._head, "PATCH": self._patch, "DELETE": self._delete}
        return await self._handled(request, handlers.get(request.method, self._create))

    async def _handled(
        self, request: Request, handler: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method == "OPTIONS":
            return Response(
                status_code=204,
                headers=_headers(
                    {
                        "Tus-Version": TUS_VERSION,
                        "Tus-Extension": EXTENSIONS,
                        "Tus-Max-Size": str(self._max_size),
                        "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
                    }
                ),
            )
        if request.headers.get("Tus-Resumable") != TUS_VERSION:
            return Response(
                status_code=412, headers={"Tus-Version": TUS_VERSION, "Tus-Resumable": TUS_VERSION}
            )
        if request.method in {"POST", "PATCH", "DELETE"} and cookie_without_csrf(request):
            return _refusal(403, f"signed-in browsers send {CSRF_HEADER} with uploads")
        try:
            return await handler(request)
        except TusError as refused:
            return _refusal(refused.status, refused.message)
        except ConductorError as error:
            mapped = _mapped(error)
            return _refusal(mapped.status, mapped.message)

    async def _create(self, request: Request) -> Response:
        if request.headers.get("Upload-Defer-Length"):
            raise TusError(400, "deferred lengths are not supported: send Upload-Length")
        length = _integer(request, "Upload-Length")
        metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
        if not metadata.get("sha256"):
            raise TusError(
                400,
                "Upload-Metadata must carry sha256: the hex SHA-256 of the whole file, "
                "which the platform checks when the last byte arrives",
            )
        upload_id = str(uuid.uuid4())
        head = pb.UploadMetadata(
            upload_id=upload_id,
            filename=metadata.get("filename", metadata.get("name", "")),
            content_type=metadata.get("filetype", metadata.get("content_type", "")),
            size_bytes=length,
            sha256=metadata["sha256"],
        )

        async def create() -> pb.UploadDocumentResponse:
            return await self._rag.upload_document(_stream(head))

        created: pb.UploadDocumentResponse = await self._call_as(request, create)
        return Response(
            status_code=201,
            headers=_headers(
                {
                    # Relative, as RFC 9110 allows: never built from the Host header.
                    "Location": f"{self._prefix}/{upload_id}",
                    "Upload-Expires": _http_date(created.status),
                    "Upload-Offset": str(created.status.offset),
                }
            ),
        )

    async def _status(self, request: Request) -> pb.UploadStatus:
        upload_id = request.path_params["upload_id"]

        async def status() -> pb.GetUploadStatusResponse:
            return await self._rag.get_upload_status(upload_id=upload_id)

        found: pb.GetUploadStatusResponse = await self._call_as(request, status)
        return found.status

    async def _head(self, request: Request) -> Response:
        status = await self._status(request)
        if status.state == pb.UPLOAD_STATE_FAILED:
            raise TusError(410, f"the upload failed: {status.problem}")
        headers = {"Upload-Offset": str(status.offset), "Upload-Length": str(status.size_bytes)}
        if status.state == pb.UPLOAD_STATE_RECEIVING:
            headers["Upload-Expires"] = _http_date(status)
        if status.document_id:
            headers["Conductor-Document-Id"] = status.document_id
        return Response(status_code=200, headers=_headers(headers))

    async def _patch(self, request: Request) -> Response:
        if request.headers.get("Content-Type") != "application/offset+octet-stream":
            raise TusError(415, "PATCH bodies are application/offset+octet-stream")
        offset = _integer(request, "Upload-Offset")
        checksum = _checksum(request)
        status = await self._status(request)
        if offset != status.offset:
            raise TusError(
                409, f"Upload-Offset {offset} is not the upload's offset {status.offset}"
            )
        head = pb.UploadMetadata(
            upload_id=status.upload_id,
            filename=status.filename,
            content_type=status.content_type,
            size_bytes=status.size_bytes,
            sha256=status.sha256,
        )
        room = status.size_bytes - offset
        declared = request.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > room:
            raise _too_long(room)
        cut: list[bool] = []
        if checksum is None:  # streamed through; the service refuses bytes past the length
            pieces = _pieces(_until_cut(request.stream(), cut), offset)
        else:  # the whole body is checked before any of it is committed
            try:
                body = await _read_checked(request.stream(), room, checksum)
            except ClientDisconnect:  # nothing was committed: the client sends it all again
                return Response(status_code=400, headers=_headers())
            pieces = _pieces(_once(body), offset)

        async def append() -> pb.UploadDocumentResponse:
            return await self._rag.upload_document(_stream(head, pieces))

        done: pb.UploadDocumentResponse = await self._call_as(request, append)
        if cut:  # nobody is there to answer; what arrived is kept, and HEAD will say how much
            return Response(status_code=400, headers=_headers())
        headers = {"Upload-Offset": str(done.status.offset)}
        if done.status.state == pb.UPLOAD_STATE_RECEIVING:
            headers["Upload-Expires"] = _http_date(done.status)
        if done.document.id:
            headers["Conductor-Document-Id"] = done.document.id
        return Response(status_code=204, headers=_headers(headers))

    async def _delete(self, request: Request) -> Response:
        upload_id = request.path_params["upload_id"]

        async def cancel() -> pb.CancelUploadResponse:
            return await self._rag.cancel_upload(upload_id=upload_id)

        await self._call_as(request, cancel)
        return Response(status_code=204, headers=_headers())


def _http_date(status: pb.UploadStatus) -> str:
    """The upload's expiry as an RFC 9110 HTTP date, as `Upload-Expires` wants it."""
    return format_datetime(status.expires_at.ToDatetime(tzinfo=UTC), usegmt=True)


async def _until_cut(body: AsyncIterator[bytes], cut: list[bool]) -> AsyncIterator[bytes]:
    """The body as it arrives, ending where the client went away (noted in `cut`).

    A connection dropped mid-PATCH is the case tus exists for: the bytes that
    arrived are committed, and the client resumes from the offset HEAD gives.
    """
    try:
        async for block in body:
            yield block
    except ClientDisconnect:
        cut.append(True)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _too_long(room: int) -> TusError:
    return TusError(413, f"the body runs past the upload's length: {room} bytes remain")


async def _bounded(body: AsyncIterator[bytes], room: int) -> AsyncIterator[bytes]:
    """The body as it arrives, refused as soon as it runs past the upload's length."""
    received = 0
    async for block in body:
        received += len(block)
        if received > room:
            raise _too_long(room)
        yield block


async def _read_checked(
    body: AsyncIterator[bytes], room: int, checksum: tuple[str, bytes]
) -> bytes:
    """The whole body, once it is within the upload's length and matches its checksum."""
    algorithm, expected = checksum
    digest = CHECKSUMS[algorithm]()
    kept = bytearray()
    async for block in _bounded(body, room):
        digest.update(block)
        kept += block
    if digest.digest() != expected:
        raise TusError(CHECKSUM_MISMATCH, f"the body does not match its {algorithm}")
    return bytes(kept)


async def _pieces(body: AsyncIterator[bytes], offset: int) -> AsyncIterator[pb.UploadChunk]:
    """The body as upload chunks of at most PIECE_BYTES, each with its digest, as it arrives."""
    pending = bytearray()
    async for block in body:
        pending += block
        while len(pending) >= PIECE_BYTES:
            piece = bytes(pending[:PIECE_BYTES])
            del pending[:PIECE_BYTES]
            yield _chunk(offset, piece)
            offset += len(piece)
    if pending:
        yield _chunk(offset, bytes(pending))


def _chunk(offset: int, data: bytes) -> pb.UploadChunk:
    return pb.UploadChunk(offset=offset, data=data, sha256=hashlib.sha256(data).hexdigest())


async def _stream(
    head: pb.UploadMetadata, pieces: AsyncIterator[pb.UploadChunk] | None = None
) -> AsyncIterator[pb.UploadDocumentRequest]:
    yield pb.UploadDocumentRequest(metadata=head)
    if pieces is not None:
        async for piece in pieces:
            yield pb.UploadDocumentRequest(chunk=piece)
