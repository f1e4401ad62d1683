"""The RAG lane's acceptance pack: lineage, proofs, resumable uploads, no PII in outputs.

Each criterion is checked as a client would check it: documents go in through
the SDK and the tus endpoint, outputs come back through the SDK and GraphQL,
and the proofs are verified offline here, from the published keys alone, with
an RFC 9162 Merkle verifier of this module's own (the service's code is never
imported: a verifier that shared it would share its mistakes).

The judgments are small pure functions (`chunk_problems`, `manifest_problems`,
`verify_manifest_offline`, `verify_inclusion`, `pii_found`) so that a test can
show each of them failing on bad data.

>>> leaves = [leaf_hash(bytes([n])) for n in range(5)]
>>> verify_inclusion(leaves[4], 4, 5, audit_path(leaves, 4), merkle_root(leaves))
True
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import rfc8785
from google.protobuf import json_format
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    ConductorError,
    ErrorReason,
    FailedPreconditionError,
    bearer_token,
    upload_document_async,
)
from intelgraph.sdk import rag as pb
from intelgraph.sdk.services import AsyncRagClient

from core import dsse
from interceptors.keys import ed25519_public_keys
from servers.acceptance.checks import Context, Criterion

LANE = "rag"

#: The criteria, as the acceptance pack states them.
LINEAGE = "lineage present and exact"
PROOFS = "proofs validate"
RESUMABLE = "resumable uploads survive cuts"
NO_PII = "no PII in outputs"

#: What must hold for each criterion, as the results table shows it.
THRESHOLDS = {
    LINEAGE: "every chunk and summary sentence exact; output digest = the summary's",
    PROOFS: "signature and every inclusion proof valid offline; every tampering refused",
    RESUMABLE: "every cut upload resumes at its committed offset, digest equal",
    NO_PII: "0 PII values in any output; redactions reported in the manifest",
}
#: What the lane's documents are written and read with.
WRITER = ("rag.read", "rag.write")
#: The purpose the lineage document is summarised and proven under.
PURPOSE = "support"
#: The DSSE payload type of a signed manifest, and the manifest's schema (ADR 0014).
MANIFEST_PAYLOAD_TYPE = "application/vnd.intelgraph.rag-manifest+json"
MANIFEST_TYPE = "https://intelgraph.dev/rag/manifest/v1"
#: Bytes per upload chunk in the cut uploads (small, so a cut lands part-way).
CUT_CHUNK_BYTES = 4096
#: Chunks committed before the gRPC upload's connection is cut.
CUT_AFTER_CHUNKS = 4
#: Seconds to wait for the chunks sent before a cut to be committed.
COMMIT_WAIT_S = 10.0

T = TypeVar("T")

#: A Markdown document without personal data: headings, a repeated sentence (where
#: offsets found by searching go wrong) and multi-byte characters (where byte and
#: character offsets differ).
LINEAGE_DOCUMENT = """# Storage failover review

## What happened

The storage cluster lost quorum during the rolling upgrade — writes stalled for four minutes.
The upgrade was paused. Reads kept flowing from the cache's naïve copy, so the café dashboards
stayed green while the cluster was degraded. The upgrade was paused. Replication lag peaked at
ninety seconds on the slowest replica and fell back within ten minutes of the rejoin.

## Why it happened

A replica's disk filled with compaction debris because the cleanup job had been disabled during
a previous migration and nobody re-enabled it. When the upgrade restarted the second replica,
only one healthy voter remained. The quorum timeout of five seconds was too short for a replica
that had to replay its journal. The upgrade was paused.

## What we change

Re-enable the compaction cleanup job and alert when it has not run for a day. Make the quorum
timeout adaptive to the journal replay time. Run every upgrade in the staging region first, with
the same replica count as production. Review the failover runbook with the storage team — über
clear steps, no guesswork. Add a dashboard panel for disk headroom per replica.
""".encode()


@dataclass(frozen=True)
class Planted:
    """A personal-data value planted in the PII document.

    Attributes:
        kind: Its kind, as the platform's purpose templates name kinds ("email", …).
        value: The value as written in the document.
    """

    kind: str
    value: str

    def forms(self) -> tuple[str, ...]:
        """What must not appear: the value, and for a person the surname on its own."""
        if self.kind == "person":
            return (self.value, self.value.split()[-1])
        return (self.value,)

    def masked(self) -> str:
        """The value with all but its ends hidden, for the raw results."""
        return f"{self.value[:2]}…{self.value[-2:]}"

    def digest(self) -> str:
        """A short SHA-256 of the value, for the raw results."""
        return hashlib.sha256(self.value.encode()).hexdigest()[:16]


#: The personal data in `PII_DOCUMENT`.
PLANTED = (
    Planted("person", "Maria Keller"),
    Planted("person", "John Whitaker"),
    Planted("person", "Priya Raman"),
    Planted("email", "maria.keller@example.com"),
    Planted("email", "priya.raman@contoso.org"),
    Planted("phone", "+1 415 555 0132"),
    Planted("phone", "(650) 253-0000"),
    Planted("payment_card", "4111 1111 1111 1111"),
    Planted("payment_card", "5500 0000 0000 0004"),
    Planted("iban", "DE89370400440532013000"),
    Planted("ip_address", "10.12.7.21"),
    Planted("secret", "AKIAIOSFODNN7EXAMPLE"),
    Planted("secret", "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"),
    Planted("secret", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
)

#: A Markdown document full of `PLANTED`, between sentences without any.
PII_DOCUMENT = b"""# Customer escalation

