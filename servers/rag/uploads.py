"""Resumable uploads (tus semantics): create, append at the committed offset, complete, expire.

An upload is created with its size, SHA-256 and content type, then receives
chunks. Each chunk is one transaction that appends its bytes and advances the
committed offset only if it starts exactly there (and, when it carries one,
only if its SHA-256 matches), so a connection cut at any byte loses at most
the chunk in flight: the client asks for the offset and re-sends from it, and
no byte is ever written twice. The chunk that reaches the size completes the
upload: the whole file's SHA-256 is checked and the document is read, chunked
and stored in one transaction (`documents.Documents.complete`). Unfinished
uploads expire `rag_upload_ttl` seconds after their last chunk, and a job
frees their bytes. The same use case serves gRPC and the tus 1.0 HTTP endpoint.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import (
    ErrorReason,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    quoted,
    uuid_field,
)
from interceptors.tokens import Principal
from servers.rag import metrics, store
from servers.rag.extraction import MEDIA_TYPES, media_type_of
from servers.rag.store import UploadRow
from servers.runtime import Runtime

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Expired uploads freed per job run (bounds one transaction).
_EXPIRE_BATCH = 100


@dataclass(frozen=True)
class NewUpload:
    """What creating (or resuming) an upload declares."""

    upload_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str


def upload_not_found(upload_id: object) -> NotFound:
    """The error for an upload the tenant does not have."""
    return NotFound(f"no upload {quoted(upload_id)}", metadata={"upload_id": str(upload_id)})


def hex_digest(value: str, field: str) -> str:
    """A hex SHA-256 a request carries, lowercased.

    Raises:
        InvalidArgument: It is not 64 hex digits.
    """
    digest = value.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise InvalidArgument(f"{field} must be a hex SHA-256 (64 hex digits)", field=field)
    return digest


class Uploads:
    """Upload steps, each one transaction, over every tenant."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._db = runtime.database
        self._settings = runtime.settings

    def _now(self) -> datetime:
        return self._runtime.clock()

    def _expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.rag_upload_ttl)

    async def open(self, principal: Principal, declared: NewUpload) -> UploadRow:
        """Create the upload, or find it again to resume it with the same metadata.

        Raises:
            InvalidArgument: Malformed id or digest (INVALID_FIELD), a content
                type the platform does not read (MEDIA_TYPE_UNSUPPORTED).
            ResourceExhausted: Larger than a document may be, or than the
                tenant's quota leaves (STORAGE_QUOTA_EXCEEDED).
            FailedPrecondition: Resumed with other metadata, or no longer
                receiving (UPLOAD_CONFLICT); past its expiry (UPLOAD_EXPIRED).
        """
        upload_id = uuid_field(declared.upload_id, "metadata.upload_id")
        digest = hex_digest(declared.sha256, "metadata.sha256")
        media_type = media_type_of(declared.filename, declared.content_type)
        if media_type not in MEDIA_TYPES:
            raise InvalidArgument(
                f"cannot read {quoted(declared.content_type or declared.filename)}: "
                f"upload one of {', '.join(MEDIA_TYPES)}",
                field="metadata.content_type",
                reason=ErrorReason.ERROR_REASON_MEDIA_TYPE_UNSUPPORTED,
            )
        if declared.size_bytes < 1:
            raise InvalidArgument("size_bytes must be at least 1", field="metadata.size_bytes")
        limit = self._settings.rag_max_document_bytes
        if declared.size_bytes > limit:
            raise ResourceExhausted(
                f"a document may hold at most {limit} bytes; this one has {declared.size_bytes}",
                reason=ErrorReason.ERROR_REASON_STORAGE_QUOTA_EXCEEDED,
                metadata={"limit_bytes": str(limit)},
            )
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.upload(session, upload_id, lock=True)
            if row is not None:
                return _resumable(row, declared, media_type, digest, now)
            held = await store.bytes_held(session)
            quota = self._settings.rag_quota_bytes
            if held + declared.size_bytes > quota:
                raise ResourceExhausted(
                    f"the tenant's storage quota of {quota} bytes would be exceeded: "
                    f"{held} held, {declared.size_bytes} more asked for",
                    reason=ErrorReason.ERROR_REASON_STORAGE_QUOTA_EXCEEDED,
                    metadata={"quota_bytes": str(quota), "held_bytes": str(held)},
                )
            row = UploadRow(
                id=upload_id,
                tenant_id=principal.tenant,
                filename=declared.filename.strip() or f"{upload_id}",
                content_type=media_type,
                size_bytes=declared.size_bytes,
                sha256=digest,
                committed_bytes=0,
                state="receiving",
                problem="",
                created_by=principal.subject,
                created_at=now,
                updated_at=now,
                expires_at=self._expiry(now),
            )
            if not await store.add_upload(session, row):
                # Taken by a concurrent create of the same upload (or an id in use).
                raise FailedPrecondition(
                    f"upload id {upload_id} is already in use; resume it or choose another",
                    reason=ErrorReason.ERROR_REASON_UPLOAD_CONFLICT,
                )
            return row

    async def append(
        self, principal: Principal, upload_id: uuid.UUID, offset: int, data: bytes, sha256: str
    ) -> UploadRow:
        """Commit one chunk at the committed offset; the upload as it stands after it.

        Raises:
            FailedPrecondition: `offset` is not the committed offset
                (UPLOAD_OFFSET_MISMATCH, metadata "offset"); the upload is not
                receiving (UPLOAD_CONFLICT) or expired (UPLOAD_EXPIRED).
            InvalidArgument: The bytes do not match `sha256` (CHECKSUM_MISMATCH),
                or run past the declared size.
            NotFound: No such upload.
        """
        if sha256 and hashlib.sha256(data).hexdigest() != hex_digest(sha256, "chunk.sha256"):
            raise InvalidArgument(
                f"the chunk at offset {offset} does not match its sha256; it was not kept",
                field="chunk.sha256",
                reason=ErrorReason.ERROR_REASON_CHECKSUM_MISMATCH,
                metadata={"offset": str(offset)},
            )
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.upload(session, upload_id)
            if row is None:
                raise upload_not_found(upload_id)
            _check_receiving(row, now)
            if offset + len(data) > row.size_bytes:
                raise InvalidArgument(
                    f"the chunk ends at byte {offset + len(data)}, past the declared size "
                    f"{row.size_bytes}",
                    field="chunk.data",
                )
            if offset != row.committed_bytes or not await store.append_part(
                session,
                tenant=principal.tenant,
                upload_id=upload_id,
                offset=offset,
                data=data,
                now=now,
                expires_at=self._expiry(now),
            ):
                raise offset_mismatch(offset, row.committed_bytes)
            await session.refresh(row)
            return row

    async def status(self, principal: Principal, upload_id: str) -> UploadRow:
        """An upload as it stands.

        Raises:
            NotFound: No such upload (or it expired and was freed).
        """
        key = uuid_field(upload_id, "upload_id")
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            row = await store.upload(session, key)
            if row is None:
                raise upload_not_found(upload_id)
        if row.state == "receiving" and 0 < row.committed_bytes < row.size_bytes:
            # Asking where an unfinished upload stands is how a client resumes it.
            metrics.UPLOADS_RESUMED.inc()
        return row

    async def cancel(self, principal: Principal, upload_id: str) -> None:
        """Abandon an unfinished upload and free its bytes; a completed one goes with its document.

        Raises:
            NotFound: No such upload.
            FailedPrecondition: It completed (UPLOAD_CONFLICT).
        """
        key = uuid_field(upload_id, "upload_id")
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.upload(session, key, lock=True)
            if row is None:
                raise upload_not_found(upload_id)
            if row.state == "complete":
                raise FailedPrecondition(
                    f"upload {key} completed into document {row.document_id}; delete the "
                    "document instead",
                    reason=ErrorReason.ERROR_REASON_UPLOAD_CONFLICT,
                )
            await store.delete_upload(session, key)

    async def fail(self, principal: Principal, upload_id: uuid.UUID, problem: str) -> None:
        """Mark an upload failed for good and free its bytes; its status keeps `problem`."""
        now = self._now()
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.upload(session, upload_id, lock=True)
            if row is None or row.state != "receiving":
                return
            row.state = "failed"
            row.problem = problem
            row.updated_at = now
            await store.drop_parts(session, upload_id)

    async def expire_due(self) -> int:
        """Free the bytes of uploads abandoned past their expiry, every tenant; how many."""
        now = self._now()
        async with self._db.platform_session() as session:
            due = [
                (row.tenant_id, row.id)
                for row in await store.expired_uploads(session, now, _EXPIRE_BATCH)
            ]
        for tenant, upload_id in due:
            async with self._db.tenant_session(tenant) as session:
                row = await store.upload(session, upload_id, lock=True)
                if row is not None and row.state != "complete" and row.expires_at <= now:
                    await store.delete_upload(session, upload_id)
                    metrics.UPLOADS_EXPIRED.inc()
        return len(due)


