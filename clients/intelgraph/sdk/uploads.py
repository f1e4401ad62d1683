"""Resumable document uploads: digest the file, send it, resume after a cut.

The Rag service commits an upload chunk by chunk, so a cut connection loses at
most the chunk in flight. `upload_document` (and `upload_document_async`)
drive that protocol: they take the file's size and SHA-256, create the upload
under an id they keep, send from the offset the server last committed, and on
a transient failure (unavailable, deadline, a chunk the server saw at another
offset) ask the server for the offset and resume, up to `attempts` times.

>>> from intelgraph.sdk.uploads import describe
>>> size, digest = describe(b"hello")
>>> size, digest[:12]
(5, '2cf24dba5fb0')
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from intelgraph.rag.v1 import rag_service_pb2 as pb
from intelgraph.sdk.errors import (
    AbortedError,
    ConductorError,
    DeadlineExceededError,
    ErrorReason,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
)
from intelgraph.sdk.streams import Source, _opened

if TYPE_CHECKING:
    from intelgraph.sdk.services import AsyncRagClient, RagClient

#: How a caller hears of progress: (bytes committed, total bytes).
Progress = Callable[[int, int], None]

_TRANSIENT = (UnavailableError, DeadlineExceededError, AbortedError)


def describe(source: Source) -> tuple[int, str]:
    """The size and hex SHA-256 of a path, bytes or seekable binary file (read once, in pieces)."""
    digest = hashlib.sha256()
    size = 0
    with _opened(source, "rb") as stream:
        start = stream.tell() if not isinstance(source, bytes | str | Path) else 0
        while block := stream.read(1 << 20):
            digest.update(block)
            size += len(block)
        stream.seek(start)
    return size, digest.hexdigest()


def _metadata(
    source: Source, filename: str | None, content_type: str, upload_id: str | None
) -> pb.UploadMetadata:
    size, digest = describe(source)
    name = filename or (Path(source).name if isinstance(source, str | Path) else "")
    return pb.UploadMetadata(
        upload_id=upload_id or str(uuid.uuid4()),
        filename=name,
        content_type=content_type or (mimetypes.guess_type(name)[0] or "" if name else ""),
        size_bytes=size,
        sha256=digest,
    )


def _resumable(error: ConductorError) -> bool:
    if isinstance(error, _TRANSIENT):
        return True
    return isinstance(error, FailedPreconditionError) and (
        error.reason == ErrorReason.ERROR_REASON_UPLOAD_OFFSET_MISMATCH
    )


def upload_document(
    rag: RagClient,
    source: Source,
    *,
    filename: str | None = None,
    content_type: str = "",
    upload_id: str | None = None,
    chunk_bytes: int = 1 << 20,
    attempts: int = 5,
    backoff_s: float = 0.5,
) -> pb.UploadDocumentResponse:
    """Upload a document, resuming after cuts; the response carries the document.

    Args:
        rag: The Rag client (`client.rag`).
        source: A path, bytes, or a seekable binary file.
        filename: The document's name (default: the path's).
        content_type: Its media type (default: guessed from the name).
        upload_id: Resume this upload (default: a new one).
        chunk_bytes: Bytes per chunk (the most a cut re-sends).
        attempts: Streams to try before giving up.
        backoff_s: Pause before the first retry, doubled each time.

    Raises:
        ConductorError: A refusal (quota, checksum, unreadable document) or the
            last transient failure once `attempts` are spent.
    """
    metadata = _metadata(source, filename, content_type, upload_id)
    offset: int | None = 0  # None: ask the server where to go on from
    for attempt in range(attempts):
        try:
            if offset is None:
                offset = _resume_at(rag.get_upload_status, metadata.upload_id)
            return rag.upload_document_from_file(
                source, metadata=metadata, offset=offset, chunk_bytes=chunk_bytes
            )
        except ConductorError as error:
            if not _resumable(error) or attempt + 1 == attempts:
                raise
            time.sleep(backoff_s * 2**attempt)
            offset = None
    raise AssertionError("unreachable: the last attempt returns or raises")


async def upload_document_async(
    rag: AsyncRagClient,
    source: Source,
    *,
    filename: str | None = None,
    content_type: str = "",
    upload_id: str | None = None,
    chunk_bytes: int = 1 << 20,
    attempts: int = 5,
    backoff_s: float = 0.5,
) -> pb.UploadDocumentResponse:
    """`upload_document` over an async client."""
    metadata = await asyncio.to_thread(_metadata, source, filename, content_type, upload_id)
    offset: int | None = 0  # None: ask the server where to go on from
    for attempt in range(attempts):
        try:
            if offset is None:
                offset = await _resume_at_async(rag.get_upload_status, metadata.upload_id)
            return await rag.upload_document_from_file(
                source, metadata=metadata, offset=offset, chunk_bytes=chunk_bytes
            )
        except ConductorError as error:
            if not _resumable(error) or attempt + 1 == attempts:
                raise
            await asyncio.sleep(backoff_s * 2**attempt)
            offset = None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _resume_at(status: Callable[..., pb.GetUploadStatusResponse], upload_id: str) -> int:
    """The offset the server committed (0 when the cut came before it made the upload).

    A transient failure of this question raises, and costs the caller an attempt.
    """
    try:
        return status(upload_id=upload_id).status.offset
    except NotFoundError:
        return 0


async def _resume_at_async(
    status: Callable[..., Awaitable[pb.GetUploadStatusResponse]], upload_id: str
) -> int:
    """`_resume_at` over an async client."""
    try:
        return (await status(upload_id=upload_id)).status.offset
    except NotFoundError:
        return 0