## Contacts

Escalations go to Dr. Maria Keller at maria.keller@example.com or +1 415 555 0132.
The billing contact is John Whitaker, card 4111 1111 1111 1111, IBAN DE89370400440532013000.
The bastion at 10.12.7.21 was reached with key AKIAIOSFODNN7EXAMPLE by the on-call engineer.
Priya Raman can be called on (650) 253-0000 or written to at priya.raman@contoso.org.
The backup card on file is 5500 0000 0000 0004 and the deploy token is \
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.
Set api_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc" in the vault before the rotation.

## Timeline

The storage cluster lost quorum during the upgrade. The upgrade was paused and the cluster
recovered. Customers saw elevated latency for forty minutes. Alerts fired on replica lag above
thirty seconds.
"""


def cut_document() -> bytes:
    """The document the cut uploads send: about 46 KB of numbered lines."""
    return b"".join(
        b"Line %05d of the resumable upload lane: every committed byte survives a cut.\n" % line
        for line in range(600)
    )


# -- Merkle trees (RFC 9162 section 2.1), written here from the RFC ----------------------------


def leaf_hash(data: bytes) -> bytes:
    """The Merkle leaf hash of `data`: SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of leaves given by their leaf hashes (RFC 9162 §2.1.1).

    >>> merkle_root([]).hex()[:16]
    'e3b0c44298fc1c14'
    """
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below n
    return _node_hash(merkle_root(leaves[:split]), merkle_root(leaves[split:]))


def audit_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` (RFC 9162 §2.1.3.1), nearest the leaf first."""
    if len(leaves) <= 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*audit_path(leaves[:split], index), merkle_root(leaves[split:])]
    return [*audit_path(leaves[split:], index - split), merkle_root(leaves[:split])]


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """Whether `path` leads from leaf hash `leaf` at `index` to `root` (RFC 9162 §2.1.3.2).

    >>> leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
    >>> verify_inclusion(leaves[1], 1, 3, audit_path(leaves, 1), merkle_root(leaves))
    True
    >>> verify_inclusion(leaves[1], 0, 3, audit_path(leaves, 1), merkle_root(leaves))
    False
    """
    if not 0 <= index < tree_size:
        return False
    fn, sn, result = index, tree_size - 1, leaf
    for step in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = _node_hash(step, result)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = _node_hash(result, step)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and result == root


# -- Manifests, verified offline ---------------------------------------------------------------


class ProofRefused(Exception):
    """A manifest, a document or a proof did not verify.

    Attributes:
        check: Which check refused it ("signature", "canonical", "merkle_root", …).
        problem: What failed, for people.
    """

    def __init__(self, check: str, problem: str) -> None:
        super().__init__(f"{check}: {problem}")
        self.check = check
        self.problem = problem


