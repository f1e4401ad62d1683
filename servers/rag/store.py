"""Rag storage: the tables and every query of the service, over the caller's session.

Where bytes live (ADR 0014): in the database, beside the rows that describe
them. An upload's chunks are appended as parts (`rag_blob_parts`, one row per
committed chunk, keyed by the upload and the offset), so every replica sees
every committed byte, a chunk commits with the offset it advances or not at
all, and a document is its upload's parts read in order (completion copies
nothing). Renditions that differ from the upload (the text of HTML or PDF) are
kept whole in `rag_texts`. Deleting a document deletes all of it in one
transaction.

The queries are functions taking an `AsyncSession`; the use cases open the
sessions (one transaction per step), and nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.pagination import Page
from servers.db import ALL_TENANTS, Base, TenantScoped, after_position, new_id
from servers.db import insert as dialect_insert

UPLOAD_STATES = ("receiving", "complete", "failed")
#: Rows per INSERT when chunks are written (bounds one statement's size).
_INSERT_BATCH = 500


class UploadRow(TenantScoped, Base):
    """A resumable upload: what it will be, and how much of it is committed.

    Keyed by tenant and the client's id, so one tenant's ids say nothing about another's.
    """

    __tablename__ = "rag_uploads"
    __table_args__ = (
        CheckConstraint("state IN ('receiving', 'complete', 'failed')", name="state_known"),
        CheckConstraint("committed_bytes <= size_bytes", name="within_size"),
        Index("ix_rag_uploads_state_expires_at", "state", "expires_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    committed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16))
    problem: Mapped[str] = mapped_column(Text, default="")
    document_id: Mapped[uuid.UUID | None]
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class BlobPartRow(TenantScoped, Base):
    """Bytes of an upload from an offset: one committed chunk."""

    __tablename__ = "rag_blob_parts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "upload_id"],
            ["rag_uploads.tenant_id", "rag_uploads.id"],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    upload_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DocumentRow(TenantScoped, Base):
    """A completed upload, read: its text's digest, pages and chunk count."""

    __tablename__ = "rag_documents"
    __table_args__ = (
        Index("ix_rag_documents_tenant_id_created_at", "tenant_id", "created_at"),
        UniqueConstraint("tenant_id", "upload_id"),
        ForeignKeyConstraint(
            ["tenant_id", "upload_id"], ["rag_uploads.tenant_id", "rag_uploads.id"]
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    upload_id: Mapped[uuid.UUID]
    filename: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    text_sha256: Mapped[str] = mapped_column(String(64))
    text_bytes: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int] = mapped_column(default=0)
    chunk_count: Mapped[int]
    #: Personal data found at ingest, per kind.
    pii_counts: Mapped[dict[str, int]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class TextRow(TenantScoped, Base):
    """The text a document's chunks index, where it is not the upload itself (HTML, PDF)."""

    __tablename__ = "rag_texts"

    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rag_documents.id", ondelete="CASCADE"), primary_key=True
    )
    text: Mapped[str] = mapped_column(Text)


class ChunkRow(TenantScoped, Base):
    """A chunk of a document's text with its lineage, its sentences and the PII in it."""

    __tablename__ = "rag_chunks"
    __table_args__ = (UniqueConstraint("document_id", "index"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rag_documents.id", ondelete="CASCADE")
    )
    index: Mapped[int]
    char_start: Mapped[int] = mapped_column(BigInteger)
    char_end: Mapped[int] = mapped_column(BigInteger)
    byte_start: Mapped[int] = mapped_column(BigInteger)
    byte_end: Mapped[int] = mapped_column(BigInteger)
    page: Mapped[int] = mapped_column(default=0)
    section_path: Mapped[list[str]] = mapped_column(JSON)
    #: The chunk's source text (unredacted): text[char_start:char_end].
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    #: Sentence spans, [start, end) relative to the chunk's first character.
    sentences: Mapped[list[list[int]]] = mapped_column(JSON)
    #: PII found at ingest, [kind, start, end] relative to the chunk's first character.
    pii: Mapped[list[list[Any]]] = mapped_column(JSON)


class ManifestRow(TenantScoped, Base):
    """A signed manifest of a document version under one purpose template version."""

    __tablename__ = "rag_manifests"
    __table_args__ = (UniqueConstraint("document_id", "purpose_id", "purpose_version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rag_documents.id", ondelete="CASCADE")
    )
    purpose_id: Mapped[str] = mapped_column(String(64))
    purpose_version: Mapped[int]
    #: The DSSE envelope, as its JSON object.
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    merkle_root: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int]
    key_id: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime]


