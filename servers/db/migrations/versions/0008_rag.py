"""Rag: uploads and their bytes, documents, texts, chunks, manifests, signing keys.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rag_signing_keys",
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_rag_signing_keys")),
    )
    op.create_table(
        "rag_uploads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("committed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("problem", sa.Text(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('receiving', 'complete', 'failed')", name=op.f("ck_rag_uploads_state_known")
        ),
        sa.CheckConstraint(
            "committed_bytes <= size_bytes", name=op.f("ck_rag_uploads_within_size")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_rag_uploads")),
    )
    with op.batch_alter_table("rag_uploads", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rag_uploads_state_expires_at", ["state", "expires_at"], unique=False
        )

    op.create_table(
        "rag_blob_parts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "upload_id"],
            ["rag_uploads.tenant_id", "rag_uploads.id"],
            name=op.f("fk_rag_blob_parts_tenant_id_rag_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "upload_id", "offset", name=op.f("pk_rag_blob_parts")),
    )
    op.create_table(
        "rag_documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("media_type", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("text_bytes", sa.BigInteger(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("pii_counts", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "upload_id"],
            ["rag_uploads.tenant_id", "rag_uploads.id"],
            name=op.f("fk_rag_documents_tenant_id_rag_uploads"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rag_documents")),
        sa.UniqueConstraint(
            "tenant_id", "upload_id", name=op.f("uq_rag_documents_tenant_id_upload_id")
        ),
    )
    with op.batch_alter_table("rag_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rag_documents_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_rag_documents_tenant_id_created_at", ["tenant_id", "created_at"], unique=False
        )

    op.create_table(
        "rag_chunks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("char_start", sa.BigInteger(), nullable=False),
        sa.Column("char_end", sa.BigInteger(), nullable=False),
        sa.Column("byte_start", sa.BigInteger(), nullable=False),
        sa.Column("byte_end", sa.BigInteger(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("section_path", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sentences", sa.JSON(), nullable=False),
        sa.Column("pii", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["rag_documents.id"],
            name=op.f("fk_rag_chunks_document_id_rag_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rag_chunks")),
        sa.UniqueConstraint("document_id", "index", name=op.f("uq_rag_chunks_document_id_index")),
    )
    with op.batch_alter_table("rag_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rag_chunks_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "rag_manifests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("purpose_id", sa.String(length=64), nullable=False),
        sa.Column("purpose_version", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["rag_documents.id"],
            name=op.f("fk_rag_manifests_document_id_rag_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rag_manifests")),
        sa.UniqueConstraint(
            "document_id",
            "purpose_id",
            "purpose_version",
            name=op.f("uq_rag_manifests_document_id_purpose_id_purpose_version"),
        ),
    )
    with op.batch_alter_table("rag_manifests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rag_manifests_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "rag_texts",
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["rag_documents.id"],
            name=op.f("fk_rag_texts_document_id_rag_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_rag_texts")),
    )
    with op.batch_alter_table("rag_texts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rag_texts_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rag_texts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rag_texts_tenant_id"))

    op.drop_table("rag_texts")
    with op.batch_alter_table("rag_manifests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rag_manifests_tenant_id"))

    op.drop_table("rag_manifests")
    with op.batch_alter_table("rag_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rag_chunks_tenant_id"))

    op.drop_table("rag_chunks")
    with op.batch_alter_table("rag_documents", schema=None) as batch_op:
        batch_op.drop_index("ix_rag_documents_tenant_id_created_at")
        batch_op.drop_index(batch_op.f("ix_rag_documents_tenant_id"))

    op.drop_table("rag_documents")
    op.drop_table("rag_blob_parts")
    with op.batch_alter_table("rag_uploads", schema=None) as batch_op:
        batch_op.drop_index("ix_rag_uploads_state_expires_at")

    op.drop_table("rag_uploads")
    op.drop_table("rag_signing_keys")
