"""The Rag service through the SDK: resumable uploads, lineage, summaries without PII, manifests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intelgraph.sdk import (
    ConductorError,
    ErrorReason,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    upload_document_async,
)
from intelgraph.sdk import rag as pb
from intelgraph.sdk.services import AsyncRagClient

from interceptors import keys
from servers.app import Platform
from servers.cli import main
from servers.rag import outputs, proofs
from servers.rag.pii import KINDS
from servers.rag.screening import second_scan
from servers.rag.service import RagService
from tests.support.clients import SdkClients
from tests.support.documents import minimal_pdf
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

WRITER = ["rag.read", "rag.write"]

#: A Markdown document with sections, repeated text and personal data of several kinds.
MEMO = """# Incident review

## Summary

The storage cluster in region west lost quorum during the upgrade. The upgrade was paused
and the cluster recovered after the third replica rejoined. Customers saw elevated latency
for forty minutes. The upgrade was paused. The upgrade was paused.

## Contacts

Escalations went to Dr. Maria Keller at maria.keller@example.com or +1 415 555 0132.
The billing contact is John Whitaker, card 4111 1111 1111 1111, IBAN DE89370400440532013000.
The bastion at 10.12.7.21 was used with key AKIAIOSFODNN7EXAMPLE by the on-call engineer.

## Follow-up

Replace the quorum timeout with an adaptive one. Add an alert on replica lag above thirty
seconds. Run the upgrade again in a staging region before production. Review the runbook
for quorum loss with the storage team. The upgrade was paused.
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("rag"),
        database_url=module_database_url,
        services="rag",
        rag_max_document_bytes=4 << 20,
        rag_quota_bytes=6 << 20,
    ) as running:
        yield running


@dataclass
class Tenant:
    """A tenant's Rag client with read and write scopes."""

    id: uuid.UUID
    rag: AsyncRagClient


@pytest_asyncio.fixture(loop_scope="module")
async def clients(platform: Platform) -> AsyncIterator[SdkClients]:
    async with contextlib.AsyncExitStack() as closing:
        yield SdkClients(platform.grpc_target, closing)


def tenant_of(platform: Platform, clients: SdkClients, scopes: list[str] = WRITER) -> Tenant:
    tenant = uuid.uuid4()
    minter = Minter(platform.settings)
    return Tenant(tenant, clients.bearing(minter(scopes, tenant=tenant)).rag)


@pytest.fixture
def tenant(platform: Platform, clients: SdkClients) -> Tenant:
    return tenant_of(platform, clients)


def metadata(data: bytes, filename: str = "memo.md", **fields: object) -> pb.UploadMetadata:
    values: dict[str, object] = {
        "upload_id": str(uuid.uuid4()),
        "filename": filename,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **fields,
    }
    return pb.UploadMetadata(**values)  # type: ignore[arg-type]


def parts(
    head: pb.UploadMetadata, data: bytes, start: int, chunk: int
) -> Iterator[pb.UploadDocumentRequest]:
    yield pb.UploadDocumentRequest(metadata=head)
    for offset in range(start, len(data), chunk):
        piece = data[offset : offset + chunk]
        yield pb.UploadDocumentRequest(
            chunk=pb.UploadChunk(
                offset=offset, data=piece, sha256=hashlib.sha256(piece).hexdigest()
            )
        )


async def upload(tenant: Tenant, data: bytes = MEMO.encode(), **fields: object) -> pb.Document:
    response = await upload_document_async(
        tenant.rag, data, filename=str(fields.pop("filename", "memo.md")), chunk_bytes=256
    )
    assert response.status.state == pb.UPLOAD_STATE_COMPLETE
    return response.document


# -- uploads ---------------------------------------------------------------------------