@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest whose signature, canonical form and Merkle root verified.

    Attributes:
        manifest: The signed manifest, as JSON data.
        keyid: The id of the key whose signature verified.
        root: The signed Merkle root.
    """

    manifest: dict[str, Any]
    keyid: str
    root: bytes


def envelope_json(envelope: pb.DsseEnvelope) -> dict[str, Any]:
    """A DSSE envelope message in the standard DSSE JSON form."""
    return {
        "payload": base64.b64encode(envelope.payload).decode("ascii"),
        "payloadType": envelope.payload_type,
        "signatures": [
            {"keyid": signature.keyid, "sig": base64.b64encode(signature.sig).decode("ascii")}
            for signature in envelope.signatures
        ],
    }


def envelope_message(envelope: Mapping[str, Any]) -> pb.DsseEnvelope:
    """A DSSE JSON envelope as the message VerifyManifest takes."""
    return pb.DsseEnvelope(
        payload=base64.b64decode(envelope["payload"]),
        payload_type=envelope["payloadType"],
        signatures=[
            pb.DsseSignature(keyid=signature["keyid"], sig=base64.b64decode(signature["sig"]))
            for signature in envelope["signatures"]
        ],
    )


def verify_manifest_offline(
    envelope: Mapping[str, Any],
    jwks: Sequence[Mapping[str, str]],
    document: bytes | None = None,
) -> VerifiedManifest:
    """Verify a manifest with the published keys alone; and, given it, the document.

    Checks a signature by a key of `jwks` over the payload, that the payload
    is its own RFC 8785 canonical form, the manifest's type, and the Merkle
    root over the listed leaves. With `document` (plain text or Markdown,
    whose text rendition is the upload itself): its digest and size, and each
    chunk's digest and leaf over its byte range.

    Raises:
        ProofRefused: The first check that failed.
    """
    try:
        opened = dsse.open_envelope(envelope)
        keyid = dsse.verify(opened, MANIFEST_PAYLOAD_TYPE, ed25519_public_keys(jwks))
    except dsse.EnvelopeInvalid as invalid:
        raise ProofRefused(invalid.check, invalid.problem) from None
    except ValueError as malformed:
        raise ProofRefused("jwks", str(malformed)) from None
    try:
        manifest = json.loads(opened.body)
        canonical = rfc8785.dumps(manifest)
    except (ValueError, rfc8785.CanonicalizationError):
        raise ProofRefused("canonical", "the payload is not canonical JSON") from None
    if canonical != opened.body or not isinstance(manifest, dict):
        raise ProofRefused("canonical", "the payload is not in RFC 8785 canonical form")
    if manifest.get("_type") != MANIFEST_TYPE:
        raise ProofRefused("schema", f"the manifest's _type is not {MANIFEST_TYPE}")
    try:
        chunks = manifest["chunks"]
        leaves = [bytes.fromhex(chunk["leaf"]) for chunk in chunks]
        signed_root = bytes.fromhex(manifest["merkle"]["root"])
    except (KeyError, TypeError, ValueError):
        raise ProofRefused("schema", "the manifest lacks its chunks' leaves or its root") from None
    if merkle_root(leaves) != signed_root or manifest["merkle"].get("size") != len(leaves):
        raise ProofRefused("merkle_root", "the root is not that of the listed chunks")
    if document is not None:
        facts = manifest["document"]
        digest = hashlib.sha256(document).hexdigest()
        if digest != facts["sha256"] or len(document) != facts["size_bytes"]:
            raise ProofRefused("document_digest", "the document is not the one signed")
        if digest != facts["text_sha256"]:
            raise ProofRefused("text_digest", "the text rendition is not the upload itself")
        for chunk in chunks:
            piece = document[chunk["byte_start"] : chunk["byte_end"]]
            if (
                hashlib.sha256(piece).hexdigest() != chunk["sha256"]
                or leaf_hash(piece).hex() != chunk["leaf"]
            ):
                raise ProofRefused("chunk_digest", f"chunk {chunk['index']} differs")
    return VerifiedManifest(manifest, keyid, signed_root)


def chunk_problems(text: bytes, document_id: str, chunks: Sequence[pb.Chunk]) -> list[str]:
    """What is wrong with chunks' lineage against the document's text (nothing: exact).

    Each chunk must carry its lineage; its byte range must hold exactly its
    source (its digest, its character range's encoding and, when nothing was
    redacted, its text), and the chunks must be listed in order and linked.
    """
    problems: list[str] = []
    decoded = text.decode()
    for position, chunk in enumerate(chunks):
        lineage = chunk.lineage
        where = f"chunk {chunk.index} ({chunk.id})"
        piece = text[lineage.byte_start : lineage.byte_end]
        if chunk.index != position:
            problems.append(f"{where} is listed at position {position}")
        if lineage.document_id != document_id or not lineage.anchor:
            problems.append(f"{where} lacks its document or anchor")
        if lineage.document_sha256 != hashlib.sha256(text).hexdigest():
            problems.append(f"{where} names another document digest")
        if not 0 <= lineage.byte_start < lineage.byte_end <= len(text):
            problems.append(f"{where} spans bytes {lineage.byte_start}..{lineage.byte_end}")
            continue
        if hashlib.sha256(piece).hexdigest() != chunk.sha256:
            problems.append(f"{where}: its digest is not that of its byte range")
        if decoded[lineage.char_start : lineage.char_end].encode() != piece:
            problems.append(f"{where}: its character range is not its byte range")
        if not chunk.redactions and chunk.text.encode() != piece:
            problems.append(f"{where}: its text is not its source")
        expected_previous = chunks[position - 1].id if position else ""
        expected_next = chunks[position + 1].id if position + 1 < len(chunks) else ""
        if (lineage.previous_chunk_id, lineage.next_chunk_id) != (
            expected_previous,
            expected_next,
        ):
            problems.append(f"{where}: its previous/next links are wrong")
    return problems


def sentence_problems(text: bytes, chunks: Sequence[pb.Chunk], summary: pb.Summary) -> list[str]:
    """What is wrong with a summary's sentences as spans of the text (nothing: exact)."""
    problems: list[str] = []
    ranges = {chunk.id: (chunk.lineage.byte_start, chunk.lineage.byte_end) for chunk in chunks}
    for number, sentence in enumerate(summary.sentences):
        source = text[sentence.byte_start : sentence.byte_end]
        start, end = ranges.get(sentence.chunk_id, (-1, -1))
        if not start <= sentence.byte_start < sentence.byte_end <= end:
            problems.append(f"sentence {number} lies outside its chunk {sentence.chunk_id}")
        if not summary.redactions and source != sentence.text.encode():
            problems.append(f"sentence {number} is not the text at its byte range")
    if hashlib.sha256(summary.markdown.encode()).hexdigest() != summary.markdown_sha256:
        problems.append("the summary's markdown_sha256 is not its Markdown's digest")
    return problems


def manifest_problems(
    manifest: Mapping[str, Any], text: bytes, chunks: Sequence[pb.Chunk], output: bytes
) -> list[str]:
    """What a manifest states differently from the document, its chunks and its output."""
    problems: list[str] = []
    digest = hashlib.sha256(text).hexdigest()
    facts = manifest.get("document", {})
    if (facts.get("sha256"), facts.get("text_sha256"), facts.get("text_bytes")) != (
        digest,
        digest,
        len(text),
    ):
        problems.append("the manifest's document digests or size are not the document's")
    listed = manifest.get("chunks", [])
    if len(listed) != len(chunks):
        problems.append(f"the manifest lists {len(listed)} chunks, the document has {len(chunks)}")
    for entry, chunk in zip(listed, chunks, strict=False):
        piece = text[entry["byte_start"] : entry["byte_end"]]
        if (
            entry["id"] != chunk.id
            or (entry["byte_start"], entry["byte_end"])
            != (chunk.lineage.byte_start, chunk.lineage.byte_end)
            or entry["sha256"] != chunk.sha256
            or hashlib.sha256(piece).hexdigest() != entry["sha256"]
        ):
            problems.append(f"manifest chunk {entry['index']} is not chunk {chunk.index} as read")
    if manifest.get("output", {}).get("sha256") != hashlib.sha256(output).hexdigest():
        problems.append("the manifest's output digest is not the summary's")
    return problems


