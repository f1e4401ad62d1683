"""Documents: completing an upload into one, reading them, deleting them with all they led to."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass

from core.errors import ErrorReason, InvalidArgument, NotFound, quoted, uuid_field
from core.pagination import Page
from interceptors.tokens import Principal
from servers.rag import metrics, store
from servers.rag.extraction import UnreadableDocument, UnsupportedMediaType
from servers.rag.ingest import Ingested
from servers.rag.isolation import IngestPool
from servers.rag.store import DocumentRow, UploadRow
from servers.rag.uploads import Uploads
from servers.runtime import Runtime


@dataclass(frozen=True)
class Listed:
    """One page of documents and the token of the next."""

    rows: list[DocumentRow]
    next_page_token: str


def document_not_found(document_id: object) -> NotFound:
    """The error for a document the tenant does not have."""
    return NotFound(
        f"no document {quoted(document_id)}", metadata={"document_id": str(document_id)}
    )


class Documents:
    """Document steps, each one transaction, over every tenant."""

    def __init__(self, runtime: Runtime, uploads: Uploads) -> None:
        self._runtime = runtime
        self._db = runtime.database
        self._uploads = uploads
        settings = runtime.settings
        self._readers = IngestPool(settings.rag_ingest_timeout, settings.rag_ingest_slots)

    async def complete(self, principal: Principal, upload: UploadRow) -> DocumentRow:
        """Turn a fully received upload into a document: digest, read, chunk, store.

        Idempotent: an upload completed before (by this stream or a racing
        one) answers with its document.

        Raises:
            InvalidArgument: The bytes do not match the declared SHA-256
                (CHECKSUM_MISMATCH) or are not a readable document of their type
                (DOCUMENT_UNREADABLE); the upload is failed and its bytes freed.
        """
        if upload.state == "complete" and upload.document_id is not None:
            return await self.get(principal, str(upload.document_id))
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            data = await store.blob(session, upload.id)
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if len(data) != upload.size_bytes or digest != upload.sha256:
            problem = f"the upload's bytes hash to {digest}, not the declared {upload.sha256}"
            await self._uploads.fail(principal, upload.id, problem)
            raise InvalidArgument(
                problem + "; start a new upload",
                field="metadata.sha256",
                reason=ErrorReason.ERROR_REASON_CHECKSUM_MISMATCH,
            )
        try:
            read = await self._readers.ingest(data, upload.content_type)
        except (UnreadableDocument, UnsupportedMediaType) as problem:
            await self._uploads.fail(principal, upload.id, str(problem))
            raise InvalidArgument(
                f"the upload is not a readable {upload.content_type} document: {problem}",
                field="metadata.content_type",
                reason=ErrorReason.ERROR_REASON_DOCUMENT_UNREADABLE,
            ) from None
        return await self._store(principal, upload.id, read)

    async def _store(
        self, principal: Principal, upload_id: uuid.UUID, read: Ingested
    ) -> DocumentRow:
        now = self._runtime.clock()
        async with self._db.tenant_session(principal.tenant) as session:
            upload = await store.upload(session, upload_id, lock=True)
            if upload is None:
                raise NotFound(f"upload {upload_id} was cancelled while it completed")
            if upload.state == "complete" and upload.document_id is not None:
                existing = await store.document(session, upload.document_id)
                if existing is not None:
                    return existing
            row = DocumentRow(
                id=uuid.uuid4(),
                upload_id=upload.id,
                filename=upload.filename,
                media_type=upload.content_type,
                size_bytes=upload.size_bytes,
                sha256=upload.sha256,
                text_sha256=read.text_sha256,
                text_bytes=read.text_bytes,
                page_count=read.page_count,
                chunk_count=len(read.chunks),
                pii_counts=read.pii_counts,
                created_by=principal.subject,
                created_at=now,
            )
            chunk_rows = [
                {**chunk, "id": uuid.uuid4(), "tenant_id": principal.tenant, "document_id": row.id}
                for chunk in read.chunks
            ]
            await store.add_document(session, row, chunk_rows, read.text if read.own_text else None)
            upload.state = "complete"
            upload.document_id = row.id
            upload.updated_at = now
        metrics.UPLOADS_COMPLETED.inc()
        metrics.INGESTED_BYTES.inc(row.size_bytes)
        return row

    async def get(self, principal: Principal, document_id: str) -> DocumentRow:
        """One of the tenant's documents.

        Raises:
            NotFound: No such document.
        """
        key = uuid_field(document_id, "document_id")
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            row = await store.document(session, key)
        if row is None:
            raise document_not_found(document_id)
        return row

    async def list(self, principal: Principal, page: Page) -> Listed:
        """A page of the tenant's documents, newest first."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = await store.page_of_documents(session, page)
        token = page.next_token(rows, lambda row: (row.created_at, row.id))
        return Listed(rows[: page.size], token)

    async def delete(self, principal: Principal, document_id: str) -> None:
        """Delete a document and everything derived from it, in one transaction.

        Raises:
            NotFound: No such document (or it is already deleted).
        """
        key = uuid_field(document_id, "document_id")
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.document(session, key)
            if row is None:
                raise document_not_found(document_id)
            await store.delete_document(session, row)
