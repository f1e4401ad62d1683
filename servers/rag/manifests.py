"""Proof manifests: issuing them signed, proving chunks in them, verifying them, publishing keys.

A manifest is issued per document version and purpose template version, on
first request, and kept: asking again returns the same signed bytes. It binds
the document's digest, every chunk's byte range and digest, their Merkle root
(RFC 6962), the purpose, the redactions and the digest of the output it speaks
for (the summary's Markdown) — see `proofs` for the format and the checks.
Manifests are DSSE envelopes signed with Ed25519 keys from `rag_keys_dir`;
every key that ever signed one is published (GetJwks), rotation included.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound, quoted, uuid_field
from interceptors import keys
from interceptors.tokens import Principal
from servers.db import Database
from servers.rag import outputs, proofs, store
from servers.rag.documents import Documents, document_not_found
from servers.rag.store import ChunkRow, DocumentRow, ManifestRow
from servers.rag.templates import PurposeTemplate
from servers.runtime import Runtime

#: The output a manifest digests.
OUTPUT_KIND, OUTPUT_MEDIA_TYPE = "summary", "text/markdown"


class ManifestSigner:
    """Signs with the current key of a directory's ring (an Ed25519 ring is made on first use)."""

    def __init__(self, directory: Path) -> None:
        if not (directory / keys.RING_FILE).exists():
            keys.rotate(directory, "EdDSA")
        self._store = keys.KeyStore(directory)

    def current(self) -> tuple[ed25519.Ed25519PrivateKey, str, dict[str, str]]:
        """The signing key, its id and its public JWK."""
        key = self._store.ring().current
        private = key.private_key
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise keys.KeyRingError("manifests are signed with Ed25519 keys only")
        return private, key.kid, key.public_jwk()

    def jwks(self) -> list[dict[str, str]]:
        """The ring's public keys, current first."""
        return self._store.ring().jwks()


@dataclass(frozen=True)
class Verdict:
    """What verifying a manifest found."""

    valid: bool
    problem: str = ""
    failed_check: str = ""
    verified: proofs.VerifiedManifest | None = None


@dataclass(frozen=True)
class InclusionProof:
    """A chunk's place in its document's Merkle tree."""

    chunk_id: str
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    hashes: list[bytes]
    root: bytes


class Manifests:
    """Manifest steps over every tenant."""

    def __init__(self, runtime: Runtime, documents: Documents) -> None:
        self._runtime = runtime
        self._db = runtime.database
        self._documents = documents
        self._signer = ManifestSigner(runtime.settings.manifest_keys_dir)

    async def issue(
        self, principal: Principal, document_id: str, template: PurposeTemplate
    ) -> ManifestRow:
        """The manifest of a document under `template`: the one issued before, or a new one."""
        document = await self._documents.get(principal, document_id)
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            found = await store.manifest(session, document.id, template.id, template.version)
            if found is not None:
                return found
            chunks = await store.chunks(session, document.id)
            text = await _text(session, document)
        summary = await outputs.summarize_async(document, chunks, template)
        now = self._runtime.clock()
        private, kid, public_jwk = self._signer.current()
        envelope, root = await asyncio.to_thread(
            functools.partial(
                _signed,
                document=document,
                chunks=chunks,
                text=text,
                template=template,
                summary=summary,
                now=now,
                private=private,
                kid=kid,
            )
        )
        row = ManifestRow(
            id=uuid.uuid4(),
            tenant_id=principal.tenant,
            document_id=document.id,
            purpose_id=template.id,
            purpose_version=template.version,
            envelope=envelope,
            merkle_root=root,
            chunk_count=len(chunks),
            key_id=kid,
            issued_at=now,
        )
        async with self._db.tenant_session(principal.tenant) as session:
            await store.record_signing_key(session, kid, public_jwk, now)
            if await store.add_manifest(session, row):
                return row
            # Issued meanwhile by a concurrent request (or replica): that one stands.
            found = await store.manifest(session, document.id, template.id, template.version)
        if found is None:
            raise document_not_found(document_id)
        return found

    async def inclusion_proof(
        self, principal: Principal, document_id: str, chunk_id: str
    ) -> InclusionProof:
        """The audit path of one chunk to its document's Merkle root.

        Raises:
            NotFound: No such document, or no such chunk in it.
        """
        document = await self._documents.get(principal, document_id)
        wanted = uuid_field(chunk_id, "chunk_id")
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            chunks = await store.chunks(session, document.id)
            text = await _text(session, document)
        position = next((i for i, chunk in enumerate(chunks) if chunk.id == wanted), None)
        if position is None:
            raise NotFound(
                f"document {document.id} has no chunk {quoted(chunk_id)}",
                metadata={"chunk_id": chunk_id},
            )
        encoded = text.encode()
        leaves = [proofs.leaf_hash(encoded[c.byte_start : c.byte_end]) for c in chunks]
        return InclusionProof(
            chunk_id=str(wanted),
            leaf_index=position,
            tree_size=len(leaves),
            leaf_hash=leaves[position],
            hashes=proofs.inclusion_proof(leaves, position),
            root=proofs.merkle_root(leaves),
        )

    async def verify(
        self, principal: Principal, envelope: Mapping[str, Any], *, check_document: bool
    ) -> Verdict:
        """Check a manifest's signature, form and root; and, if asked, the stored document's bytes.

        Raises:
            NotFound: `check_document` and the manifest's document is not the tenant's.
        """
        keys_by_id = proofs.ed25519_keys(await self.jwks())
        try:
            verified = await asyncio.to_thread(proofs.verify_envelope, envelope, keys_by_id)
        except proofs.ManifestInvalid as invalid:
            return Verdict(False, invalid.problem, invalid.check)
        if not check_document:
            return Verdict(True, verified=verified)
        document_id = str(verified.manifest["document"]["id"])
        document = await self._documents.get(principal, document_id)
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            data = await store.blob(session, document.upload_id)
            own = await store.own_text(session, document.id)
        text = own.encode() if own is not None else data
        try:
            checked = await asyncio.to_thread(
                proofs.verify_envelope, envelope, keys_by_id, document=data, text=text
            )
        except proofs.ManifestInvalid as invalid:
            return Verdict(False, invalid.problem, invalid.check)
        return Verdict(True, verified=checked)

    async def jwks(self) -> list[dict[str, str]]:
        """Every key that ever signed a manifest (see `published_keys`)."""
        return await published_keys(self._db, self._signer)