# -- Personal data -------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-.()/+]")
#: Values this long once separators are gone are also looked for without separators.
_SQUEEZED_MINIMUM = 10


def contains(output: str, value: str) -> bool:
    """Whether `value` appears in `output`, whatever the case or separators.

    >>> contains("call +1-415-555-0132 now", "+1 415 555 0132")
    True
    >>> contains("call [PHONE] now", "+1 415 555 0132")
    False
    >>> contains("Mail MARIA.KELLER@EXAMPLE.COM", "maria.keller@example.com")
    True
    """
    if value.casefold() in output.casefold():
        return True
    squeezed = _SEPARATORS.sub("", value).casefold()
    return len(squeezed) >= _SQUEEZED_MINIMUM and squeezed in _SEPARATORS.sub("", output).casefold()


@dataclass(frozen=True)
class Output:
    """One output the platform sent back under a purpose.

    Attributes:
        name: What it is ("support v2: Summarize").
        text: Its full text (a response as JSON, or an export's bytes decoded).
        kept: PII kinds its purpose keeps on purpose (not looked for in it).
    """

    name: str
    text: str
    kept: frozenset[str] = frozenset()


def pii_found(outputs: Sequence[Output], planted: Sequence[Planted]) -> dict[Planted, list[str]]:
    """Which planted values appear in which outputs (leaving out kinds an output's purpose keeps).

    >>> email = Planted("email", "maria.keller@example.com")
    >>> pii_found([Output("summary", "Mail Maria.Keller@example.com")], [email])[email]
    ['summary']
    """
    return {
        value: [
            output.name
            for output in outputs
            if value.kind not in output.kept
            and any(contains(output.text, f) for f in value.forms())
        ]
        for value in planted
    }


# -- The lane --------------------------------------------------------------------------------


@dataclass
class LineageDocument:
    """The lineage document as uploaded and read back, for the proofs that follow."""

    document: pb.Document
    text: bytes
    chunks: list[pb.Chunk]
    summary: pb.Summary
    manifest: pb.Manifest


async def run(context: Context) -> None:
    """Check the RAG lane's criteria against the deployment."""
    tenant = context.tenant()
    context.showcase["documents"] = tenant  # the console page the evidence bundle shows
    async with context.client(tenant, WRITER) as client:
        token = context.token(tenant, WRITER)
        lineage = await _guarded(context, LINEAGE, _lineage(context, client))
        if lineage is None:
            context.check(
                PROOFS,
                threshold=THRESHOLDS[PROOFS],
                measured="not checked: no lineage document",
                passed=False,
            )
        else:
            await _guarded(context, PROOFS, _proofs(context, client, token, lineage))
        await _guarded(context, RESUMABLE, _resumable(context, client, token))
        await _guarded(context, NO_PII, _no_pii(context, client, token))


async def _guarded(context: Context, name: str, check: Coroutine[Any, Any, T]) -> T | None:
    """Run one criterion's check; an error in it is that criterion's failure, not the lane's."""
    return await context.guarded(Criterion(name, THRESHOLDS[name]), check)


async def _export(
    rag: AsyncRagClient, document_id: str, purpose: str, kind: pb.ExportFormat.ValueType
) -> bytes:
    """A whole export of a document under a purpose."""
    data = bytearray()
    responses: AsyncIterator[pb.ExportDocumentResponse] = rag.export_document(
        document_id=document_id,
        purpose=purpose,
        format=kind,
    )
    async for response in responses:
        data += response.data
    return bytes(data)


async def _lineage(context: Context, client: AsyncClient) -> LineageDocument:
    """Upload a document, summarise it, read its manifest: is every offset and digest exact?"""
    text = LINEAGE_DOCUMENT
    uploaded = await upload_document_async(
        client.rag, text, filename="failover-review.md", content_type="text/markdown"
    )
    document = uploaded.document
    chunks = [
        chunk async for chunk in client.rag.iter_chunks(document_id=document.id, purpose=PURPOSE)
    ]
    summary = (await client.rag.summarize(document_id=document.id, purpose=PURPOSE)).summary
    manifest = (await client.rag.get_manifest(document_id=document.id, purpose=PURPOSE)).manifest
    signed = json.loads(manifest.envelope.payload)
    exported = await _export(client.rag, document.id, PURPOSE, pb.EXPORT_FORMAT_SUMMARY_MARKDOWN)

    problems = chunk_problems(text, document.id, chunks)
    problems += sentence_problems(text, chunks, summary)
    problems += manifest_problems(signed, text, chunks, summary.markdown.encode())
    if exported != summary.markdown.encode():
        problems.append("the exported summary is not the summary Summarize returned")
    if document.sha256 != hashlib.sha256(text).hexdigest() or document.chunk_count != len(chunks):
        problems.append("the document's digest or chunk count is not the upload's")
    output_digest = hashlib.sha256(summary.markdown.encode()).hexdigest()
    output_matches = signed.get("output", {}).get("sha256") == output_digest
    context.raw(
        "lineage",
        {
            "document": {
                "id": document.id,
                "sha256": document.sha256,
                "text_sha256": document.text_sha256,
                "size_bytes": document.size_bytes,
            },
            "purpose": {"id": summary.purpose.id, "version": summary.purpose.version},
            "chunks": [
                {
                    "id": chunk.id,
                    "index": chunk.index,
                    "anchor": chunk.lineage.anchor,
                    "section_path": list(chunk.lineage.section_path),
                    "bytes": [chunk.lineage.byte_start, chunk.lineage.byte_end],
                    "chars": [chunk.lineage.char_start, chunk.lineage.char_end],
                    "sha256": chunk.sha256,
                }
                for chunk in chunks
            ],
            "summary_sentences": [
                {"chunk_id": s.chunk_id, "bytes": [s.byte_start, s.byte_end]}
                for s in summary.sentences
            ],
            "output": {"sha256": output_digest, "signed": output_matches},
            "problems": problems,
        },
    )
    context.check(
        LINEAGE,
        threshold=THRESHOLDS[LINEAGE],
        measured=(
            f"{len(chunks)} chunks, {len(summary.sentences)} sentences: {len(problems)} "
            f"mismatches; output digest {'matches' if output_matches else 'differs'}"
        ),
        passed=bool(chunks) and bool(summary.sentences) and not problems,
        value=float(len(problems)),
        detail="; ".join(problems)[:500]
        or f"byte ranges, digests and char ranges checked against the {len(text)}-byte upload",
    )
    return LineageDocument(document, text, chunks, summary, manifest)