async def test_upload_completes_into_a_document_with_exact_chunks(tenant: Tenant) -> None:
    document = await upload(tenant)
    data = MEMO.encode()
    assert document.sha256 == document.text_sha256 == hashlib.sha256(data).hexdigest()
    assert document.size_bytes == document.text_bytes == len(data)
    assert document.content_type == "text/markdown"
    assert document.pii_counts["email"] == 1
    chunks = [
        chunk
        async for chunk in tenant.rag.iter_chunks(document_id=document.id, purpose="legal-review")
    ]
    assert len(chunks) == document.chunk_count > 1
    for position, chunk in enumerate(chunks):
        lineage = chunk.lineage
        source = data[lineage.byte_start : lineage.byte_end]
        assert hashlib.sha256(source).hexdigest() == chunk.sha256
        assert MEMO[lineage.char_start : lineage.char_end].encode() == source
        assert lineage.anchor == f"c{chunk.index}"
        assert lineage.previous_chunk_id == (chunks[position - 1].id if position else "")
        assert lineage.next_chunk_id == (
            chunks[position + 1].id if position + 1 < len(chunks) else ""
        )
        assert lineage.section_path[0] == "Incident review"
    contacts = [chunk for chunk in chunks if "Contacts" in chunk.lineage.section_path]
    assert contacts
    served = "\n".join(chunk.text for chunk in contacts)
    assert "maria.keller@example.com" not in served
    assert "[EMAIL]" in served
    assert "4111 1111 1111 1111" not in served
    assert "Maria Keller" in served


async def test_a_cut_upload_resumes_from_the_committed_offset(tenant: Tenant) -> None:
    data = MEMO.encode() * 3
    head = metadata(data)
    cut = 700  # a stream that sends the metadata and the chunks before byte 700
    first = await tenant.rag.upload_document(
        request
        for request in parts(head, data, 0, 256)
        if not request.HasField("chunk") or request.chunk.offset < cut
    )
    assert first.status.state == pb.UPLOAD_STATE_RECEIVING
    assert first.status.offset == 768  # whole chunks only: 0, 256, 512 of 256 bytes each
    status = await tenant.rag.get_upload_status(upload_id=head.upload_id)
    assert status.status.offset == 768
    with pytest.raises(FailedPreconditionError) as refused:
        await tenant.rag.upload_document(parts(head, data, 512, 256))
    assert refused.value.reason == ErrorReason.ERROR_REASON_UPLOAD_OFFSET_MISMATCH
    assert refused.value.metadata["offset"] == "768"
    done = await tenant.rag.upload_document(parts(head, data, 768, 256))
    assert done.status.state == pb.UPLOAD_STATE_COMPLETE
    assert done.document.sha256 == hashlib.sha256(data).hexdigest()
    again = await tenant.rag.upload_document(parts(head, data, len(data), 256))
    assert again.document.id == done.document.id  # resuming a complete upload answers it


async def test_a_damaged_chunk_is_refused_and_not_committed(tenant: Tenant) -> None:
    data = MEMO.encode()
    head = metadata(data)
    damaged = pb.UploadChunk(offset=0, data=data[:100], sha256=hashlib.sha256(b"x").hexdigest())
    with pytest.raises(InvalidArgumentError) as refused:
        await tenant.rag.upload_document(
            iter(
                [
                    pb.UploadDocumentRequest(metadata=head),
                    pb.UploadDocumentRequest(chunk=damaged),
                ]
            )
        )
    assert refused.value.reason == ErrorReason.ERROR_REASON_CHECKSUM_MISMATCH
    status = await tenant.rag.get_upload_status(upload_id=head.upload_id)
    assert status.status.offset == 0