async def published_keys(database: Database, signer: ManifestSigner) -> list[dict[str, str]]:
    """Every key that ever signed a manifest: the ring's, then those only the store recalls."""
    found = {jwk["kid"]: jwk for jwk in signer.jwks()}
    async with database.platform_session(readonly=True) as session:
        for row in await store.signing_keys(session):
            found.setdefault(row.kid, dict(row.public_jwk))
    return list(found.values())


def envelope_of(exported: Mapping[str, Any]) -> Mapping[str, Any]:
    """The DSSE envelope in an exported manifest.

    As the MANIFEST_JSON export writes it (the envelope itself), or as grpcurl
    prints a GetManifest response or a Manifest message (proto field names).

    >>> envelope_of({"manifest": {"envelope": {"payload": "e30=", "payload_type": "t",
    ...     "signatures": []}}})["payloadType"]
    't'


    Raises:
        proofs.ManifestInvalid: No envelope in it ("envelope").
    """
    for nested in ("manifest", "envelope"):
        inner = exported.get(nested)
        if isinstance(inner, Mapping):
            return envelope_of(inner)
    if "payload" in exported and "signatures" in exported:
        if "payload_type" in exported and "payloadType" not in exported:
            # grpcurl prints the proto field names: the envelope's JSON name is payloadType.
            renamed = {key: value for key, value in exported.items() if key != "payload_type"}
            return {**renamed, "payloadType": exported["payload_type"]}
        return exported
    raise proofs.ManifestInvalid(
        "envelope", "no DSSE envelope (payload, payloadType, signatures) in the file"
    )


def signed_manifest(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest an envelope the platform signed carries (its payload, decoded)."""
    manifest: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return manifest


async def _text(session: AsyncSession, document: DocumentRow) -> str:
    """The text a document's chunks index."""
    own = await store.own_text(session, document.id)
    if own is not None:
        return own
    return (await store.blob(session, document.upload_id)).decode()


def _signed(
    *,
    document: DocumentRow,
    chunks: list[ChunkRow],
    text: str,
    template: PurposeTemplate,
    summary: outputs.Summary,
    now: datetime,
    private: ed25519.Ed25519PrivateKey,
    kid: str,
) -> tuple[dict[str, Any], str]:
    manifest = proofs.build_manifest(
        document=proofs.ManifestDocument(
            id=document.id,
            sha256=document.sha256,
            media_type=document.media_type,
            size_bytes=document.size_bytes,
        ),
        chunks=[
            proofs.ManifestChunk(
                id=chunk.id, index=chunk.index, byte_start=chunk.byte_start, byte_end=chunk.byte_end
            )
            for chunk in chunks
        ],
        text=text.encode(),
        purpose_id=template.id,
        purpose_version=template.version,
        redactions=outputs.redaction_counts(summary.redactions),
        output_kind=OUTPUT_KIND,
        output_media_type=OUTPUT_MEDIA_TYPE,
        output=summary.markdown.encode(),
        issued_at=now,
    )
    envelope = proofs.sign_envelope(manifest, private, kid)
    return envelope, str(manifest["merkle"]["root"])