async def _proofs(
    context: Context, client: AsyncClient, token: str, lineage: LineageDocument
) -> None:
    """Verify the manifest offline and by RPC, every chunk's inclusion; is tampering refused?"""
    rag = client.rag
    document_id = lineage.document.id
    jwks = json_format.MessageToDict(await rag.get_jwks(), preserving_proto_field_name=True)
    status, body, _ = await context.graphql(token, "{ ragJwks { keys { kty crv x kid alg use } } }")
    published = ((body.get("data") or {}).get("ragJwks") or {}).get("keys") or []
    problems: list[str] = []
    if status != 200 or sorted((k["kid"], k["x"]) for k in published) != sorted(
        (k["kid"], k["x"]) for k in jwks["keys"]
    ):
        problems.append("GraphQL ragJwks and GetJwks publish different keys")

    exported = await _export(rag, document_id, PURPOSE, pb.EXPORT_FORMAT_MANIFEST_JSON)
    envelope = json.loads(exported)
    if envelope != envelope_json(lineage.manifest.envelope):
        problems.append("the exported manifest is not the one GetManifest returned")
    context.raw("manifest", envelope)
    context.raw("jwks", jwks)
    try:
        verified = await asyncio.to_thread(
            verify_manifest_offline, envelope, jwks["keys"], lineage.text
        )
    except ProofRefused as refusal:
        context.check(
            PROOFS,
            threshold=THRESHOLDS[PROOFS],
            measured=f"the manifest was refused offline ({refusal.check})",
            passed=False,
            value=0.0,
            detail=refusal.problem[:500],
        )
        return
    if verified.root.hex() != lineage.manifest.merkle_root:
        problems.append("the signed root is not the Manifest message's merkle_root")
    verdict = await rag.verify_manifest(envelope=lineage.manifest.envelope, check_document=True)
    if not verdict.valid or verdict.key_id != verified.keyid:
        problems.append(f"VerifyManifest says {verdict.failed_check or verdict.key_id}")

    proofs: list[dict[str, Any]] = []
    for chunk in lineage.chunks:
        proof = await rag.get_inclusion_proof(document_id=document_id, chunk_id=chunk.id)
        piece = lineage.text[chunk.lineage.byte_start : chunk.lineage.byte_end]
        path = [bytes.fromhex(step) for step in proof.hashes]
        valid = (
            proof.leaf_hash == leaf_hash(piece).hex()
            and proof.merkle_root == verified.root.hex()
            and verify_inclusion(
                leaf_hash(piece), proof.leaf_index, proof.tree_size, path, verified.root
            )
            and (proof.leaf_index, proof.tree_size) == (chunk.index, len(lineage.chunks))
        )
        proofs.append(
            {
                "chunk_id": chunk.id,
                "leaf_index": proof.leaf_index,
                "tree_size": proof.tree_size,
                "leaf_hash": proof.leaf_hash,
                "hashes": list(proof.hashes),
                "verified": valid,
            }
        )
    valid_proofs = sum(proof["verified"] for proof in proofs)
    tampered = await _tampered(
        rag, envelope=envelope, jwks=jwks["keys"], lineage=lineage, proofs=proofs, verified=verified
    )
    refused = sum(case["refused"] for case in tampered)

    context.raw(
        "proofs",
        {
            "document_id": document_id,
            "purpose": PURPOSE,
            "merkle_root": verified.root.hex(),
            "key_id": verified.keyid,
            "verified_offline": True,
            "verify_manifest_rpc": {"valid": verdict.valid, "key_id": verdict.key_id},
            "proofs": proofs,
            "tampered": tampered,
        },
    )
    passed = not problems and valid_proofs == len(proofs) > 0 and refused == len(tampered)
    context.check(
        PROOFS,
        threshold=THRESHOLDS[PROOFS],
        measured=(
            f"signature valid offline{' and by VerifyManifest' if verdict.valid else ''}; "
            f"{valid_proofs}/{len(proofs)} "
            f"inclusion proofs valid; {refused}/{len(tampered)} tampered inputs refused"
        ),
        passed=passed,
        value=valid_proofs / len(proofs) if proofs else 0.0,
        detail="; ".join(problems)[:500]
        or f"Ed25519 key {verified.keyid[:12]}…, root {verified.root.hex()[:16]}…",
    )