class ManifestKeyRow(Base):
    """A public key that signed manifests: kept after rotation, so old manifests still verify."""

    __tablename__ = "rag_signing_keys"

    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    first_used_at: Mapped[datetime]


# Uploads


async def upload(
    session: AsyncSession, upload_id: uuid.UUID, *, lock: bool = False
) -> UploadRow | None:
    """The tenant's upload `upload_id` (locked for update when `lock`)."""
    query = select(UploadRow).where(UploadRow.id == upload_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


def _columns(row: Base) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


async def add_upload(session: AsyncSession, row: UploadRow) -> bool:
    """Record a new upload; False if its id is taken (by a concurrent create, say)."""
    added = await session.execute(
        dialect_insert(session, UploadRow)
        .on_conflict_do_nothing(index_elements=["tenant_id", "id"])
        .returning(UploadRow.id),
        _columns(row),
    )
    return added.scalar_one_or_none() is not None


async def bytes_held(session: AsyncSession) -> int:
    """Bytes the tenant holds: its documents, plus the full size of its unfinished uploads."""
    documents = await session.scalar(select(func.coalesce(func.sum(DocumentRow.size_bytes), 0)))
    pending = await session.scalar(
        select(func.coalesce(func.sum(UploadRow.size_bytes), 0)).where(
            UploadRow.state == "receiving"
        )
    )
    return int(documents or 0) + int(pending or 0)


async def append_part(
    session: AsyncSession,
    *,
    tenant: uuid.UUID,
    upload_id: uuid.UUID,
    offset: int,
    data: bytes,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Commit `data` at `offset` if that is the upload's committed offset; False if it is not.

    The offset advances by a conditional UPDATE, so two streams racing on one
    upload cannot both append at the same offset on any backend.
    """
    advanced = await session.execute(
        update(UploadRow)
        .where(
            UploadRow.id == upload_id,
            UploadRow.state == "receiving",
            UploadRow.committed_bytes == offset,
        )
        .values(committed_bytes=offset + len(data), updated_at=now, expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    if advanced.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await session.execute(
        insert(BlobPartRow),
        [{"tenant_id": tenant, "upload_id": upload_id, "offset": offset, "data": data}],
    )
    return True


async def parts(session: AsyncSession, upload_id: uuid.UUID) -> AsyncIterator[bytes]:
    """An upload's committed bytes, part by part, in order."""
    offsets = (
        await session.scalars(
            select(BlobPartRow.offset)
            .where(BlobPartRow.upload_id == upload_id)
            .order_by(BlobPartRow.offset)
        )
    ).all()
    for offset in offsets:  # one part in memory at a time
        data = await session.scalar(
            select(BlobPartRow.data).where(
                BlobPartRow.upload_id == upload_id, BlobPartRow.offset == offset
            )
        )
        yield data or b""


async def blob(session: AsyncSession, upload_id: uuid.UUID) -> bytes:
    """An upload's committed bytes, whole."""
    return b"".join([part async for part in parts(session, upload_id)])


async def drop_parts(session: AsyncSession, upload_id: uuid.UUID) -> None:
    """Free an upload's bytes."""
    await session.execute(delete(BlobPartRow).where(BlobPartRow.upload_id == upload_id))


async def expired_uploads(session: AsyncSession, now: datetime, limit: int) -> list[UploadRow]:
    """Unfinished uploads of every tenant past their expiry (a platform job's query)."""
    query = (
        select(UploadRow)
        .where(UploadRow.state.in_(("receiving", "failed")), UploadRow.expires_at <= now)
        .order_by(UploadRow.expires_at)
        .limit(limit)
        .execution_options(**{ALL_TENANTS: True})
    )
    return list((await session.scalars(query)).all())


async def delete_upload(session: AsyncSession, upload_id: uuid.UUID) -> None:
    """Delete an upload and its bytes."""
    await drop_parts(session, upload_id)
    await session.execute(delete(UploadRow).where(UploadRow.id == upload_id))


# Documents


async def add_document(
    session: AsyncSession,
    row: DocumentRow,
    chunks: Sequence[Mapping[str, Any]],
    text: str | None,
) -> None:
    """Record a document, its chunks (rows of `ChunkRow` columns) and its text if it has its own."""
    session.add(row)
    await session.flush()
    if text is not None:
        session.add(TextRow(document_id=row.id, text=text))
    for start in range(0, len(chunks), _INSERT_BATCH):
        await session.execute(insert(ChunkRow), list(chunks[start : start + _INSERT_BATCH]))


async def document(session: AsyncSession, document_id: uuid.UUID) -> DocumentRow | None:
    """The tenant's document `document_id`."""
    return (
        await session.execute(select(DocumentRow).where(DocumentRow.id == document_id))
    ).scalar_one_or_none()


async def page_of_documents(session: AsyncSession, page: Page) -> list[DocumentRow]:
    """A page of the tenant's documents, newest first."""
    query = after_position(
        select(DocumentRow), [DocumentRow.created_at, DocumentRow.id], page.after, page.size + 1
    )
    return list((await session.scalars(query)).all())


async def own_text(session: AsyncSession, document_id: uuid.UUID) -> str | None:
    """The document's text when it has its own (HTML, PDF); None when the upload is the text."""
    return await session.scalar(select(TextRow.text).where(TextRow.document_id == document_id))


async def delete_document(session: AsyncSession, row: DocumentRow) -> None:
    """Delete a document and everything derived from it, its upload and its bytes."""
    for model in (ManifestRow, ChunkRow, TextRow):
        await session.execute(delete(model).where(model.document_id == row.id))
    await session.execute(delete(DocumentRow).where(DocumentRow.id == row.id))
    await delete_upload(session, row.upload_id)


# Chunks


async def chunks(session: AsyncSession, document_id: uuid.UUID) -> list[ChunkRow]:
    """Every chunk of a document, in order."""
    query = select(ChunkRow).where(ChunkRow.document_id == document_id).order_by(ChunkRow.index)
    return list((await session.scalars(query)).all())


async def page_of_chunks(
    session: AsyncSession, document_id: uuid.UUID, page: Page
) -> list[ChunkRow]:
    """A page of a document's chunks, in order."""
    query = after_position(
        select(ChunkRow).where(ChunkRow.document_id == document_id),
        [ChunkRow.index],
        page.after,
        page.size + 1,
        descending=False,
    )
    return list((await session.scalars(query)).all())


async def neighbour_ids(
    session: AsyncSession, document_id: uuid.UUID, indexes: Sequence[int]
) -> dict[int, uuid.UUID]:
    """Chunk ids of a document by index, for the given indexes."""
    if not indexes:
        return {}
    rows = await session.execute(
        select(ChunkRow.index, ChunkRow.id).where(
            ChunkRow.document_id == document_id, ChunkRow.index.in_(list(indexes))
        )
    )
    return {int(row[0]): row[1] for row in rows.all()}


# Manifests


async def manifest(
    session: AsyncSession, document_id: uuid.UUID, purpose_id: str, purpose_version: int
) -> ManifestRow | None:
    """The manifest issued for a document under a template version, if any."""
    query = select(ManifestRow).where(
        ManifestRow.document_id == document_id,
        ManifestRow.purpose_id == purpose_id,
        ManifestRow.purpose_version == purpose_version,
    )
    return (await session.execute(query)).scalar_one_or_none()


async def add_manifest(session: AsyncSession, row: ManifestRow) -> bool:
    """Record an issued manifest; False if one was issued for the same version meanwhile."""
    added = await session.execute(
        dialect_insert(session, ManifestRow)
        .on_conflict_do_nothing(index_elements=["document_id", "purpose_id", "purpose_version"])
        .returning(ManifestRow.id),
        _columns(row),
    )
    return added.scalar_one_or_none() is not None


async def record_signing_key(
    session: AsyncSession, kid: str, public_jwk: Mapping[str, str], now: datetime
) -> None:
    """Remember a manifest key's public half (once, whichever replica signs first)."""
    await session.execute(
        dialect_insert(session, ManifestKeyRow).on_conflict_do_nothing(index_elements=["kid"]),
        {"kid": kid, "public_jwk": dict(public_jwk), "first_used_at": now},
    )


async def signing_keys(session: AsyncSession) -> list[ManifestKeyRow]:
    """Every key that ever signed a manifest, oldest first."""
    query = select(ManifestKeyRow).order_by(ManifestKeyRow.first_used_at)
    return list((await session.scalars(query)).all())