async def test_a_wrong_whole_file_digest_fails_the_upload(tenant: Tenant) -> None:
    data = MEMO.encode()
    head = metadata(data, sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(InvalidArgumentError) as refused:
        await tenant.rag.upload_document(parts(head, data, 0, 1024))
    assert refused.value.reason == ErrorReason.ERROR_REASON_CHECKSUM_MISMATCH
    status = await tenant.rag.get_upload_status(upload_id=head.upload_id)
    assert status.status.state == pb.UPLOAD_STATE_FAILED
    assert "declared" in status.status.problem


async def test_resuming_with_other_metadata_conflicts(tenant: Tenant) -> None:
    data = MEMO.encode()
    head = metadata(data)
    await tenant.rag.upload_document(iter([pb.UploadDocumentRequest(metadata=head)]))
    other = pb.UploadMetadata()
    other.CopyFrom(head)
    other.size_bytes += 1
    with pytest.raises(FailedPreconditionError) as refused:
        await tenant.rag.upload_document(iter([pb.UploadDocumentRequest(metadata=other)]))
    assert refused.value.reason == ErrorReason.ERROR_REASON_UPLOAD_CONFLICT


async def test_limits_and_formats_are_refused_clearly(tenant: Tenant) -> None:
    with pytest.raises(ResourceExhaustedError) as too_big:
        await tenant.rag.upload_document(
            iter([pb.UploadDocumentRequest(metadata=metadata(b"x", size_bytes=5 << 20))])
        )
    assert too_big.value.reason == ErrorReason.ERROR_REASON_STORAGE_QUOTA_EXCEEDED
    with pytest.raises(InvalidArgumentError) as unsupported:
        await tenant.rag.upload_document(
            iter([pb.UploadDocumentRequest(metadata=metadata(b"x", filename="a.exe"))])
        )
    assert unsupported.value.reason == ErrorReason.ERROR_REASON_MEDIA_TYPE_UNSUPPORTED
    broken = b"\xff\xfe not utf-8"
    with pytest.raises(InvalidArgumentError) as unreadable:
        await tenant.rag.upload_document(parts(metadata(broken, filename="a.txt"), broken, 0, 64))
    assert unreadable.value.reason == ErrorReason.ERROR_REASON_DOCUMENT_UNREADABLE


async def test_the_quota_counts_unfinished_uploads(platform: Platform, clients: SdkClients) -> None:
    tenant = tenant_of(platform, clients)
    head = metadata(b"x", size_bytes=4 << 20)
    await tenant.rag.upload_document(iter([pb.UploadDocumentRequest(metadata=head)]))
    with pytest.raises(ResourceExhaustedError) as refused:
        await tenant.rag.upload_document(
            iter([pb.UploadDocumentRequest(metadata=metadata(b"x", size_bytes=3 << 20))])
        )
    assert refused.value.reason == ErrorReason.ERROR_REASON_STORAGE_QUOTA_EXCEEDED
    await tenant.rag.cancel_upload(upload_id=head.upload_id)
    with pytest.raises(NotFoundError):
        await tenant.rag.get_upload_status(upload_id=head.upload_id)
    await tenant.rag.upload_document(
        iter([pb.UploadDocumentRequest(metadata=metadata(b"x", size_bytes=3 << 20))])
    )


# -- summaries, templates, exports -----------------------------------------------------


async def test_summaries_follow_the_purpose_and_hold_no_pii(tenant: Tenant) -> None:
    document = await upload(tenant)
    templates = (await tenant.rag.list_purpose_templates()).templates
    assert {t.id for t in templates} >= {"legal-review", "analytics", "support"}
    for template in templates:
        summary = (
            await tenant.rag.summarize(
                document_id=document.id, purpose=template.id, purpose_version=template.version
            )
        ).summary
        assert 0 < len(summary.sentences) <= template.max_sentences
        kept = {rule.kind for rule in template.rules if rule.action == pb.PII_ACTION_KEEP}
        assert second_scan(summary.markdown, [k for k in KINDS if k not in kept]) == []
        assert hashlib.sha256(summary.markdown.encode()).hexdigest() == summary.markdown_sha256
        for sentence in summary.sentences:
            source = MEMO.encode()[sentence.byte_start : sentence.byte_end]
            assert source.decode() == MEMO[sentence.char_start : sentence.char_end]
            if "[" not in sentence.text:
                assert sentence.text == source.decode()
        again = await tenant.rag.summarize(
            document_id=document.id, purpose=template.id, purpose_version=template.version
        )
        assert again.summary.markdown == summary.markdown  # deterministic, byte for byte
    analytics = (await tenant.rag.summarize(document_id=document.id, purpose="analytics")).summary
    assert all("[" not in sentence.text for sentence in analytics.sentences)  # dropped, unused


async def test_unknown_purposes_are_invalid(tenant: Tenant) -> None:
    document = await upload(tenant)
    for purpose, version in (("marketing", 0), ("support", 99)):
        with pytest.raises(InvalidArgumentError) as refused:
            await tenant.rag.summarize(
                document_id=document.id, purpose=purpose, purpose_version=version
            )
        assert refused.value.reason == ErrorReason.ERROR_REASON_PURPOSE_UNKNOWN
    with pytest.raises(InvalidArgumentError) as unnamed:
        await tenant.rag.summarize(document_id=document.id, purpose="")
    assert unnamed.value.metadata["field"] == "purpose"


async def test_exports_stream_resume_and_obey_the_template(tenant: Tenant) -> None:
    document = await upload(tenant)
    pieces = [
        response
        async for response in tenant.rag.export_document(
            document_id=document.id,
            purpose="support",
            format=pb.EXPORT_FORMAT_CHUNKS_JSONL,
        )
    ]
    info = pieces[0].info
    whole = b"".join(piece.data for piece in pieces)
    assert hashlib.sha256(whole).hexdigest() == info.sha256
    assert len(whole) == info.size_bytes
    lines = [json.loads(line) for line in whole.decode().splitlines()]
    assert len(lines) == document.chunk_count
    assert all(line["lineage"]["anchor"] == f"c{line['index']}" for line in lines)
    tail = [
        response
        async for response in tenant.rag.export_document(
            document_id=document.id,
            purpose="support",
            format=pb.EXPORT_FORMAT_CHUNKS_JSONL,
            offset=100,
        )
    ]
    assert b"".join(piece.data for piece in tail) == whole[100:]
    with pytest.raises(FailedPreconditionError) as refused:
        async for _ in tenant.rag.export_document(
            document_id=document.id, purpose="analytics", format=pb.EXPORT_FORMAT_CHUNKS_JSONL
        ):
            pass
    assert refused.value.reason == ErrorReason.ERROR_REASON_EXPORT_NOT_ALLOWED


# -- manifests -------------------------------------------------------------------------


async def test_manifests_are_signed_stable_and_verify_offline(tenant: Tenant) -> None:
    document = await upload(tenant)
    first = (
        await tenant.rag.get_manifest(document_id=document.id, purpose="legal-review")
    ).manifest
    second = (
        await tenant.rag.get_manifest(document_id=document.id, purpose="legal-review")
    ).manifest
    assert first == second  # issued once, then the same bytes
    jwks = await tenant.rag.get_jwks()
    keys = proofs.ed25519_keys(
        [{"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid} for k in jwks.keys]
    )
    envelope = {
        "payload": base64.b64encode(first.envelope.payload).decode(),
        "payloadType": first.envelope.payload_type,
        "signatures": [
            {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()}
            for s in first.envelope.signatures
        ],
    }
    verified = proofs.verify_envelope(envelope, keys, document=MEMO.encode())
    assert verified.text_checked
    assert verified.manifest["merkle"]["root"] == first.merkle_root
    summary = (await tenant.rag.summarize(document_id=document.id, purpose="legal-review")).summary
    assert verified.manifest["output"]["sha256"] == summary.markdown_sha256
    assert verified.manifest["purpose"] == {"id": "legal-review", "version": 1}

    checked = await tenant.rag.verify_manifest(envelope=first.envelope, check_document=True)
    assert checked.valid
    assert checked.merkle_root == first.merkle_root
    tampered = pb.DsseEnvelope()
    tampered.CopyFrom(first.envelope)
    tampered.payload = first.envelope.payload.replace(b'"legal-review"', b'"legal-reviex"')
    refused = await tenant.rag.verify_manifest(envelope=tampered)
    assert not refused.valid
    assert refused.failed_check == "signature"

    chunks = (await tenant.rag.list_chunks(document_id=document.id, purpose="legal-review")).chunks
    for chunk in chunks:
        proof = await tenant.rag.get_inclusion_proof(document_id=document.id, chunk_id=chunk.id)
        assert proof.merkle_root == first.merkle_root
        assert len(proof.hashes) <= max(1, (len(chunks) - 1).bit_length())
        source = MEMO.encode()[chunk.lineage.byte_start : chunk.lineage.byte_end]
        assert proofs.verify_inclusion(
            proofs.leaf_hash(source),
            proof.leaf_index,
            proof.tree_size,
            [bytes.fromhex(h) for h in proof.hashes],
            bytes.fromhex(proof.merkle_root),
        )


# -- deletion and tenancy --------------------------------------------------------------


async def test_delete_removes_the_document_and_all_it_led_to(tenant: Tenant) -> None:
    document = await upload(tenant)
    await tenant.rag.get_manifest(document_id=document.id, purpose="support")
    await tenant.rag.delete_document(document_id=document.id)
    for call in (
        tenant.rag.get_document(document_id=document.id),
        tenant.rag.list_chunks(document_id=document.id, purpose="support"),
        tenant.rag.get_manifest(document_id=document.id, purpose="support"),
        tenant.rag.delete_document(document_id=document.id),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_tenants_never_see_each_other(platform: Platform, clients: SdkClients) -> None:
    owner, other = tenant_of(platform, clients), tenant_of(platform, clients)
    document = await upload(owner)
    assert [d.id for d in (await other.rag.list_documents()).documents] == []
    for call in (
        other.rag.get_document(document_id=document.id),
        other.rag.summarize(document_id=document.id, purpose="support"),
        other.rag.delete_document(document_id=document.id),
    ):
        with pytest.raises(NotFoundError):
            await call
    assert (await owner.rag.get_document(document_id=document.id)).document.id == document.id


async def test_reads_need_rag_read(platform: Platform, clients: SdkClients) -> None:
    reader = tenant_of(platform, clients, ["rag.read"])
    with pytest.raises(ConductorError) as refused:
        await upload(reader)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


# -- resumption as a property ----------------------------------------------------------


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.binary(min_size=1, max_size=3000).map(lambda b: b.hex().encode()),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=4),
    chunk=st.integers(min_value=1, max_value=700),
)
async def test_any_cuts_and_resumes_give_back_the_exact_bytes(
    tenant: Tenant, data: bytes, cuts: list[int], chunk: int
) -> None:
    head = metadata(data, filename="blob.txt")
    offset = 0
    for cut in sorted(cuts):  # each stream is cut after `cut` bytes of chunks went out
        sent = [
            request
            for request in parts(head, data, offset, chunk)
            if not request.HasField("chunk") or request.chunk.offset < max(cut, offset + 1)
        ]
        response = await tenant.rag.upload_document(iter(sent))
        delivered = [r.chunk for r in sent if r.HasField("chunk")]
        committed = (await tenant.rag.get_upload_status(upload_id=head.upload_id)).status.offset
        # Every whole chunk that arrived is committed, nothing more: the next
        # stream re-sends only what was in flight.
        expected = delivered[-1].offset + len(delivered[-1].data) if delivered else offset
        assert committed == response.status.offset == expected
        offset = committed
        if offset == len(data):
            break
    done = await tenant.rag.upload_document(parts(head, data, offset, chunk))
    assert done.status.state == pb.UPLOAD_STATE_COMPLETE
    assert done.document.sha256 == hashlib.sha256(data).hexdigest()
    exported = await tenant.rag.get_document(document_id=done.document.id)
    assert exported.document.size_bytes == len(data)


# -- offline verification with the CLI -------------------------------------------------


async def test_conductor_rag_verify_checks_an_exported_manifest_offline(
    tenant: Tenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = await upload(tenant)
    manifest = tmp_path / "manifest.json"
    await tenant.rag.export_document_to_file(
        manifest,
        document_id=document.id,
        purpose="support",
        format=pb.EXPORT_FORMAT_MANIFEST_JSON,
    )
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json_format.MessageToJson(await tenant.rag.get_jwks()))
    source = tmp_path / "memo.md"
    source.write_bytes(MEMO.encode())
    verify = ["rag", "verify", str(manifest), "--jwks", str(jwks)]

    assert main([*verify, "--document", str(source)]) == 0
    assert f"valid manifest of document {document.id} for support v" in capsys.readouterr().out

    flipped = bytearray(MEMO.encode())
    flipped[len(flipped) // 2] ^= 0x01
    source.write_bytes(bytes(flipped))
    assert main([*verify, "--document", str(source)]) == 1
    assert "NOT VALID (document_digest)" in capsys.readouterr().err

    envelope = json.loads(manifest.read_text())
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[0] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(signature)).decode()
    manifest.write_text(json.dumps(envelope))
    assert main(verify) == 1
    assert "NOT VALID (signature)" in capsys.readouterr().err


# -- GraphQL reads ---------------------------------------------------------------------

DOCUMENT_QUERY = """
query Document($id: ID!) {
  document(documentId: $id) { document { id sha256 chunkCount piiCounts { key value } } }
  chunks(documentId: $id, purpose: "support") {
    chunks { id text lineage { byteStart byteEnd anchor sectionPath } }
  }
  summarize(documentId: $id, purpose: "support") {
    summary { markdownSha256 sentences { text anchor byteStart byteEnd } }
  }
  manifest(documentId: $id, purpose: "support") { manifest { merkleRoot chunkCount } }
}
"""


async def test_graphql_reads_documents_chunks_summaries_and_manifests(
    platform: Platform, tenant: Tenant
) -> None:
    document = await upload(tenant)
    token = Minter(platform.settings)(["rag.read"], tenant=tenant.id)
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://127.0.0.1:{platform.http_port}/graphql",
            json={"query": DOCUMENT_QUERY, "variables": {"id": document.id}},
            headers={"Authorization": f"Bearer {token}"},
        )
    body = answer.json()
    assert "errors" not in body, body
    data = body["data"]
    assert data["document"]["document"]["sha256"] == document.sha256
    chunks = data["chunks"]["chunks"]
    assert len(chunks) == document.chunk_count
    assert all("maria.keller@example.com" not in chunk["text"] for chunk in chunks)
    for chunk in chunks:
        start, end = int(chunk["lineage"]["byteStart"]), int(chunk["lineage"]["byteEnd"])
        assert MEMO.encode()[start:end]
    summary = data["summarize"]["summary"]
    assert summary["sentences"]
    assert data["manifest"]["manifest"]["chunkCount"] == document.chunk_count


# -- metrics ---------------------------------------------------------------------------


async def scrape(platform: Platform) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{platform.http_port}/metrics")).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_metrics_move_with_summaries_resumes_redactions_and_refusals(
    platform: Platform, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await scrape(platform)
    document = await upload(tenant)
    await tenant.rag.summarize(document_id=document.id, purpose="support")
    await tenant.rag.list_chunks(document_id=document.id, purpose="support")  # masks the email
    data = MEMO.encode()
    head = metadata(data)
    await tenant.rag.upload_document(
        request for request in parts(head, data, 0, 256) if request.chunk.offset < 256
    )
    await tenant.rag.get_upload_status(upload_id=head.upload_id)  # how a client resumes
    # A recognizer that misses everything (fault injected): the independent screen still
    # finds what it missed, so the output is refused rather than sent.
    monkeypatch.setattr(outputs, "redact", lambda text, findings, actions: (text, Counter()))
    with pytest.raises(FailedPreconditionError) as refused:
        await tenant.rag.summarize(document_id=document.id, purpose="legal-review")
    assert refused.value.reason == ErrorReason.ERROR_REASON_OUTPUT_REFUSED
    kinds = refused.value.metadata["kinds"].split(",")
    assert kinds
    assert set(kinds) <= set(KINDS)
    assert "@" not in refused.value.details  # the refusal names kinds, never the data
    after = await scrape(platform)

    def moved(sample: str) -> float:
        return after.get(sample, 0.0) - before.get(sample, 0.0)

    assert moved('rag_summaries_total{purpose="support"}') >= 1
    assert moved("rag_uploads_resumed_total") >= 1
    assert moved('rag_redactions_total{kind="email"}') >= 1
    assert moved('rag_outputs_refused_total{output="summary"}') == 1
    assert moved("rag_uploads_completed_total") >= 1


# -- formats ---------------------------------------------------------------------------


async def test_a_pdf_keeps_its_pages_and_its_text_is_proven_on_the_server(tenant: Tenant) -> None:
    pages = [
        ["Quarterly review of the storage platform.", "Latency stayed within budget."],
        ["The second page covers the upgrade.", "It finished without data loss."],
    ]
    pdf = minimal_pdf(pages)
    document = await upload(tenant, pdf, filename="review.pdf")
    assert document.content_type == "application/pdf"
    assert document.page_count == 2
    assert document.text_sha256 != document.sha256  # the chunks index the extracted text
    chunks = [
        chunk async for chunk in tenant.rag.iter_chunks(document_id=document.id, purpose="support")
    ]
    assert [chunk.lineage.page for chunk in chunks] == [1, 2]
    assert "second page" in chunks[1].text
    manifest = (await tenant.rag.get_manifest(document_id=document.id, purpose="support")).manifest
    checked = await tenant.rag.verify_manifest(envelope=manifest.envelope, check_document=True)
    assert checked.valid, checked.problem


async def test_html_headings_become_section_paths(tenant: Tenant) -> None:
    html = (
        b"<html><head><title>t</title><style>p{}</style></head><body>"
        b"<h1>Runbook</h1><p>Start with the dashboards.</p>"
        b"<h2>Failover</h2><p>Promote the replica. Then repoint the clients.</p>"
        b"<script>alert('x')</script></body></html>"
    )
    document = await upload(tenant, html, filename="runbook.html")
    chunks = (await tenant.rag.list_chunks(document_id=document.id, purpose="support")).chunks
    paths = [list(chunk.lineage.section_path) for chunk in chunks]
    assert paths == [["Runbook"], ["Runbook", "Failover"]]
    assert all("alert" not in chunk.text for chunk in chunks)


async def test_abandoned_uploads_expire_and_are_freed(
    module_database_url: str, tmp_path: Path
) -> None:
    async with serving(
        tmp_path, database_url=module_database_url, services="rag", rag_upload_ttl=0.3
    ) as running:
        minter = Minter(running.settings)
        async with contextlib.AsyncExitStack() as closing:
            rag = SdkClients(running.grpc_target, closing).bearing(minter(WRITER)).rag
            data = MEMO.encode()
            head = metadata(data)
            await rag.upload_document(
                request for request in parts(head, data, 0, 256) if request.chunk.offset < 256
            )
            await asyncio.sleep(0.4)
            with pytest.raises(FailedPreconditionError) as expired:
                await rag.upload_document(parts(head, data, 256, 256))
            assert expired.value.reason == ErrorReason.ERROR_REASON_UPLOAD_EXPIRED
            freed = await running.servicer(RagService).uploads.expire_due()
            assert freed >= 1
            with pytest.raises(NotFoundError):
                await rag.get_upload_status(upload_id=head.upload_id)


async def test_headings_are_redacted_like_the_text(tenant: Tenant) -> None:
    note = b"# Dispute with John Whitaker\n\nThe parties met twice. They agreed on a schedule.\n"
    document = await upload(tenant, note, filename="dispute.md")
    support = (await tenant.rag.list_chunks(document_id=document.id, purpose="support")).chunks
    assert [list(chunk.lineage.section_path) for chunk in support] == [["Dispute with [PERSON]"]]
    legal = (await tenant.rag.list_chunks(document_id=document.id, purpose="legal-review")).chunks
    assert list(legal[0].lineage.section_path) == ["Dispute with John Whitaker"]  # kept


async def test_upload_ids_are_per_tenant(platform: Platform, clients: SdkClients) -> None:
    first, second = tenant_of(platform, clients), tenant_of(platform, clients)
    data = MEMO.encode()
    head = metadata(data)
    await first.rag.upload_document([pb.UploadDocumentRequest(metadata=head)])  # a list works
    mine = await second.rag.upload_document(parts(head, data, 0, 1024))  # the same id, its own
    assert mine.status.state == pb.UPLOAD_STATE_COMPLETE
    theirs = await first.rag.get_upload_status(upload_id=head.upload_id)
    assert theirs.status.offset == 0


async def test_rotated_keys_sign_new_manifests_and_old_ones_still_verify(
    platform: Platform, tenant: Tenant
) -> None:
    document = await upload(tenant)
    before = (await tenant.rag.get_manifest(document_id=document.id, purpose="support")).manifest
    keys.rotate(platform.settings.manifest_keys_dir, "EdDSA")
    await asyncio.sleep(keys.RELOAD_INTERVAL_S + 0.1)  # the ring is re-read within a second
    after = (await tenant.rag.get_manifest(document_id=document.id, purpose="analytics")).manifest
    assert after.envelope.signatures[0].keyid != before.envelope.signatures[0].keyid
    published = {key.kid for key in (await tenant.rag.get_jwks()).keys}
    assert {
        before.envelope.signatures[0].keyid,
        after.envelope.signatures[0].keyid,
    } <= published
    for manifest in (before, after):
        verdict = await tenant.rag.verify_manifest(envelope=manifest.envelope)
        assert verdict.valid, verdict.problem