def offset_mismatch(offset: int, committed: int) -> FailedPrecondition:
    """The error for a chunk that does not start at the committed offset (tus: 409)."""
    return FailedPrecondition(
        f"the chunk starts at byte {offset} but {committed} bytes are committed: "
        f"resume from offset {committed}",
        reason=ErrorReason.ERROR_REASON_UPLOAD_OFFSET_MISMATCH,
        metadata={"offset": str(committed)},
    )


def _check_receiving(row: UploadRow, now: datetime) -> None:
    if row.state == "failed":
        raise FailedPrecondition(
            f"upload {row.id} failed ({row.problem}); start a new upload",
            reason=ErrorReason.ERROR_REASON_UPLOAD_CONFLICT,
        )
    if row.state == "complete":
        raise FailedPrecondition(
            f"upload {row.id} is complete (document {row.document_id})",
            reason=ErrorReason.ERROR_REASON_UPLOAD_CONFLICT,
        )
    if row.expires_at <= now:
        raise FailedPrecondition(
            f"upload {row.id} expired at {row.expires_at.isoformat()}; start a new upload",
            reason=ErrorReason.ERROR_REASON_UPLOAD_EXPIRED,
        )


def _resumable(
    row: UploadRow, declared: NewUpload, media_type: str, digest: str, now: datetime
) -> UploadRow:
    """`row`, once the resumed metadata matches what created it."""
    differs = [
        name
        for name, mine, theirs in (
            ("size_bytes", row.size_bytes, declared.size_bytes),
            ("sha256", row.sha256, digest),
            ("content_type", row.content_type, media_type),
        )
        if mine != theirs
    ]
    if differs:
        raise FailedPrecondition(
            f"upload {row.id} was created with another {', '.join(differs)}; resume it with "
            "the metadata it was created with, or start a new upload",
            reason=ErrorReason.ERROR_REASON_UPLOAD_CONFLICT,
            metadata={"fields": ",".join(differs)},
        )
    if row.state != "complete":
        _check_receiving(row, now)
    return row