async def _tampered(
    rag: AsyncRagClient,
    *,
    envelope: Mapping[str, Any],
    jwks: Sequence[Mapping[str, str]],
    lineage: LineageDocument,
    proofs: Sequence[Mapping[str, Any]],
    verified: VerifiedManifest,
) -> list[dict[str, Any]]:
    """Tamper with the manifest, the document and a proof: is each refused?"""
    cases: list[dict[str, Any]] = []

    def refused_offline(what: str, candidate: Mapping[str, Any], document: bytes | None) -> None:
        try:
            verify_manifest_offline(candidate, jwks, document)
        except ProofRefused as refusal:
            cases.append({"what": what, "by": "offline", "refused": True, "check": refusal.check})
        else:
            cases.append({"what": what, "by": "offline", "refused": False, "check": ""})

    edited = dict(verified.manifest)
    edited["output"] = {
        **edited["output"],
        "sha256": hashlib.sha256(b"another summary").hexdigest(),
    }
    forged = {**envelope, "payload": base64.b64encode(rfc8785.dumps(edited)).decode("ascii")}
    refused_offline("manifest payload edited (output digest), signature kept", forged, None)
    verdict = await rag.verify_manifest(envelope=envelope_message(forged))
    cases.append(
        {
            "what": "manifest payload edited (output digest), signature kept",
            "by": "VerifyManifest",
            "refused": not verdict.valid,
            "check": verdict.failed_check,
        }
    )
    flipped = bytearray(lineage.text)
    flipped[len(flipped) // 2] ^= 0x01
    refused_offline("document with one byte flipped", envelope, bytes(flipped))
    try:
        signature = base64.b64decode(envelope["signatures"][0]["sig"])
    except (binascii.Error, KeyError, IndexError):
        signature = b""
    bad_signature = bytes([signature[0] ^ 0x01, *signature[1:]]) if signature else b"\x00"
    unsigned = {
        **envelope,
        "signatures": [
            {**envelope["signatures"][0], "sig": base64.b64encode(bad_signature).decode("ascii")}
        ],
    }
    refused_offline("signature with one bit flipped", unsigned, None)

    first = lineage.chunks[0]
    piece = lineage.text[first.lineage.byte_start : first.lineage.byte_end]
    path = [bytes.fromhex(step) for step in proofs[0]["hashes"]]
    size = int(proofs[0]["tree_size"])
    wrong_chunk = verify_inclusion(leaf_hash(piece + b" "), 0, size, path, verified.root)
    cases.append(
        {"what": "chunk bytes altered", "by": "inclusion", "refused": not wrong_chunk, "check": ""}
    )
    if path:
        bent = [bytes([path[0][0] ^ 0x01, *path[0][1:]]), *path[1:]]
        wrong_path = verify_inclusion(leaf_hash(piece), 0, size, bent, verified.root)
        cases.append(
            {
                "what": "audit path altered",
                "by": "inclusion",
                "refused": not wrong_path,
                "check": "",
            }
        )
    return cases


async def _resumable(context: Context, client: AsyncClient, token: str) -> None:
    """Cut uploads part-way (gRPC, tus), resume them from the committed offset, compare digests."""
    data = cut_document()
    digest = hashlib.sha256(data).hexdigest()
    grpc_cut = await _cut_over_grpc(context, client, token, data)
    tus_cut = await _cut_over_tus(context, client, token, data)
    uploads = [grpc_cut, tus_cut]
    context.raw("upload", {"size_bytes": len(data), "sha256": digest, "uploads": uploads})
    resumed = [upload for upload in uploads if upload["resumed"]]
    context.check(
        RESUMABLE,
        threshold=THRESHOLDS[RESUMABLE],
        measured=f"{len(resumed)}/{len(uploads)} cut uploads resumed; stored digests equal",
        passed=len(resumed) == len(uploads),
        value=float(len(resumed)),
        detail="; ".join(
            f"{upload['via']}: cut at {upload['committed_at_cut']} of {len(data)} bytes, "
            f"resumed from {upload['resumed_from']}"
            + ("" if upload["resumed"] else f" FAILED ({upload['problem']})")
            for upload in uploads
        )[:500],
    )


async def _cut_over_grpc(
    context: Context, client: AsyncClient, token: str, data: bytes
) -> dict[str, Any]:
    """An upload whose connection is closed after a few chunks, resumed on a new one."""
    metadata = pb.UploadMetadata(
        upload_id=str(uuid.uuid4()),
        filename="cut-grpc.txt",
        content_type="text/plain",
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    stalled = asyncio.Event()
    sent_before_cut = CUT_AFTER_CHUNKS * CUT_CHUNK_BYTES

    async def stream() -> AsyncIterator[pb.UploadDocumentRequest]:
        yield pb.UploadDocumentRequest(metadata=metadata)
        for offset in range(0, sent_before_cut, CUT_CHUNK_BYTES):
            piece = data[offset : offset + CUT_CHUNK_BYTES]
            chunk = pb.UploadChunk(
                offset=offset, data=piece, sha256=hashlib.sha256(piece).hexdigest()
            )
            yield pb.UploadDocumentRequest(chunk=chunk)
        stalled.set()
        await asyncio.Event().wait()  # the link stalls here until it is cut

    cut_client = AsyncClient(context.grpc_target, INSECURE, token=bearer_token(token))
    upload = asyncio.create_task(cut_client.rag.upload_document(stream()))
    stall = asyncio.ensure_future(stalled.wait())
    try:
        await asyncio.wait(
            {upload, stall}, timeout=COMMIT_WAIT_S, return_when=asyncio.FIRST_COMPLETED
        )
        stall.cancel()
        committed = await _committed(client.rag, metadata.upload_id, sent_before_cut)
    finally:
        await cut_client.close()  # the connection is cut, the stream with it
        await asyncio.wait({upload}, timeout=COMMIT_WAIT_S)
    cut_outcome = _outcome(upload)
    after_cut = (await client.rag.get_upload_status(upload_id=metadata.upload_id)).status.offset
    # A resume from anywhere but the committed offset is refused.
    wrong_offset = ""
    try:
        await client.rag.upload_document_from_file(
            data, metadata=metadata, offset=0, chunk_bytes=CUT_CHUNK_BYTES
        )
    except FailedPreconditionError as refused:
        wrong_offset = refused.reason.name
    done = await client.rag.upload_document_from_file(
        data, metadata=metadata, offset=after_cut, chunk_bytes=CUT_CHUNK_BYTES
    )
    stored = (await client.rag.get_document(document_id=done.document.id)).document
    problem = _resume_problem(len(data), committed, after_cut, stored.sha256, metadata.sha256)
    if wrong_offset != ErrorReason.ERROR_REASON_UPLOAD_OFFSET_MISMATCH.name:
        problem = problem or f"a resume at offset 0 was not refused ({wrong_offset or 'accepted'})"
    return {
        "via": "gRPC UploadDocument (SDK), channel closed mid-stream",
        "upload_id": metadata.upload_id,
        "chunk_bytes": CUT_CHUNK_BYTES,
        "sent_before_cut": sent_before_cut,
        "committed_at_cut": committed,
        "cut_outcome": cut_outcome,
        "offset_after_cut": after_cut,
        "resume_at_offset_0": wrong_offset,
        "resumed_from": after_cut,
        "resent_bytes": len(data) - after_cut,
        "document_id": stored.id,
        "stored_sha256": stored.sha256,
        "resumed": not problem,
        "problem": problem,
    }


def _outcome(upload: asyncio.Task[Any]) -> str:
    """How a cut upload's call ended, for the raw results (it is cancelled if still running)."""
    if not upload.done():
        upload.cancel()
        return "still running after the cut (cancelled)"
    if upload.cancelled():
        return "cancelled"
    error = upload.exception()
    return f"{type(error).__name__}: {error}"[:200] if error else "answered (not cut)"


async def _committed(rag: AsyncRagClient, upload_id: str, wanted: int) -> int:
    """The upload's committed offset, once it reaches `wanted` (or the wait is over)."""
    deadline = time.monotonic() + COMMIT_WAIT_S
    offset = 0
    while time.monotonic() < deadline:
        try:
            offset = (await rag.get_upload_status(upload_id=upload_id)).status.offset
        except ConductorError:  # not created yet: the stream's first message is on its way
            offset = 0
        if offset >= wanted:
            break
        await asyncio.sleep(0.02)
    return offset


def _resume_problem(
    size: int,
    committed: int,
    after_cut: int,
    stored_sha256: str,
    sha256: str,
    *,
    in_flight: int = 0,
) -> str:
    """What went wrong with a cut and resumed upload ("" when nothing did).

    `in_flight` bytes were sent when the cut came: the offset after it may keep any
    of them (tus keeps what arrived), never more, and never lose what was committed.

    >>> _resume_problem(100, 40, 44, "a", "a", in_flight=8), _resume_problem(100, 40, 39, "a", "a")
    ('', '40 bytes were committed before the cut, 39 after it')
    """
    if not 0 < committed < size:
        return f"the cut did not land part-way ({committed} of {size} bytes committed)"
    if not committed <= after_cut <= committed + in_flight:
        return f"{committed} bytes were committed before the cut, {after_cut} after it"
    if stored_sha256 != sha256:
        return "the stored document's digest is not the original's"
    return ""


async def _settled_offset(http: httpx.AsyncClient, location: str, auth: dict[str, str]) -> int:
    """The upload's offset once the server has finished with a cut PATCH (HEAD, until steady).

    The server commits what arrived before the connection dropped a moment after
    the drop: the offset is read until two reads 100 ms apart agree (at most 3 s).
    """
    previous = -1
    for _ in range(30):
        head = await http.head(location, headers=auth)
        offset = int(head.headers.get("Upload-Offset", "-1"))
        if offset == previous:
            return offset
        previous = offset
        await asyncio.sleep(0.1)
    return previous


async def _cut_over_tus(
    context: Context, client: AsyncClient, token: str, data: bytes
) -> dict[str, Any]:
    """A tus upload: one PATCH, a PATCH cut mid-body, HEAD for the offset, the rest."""
    auth = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    patch = {**auth, "Content-Type": "application/offset+octet-stream"}
    first_part = len(data) // 4

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode("ascii")

    async def cut_body() -> AsyncIterator[bytes]:
        yield data[first_part : first_part + CUT_CHUNK_BYTES]
        await asyncio.sleep(0.05)
        raise ConnectionResetError("the lane cut the PATCH mid-body")

    async with httpx.AsyncClient(base_url=context.http_url, timeout=30.0) as http:
        created = await http.post(
            "/files",
            headers={
                **auth,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": f"filename {b64('cut-tus.txt')},"
                f"sha256 {b64(hashlib.sha256(data).hexdigest())}",
            },
        )
        created.raise_for_status()
        location = created.headers["Location"]
        first = await http.patch(
            location, headers={**patch, "Upload-Offset": "0"}, content=data[:first_part]
        )
        committed = int(first.headers.get("Upload-Offset", "-1"))
        cut_outcome = "answered"
        try:
            await http.patch(
                location, headers={**patch, "Upload-Offset": str(committed)}, content=cut_body()
            )
        except (ConnectionResetError, httpx.HTTPError) as cut:
            cut_outcome = type(cut).__name__
        after_cut = await _settled_offset(http, location, auth)
        rest = await http.patch(
            location, headers={**patch, "Upload-Offset": str(after_cut)}, content=data[after_cut:]
        )
        document_id = rest.headers.get("Conductor-Document-Id", "")
    status, body, _ = await context.graphql(
        token,
        "query($d: ID!) { document(documentId: $d) { document { id sha256 sizeBytes } } }",
        {"d": document_id},
    )
    stored = ((body.get("data") or {}).get("document") or {}).get("document") or {}
    problem = _resume_problem(
        len(data),
        committed,
        after_cut,
        str(stored.get("sha256", "")),
        hashlib.sha256(data).hexdigest(),
        in_flight=CUT_CHUNK_BYTES,
    )
    if status != 200 or not document_id:
        problem = problem or f"no document (PATCH {rest.status_code}, GraphQL {status})"
    return {
        "via": "tus 1.0 over HTTP (/files), PATCH cut mid-body; stored digest read via GraphQL",
        "upload_url": location,
        "committed_at_cut": committed,
        "cut_outcome": cut_outcome,
        "offset_after_cut": after_cut,
        "resumed_from": after_cut,
        "resent_bytes": len(data) - after_cut,
        "document_id": document_id,
        "stored_sha256": stored.get("sha256", ""),
        "resumed": not problem,
        "problem": problem,
    }


async def _no_pii(context: Context, client: AsyncClient, token: str) -> None:
    """Every output of a PII-laden document, under every current purpose: is any value in it?"""
    rag = client.rag
    uploaded = await upload_document_async(
        rag, PII_DOCUMENT, filename="escalation.md", content_type="text/markdown"
    )
    document = uploaded.document
    templates = [t async for t in rag.iter_purpose_templates() if t.current]
    outputs: list[Output] = []
    redactions: dict[str, dict[str, Any]] = {}
    for template in templates:
        kept = frozenset(r.kind for r in template.rules if r.action == pb.PII_ACTION_KEEP)
        label = f"{template.id} v{template.version}"
        summarized = await rag.summarize(document_id=document.id, purpose=template.id)
        outputs.append(Output(f"{label}: Summarize", json_format.MessageToJson(summarized), kept))
        chunks = await rag.list_chunks(document_id=document.id, purpose=template.id)
        outputs.append(Output(f"{label}: ListChunks", json_format.MessageToJson(chunks), kept))
        for kind in template.exports:
            exported = await _export(rag, document.id, template.id, kind)
            name = pb.ExportFormat.Name(kind).removeprefix("EXPORT_FORMAT_").lower()
            outputs.append(
                Output(f"{label}: export {name}", exported.decode(errors="replace"), kept)
            )
        status, body, _ = await context.graphql(
            token,
            "query($d: ID!, $p: String!) { summarize(documentId: $d, purpose: $p) "
            "{ summary { markdown sentences { text } redactions { key value } } } }",
            {"d": document.id, "p": template.id},
        )
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"GraphQL summarize under {template.id}: HTTP {status}")
        outputs.append(Output(f"{label}: GraphQL summarize", json.dumps(body), kept))
        manifest = (await rag.get_manifest(document_id=document.id, purpose=template.id)).manifest
        signed = json.loads(manifest.envelope.payload)
        redactions[label] = {
            "kept_kinds": sorted(kept),
            "summary": dict(sorted(summarized.summary.redactions.items())),
            "manifest": signed.get("redactions"),
        }

    found = pii_found(outputs, PLANTED)
    leaked = {value: names for value, names in found.items() if names}
    unreported = [
        label for label, counts in redactions.items() if counts["summary"] != counts["manifest"]
    ]
    reported = sum(sum((counts["manifest"] or {}).values()) for counts in redactions.values())
    context.raw(
        "pii",
        {
            "document_id": document.id,
            "found_at_ingest": dict(sorted(document.pii_counts.items())),
            "planted": [
                {
                    "kind": value.kind,
                    "masked": value.masked(),
                    "sha256_16": value.digest(),
                    "found_in": found[value],
                }
                for value in PLANTED
            ],
            "outputs": [
                {"name": output.name, "chars": len(output.text), "kept_kinds": sorted(output.kept)}
                for output in outputs
            ],
            "redactions": redactions,
        },
    )
    problems = [
        f"{value.kind} {value.masked()} in {', '.join(names)}" for value, names in leaked.items()
    ]
    problems += [
        f"{label}: the manifest's redactions are not the summary's" for label in unreported
    ]
    if not reported:
        problems.append("no manifest reports any redaction")
    values = sum(len(names) for names in leaked.values())
    context.check(
        NO_PII,
        threshold=THRESHOLDS[NO_PII],
        measured=f"{values} PII values in {len(outputs)} outputs",
        passed=not problems,
        value=float(values),
        detail="; ".join(problems)[:500]
        or (
            f"{len(PLANTED)} values of {len({v.kind for v in PLANTED})} kinds planted; "
            f"{len(templates)} purposes; kinds a purpose keeps are not looked for in its "
            f"outputs; manifests report {reported} redactions"
        ),
    )
