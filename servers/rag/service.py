"""The RagService servicer: translates messages and calls the use cases, nothing else."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format
from intelgraph.common.v1.pagination_pb2 import PageResponse
from intelgraph.rag.v1 import rag_service_pb2 as pb
from intelgraph.rag.v1 import rag_service_pb2_grpc

from core.errors import InvalidArgument
from core.pagination import SEQUENCE, TIME_AND_ID, Page
from core.times import to_timestamp
from interceptors import current_principal
from servers.jobs import every_under_lease
from servers.rag import outputs, templates
from servers.rag.documents import Documents
from servers.rag.exports import EXPORT_CHUNK_BYTES, Export, Exports
from servers.rag.manifests import InclusionProof, Manifests, Verdict, signed_manifest
from servers.rag.reads import ChunkPage, Reads
from servers.rag.store import DocumentRow, ManifestRow, UploadRow
from servers.rag.templates import PurposeTemplate
from servers.rag.uploads import NewUpload, Uploads
from servers.runtime import Job, PlatformServicer, Runtime, ServiceDefinition
from servers.switches import RAG_SUMMARY_TEMPLATES

logger = logging.getLogger(__name__)

_UPLOAD_STATE = {
    "receiving": pb.UPLOAD_STATE_RECEIVING,
    "complete": pb.UPLOAD_STATE_COMPLETE,
    "failed": pb.UPLOAD_STATE_FAILED,
}
_ACTION = {
    templates.KEEP: pb.PII_ACTION_KEEP,
    templates.MASK: pb.PII_ACTION_MASK,
    templates.DROP: pb.PII_ACTION_DROP,
}
_FORMAT = {
    templates.SUMMARY_MARKDOWN: pb.EXPORT_FORMAT_SUMMARY_MARKDOWN,
    templates.CHUNKS_JSONL: pb.EXPORT_FORMAT_CHUNKS_JSONL,
    templates.MANIFEST_JSON: pb.EXPORT_FORMAT_MANIFEST_JSON,
}
_FORMAT_NAME = {number: name for name, number in _FORMAT.items()}


def _upload_status(row: UploadRow, now: datetime) -> pb.UploadStatus:
    state = _UPLOAD_STATE[row.state]
    if row.state == "receiving" and row.expires_at <= now:
        state = pb.UPLOAD_STATE_EXPIRED
    return pb.UploadStatus(
        upload_id=str(row.id),
        state=state,
        offset=row.committed_bytes,
        size_bytes=row.size_bytes,
        document_id=str(row.document_id or ""),
        problem=row.problem,
        expires_at=to_timestamp(row.expires_at) if row.state != "complete" else None,
        filename=row.filename,
        content_type=row.content_type,
        sha256=row.sha256,
    )


def _document(row: DocumentRow) -> pb.Document:
    return pb.Document(
        id=str(row.id),
        filename=row.filename,
        content_type=row.media_type,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        chunk_count=row.chunk_count,
        created_at=to_timestamp(row.created_at),
        text_sha256=row.text_sha256,
        text_bytes=row.text_bytes,
        page_count=row.page_count,
        pii_counts=row.pii_counts,
    )


def _purpose(template: PurposeTemplate) -> pb.Purpose:
    return pb.Purpose(id=template.id, version=template.version)


def _template(template: PurposeTemplate, current: Mapping[str, int]) -> pb.PurposeTemplate:
    return pb.PurposeTemplate(
        id=template.id,
        version=template.version,
        name=template.name,
        description=template.description,
        max_sentences=template.max_sentences,
        rules=[
            pb.PiiRule(kind=kind, action=_ACTION[action])
            for kind, action in template.rules().items()
        ],
        exports=[_FORMAT[name] for name in template.exports],
        current=current[template.id] == template.version,
    )


def _chunk(record: dict[str, Any]) -> pb.Chunk:
    chunk = pb.Chunk()
    json_format.ParseDict(record, chunk)
    return chunk


def _manifest(row: ManifestRow) -> pb.Manifest:
    envelope = pb.DsseEnvelope()
    json_format.ParseDict(row.envelope, envelope)
    return pb.Manifest(
        envelope=envelope,
        document_id=str(row.document_id),
        document_sha256=signed_manifest(row.envelope)["document"]["sha256"],
        purpose=pb.Purpose(id=row.purpose_id, version=row.purpose_version),
        merkle_root=row.merkle_root,
        chunk_count=row.chunk_count,
        issued_at=to_timestamp(row.issued_at),
    )


def _proof(proof: InclusionProof) -> pb.GetInclusionProofResponse:
    return pb.GetInclusionProofResponse(
        chunk_id=proof.chunk_id,
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        leaf_hash=proof.leaf_hash.hex(),
        hashes=[step.hex() for step in proof.hashes],
        merkle_root=proof.root.hex(),
    )


def _verdict(verdict: Verdict) -> pb.VerifyManifestResponse:
    response = pb.VerifyManifestResponse(
        valid=verdict.valid, problem=verdict.problem, failed_check=verdict.failed_check
    )
    if verdict.verified is not None:
        manifest = verdict.verified.manifest
        response.key_id = verdict.verified.keyid
        response.document_id = str(manifest["document"]["id"])
        response.purpose.CopyFrom(
            pb.Purpose(id=manifest["purpose"]["id"], version=manifest["purpose"]["version"])
        )
        response.merkle_root = str(manifest["merkle"]["root"])
    return response


def _export_info(export: Export) -> pb.ExportInfo:
    return pb.ExportInfo(
        document=_document(export.document),
        format=_FORMAT[export.format],
        media_type=export.media_type,
        filename=export.filename,
        size_bytes=len(export.data),
        sha256=export.sha256,
        purpose=_purpose(export.template),
    )


class RagService(PlatformServicer, rag_service_pb2_grpc.RagServiceServicer):
    """Resumable ingest, chunk lineage, extractive summaries, purpose templates, proof manifests."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.uploads = Uploads(runtime)
        self.documents = Documents(runtime, self.uploads)
        self.manifests = Manifests(runtime, self.documents)
        self.reads = Reads(runtime, self.documents)
        self.exports = Exports(runtime, self.documents, self.manifests)
        if runtime.switches is not None:
            runtime.switches.add_check(RAG_SUMMARY_TEMPLATES, self._check_pins)

    def _check_pins(self, value: str) -> str | None:
        """What is wrong with pins of rag.summary_templates: no such template, a purpose twice."""
        seen: set[str] = set()
        for pin in filter(None, value.split(",")):
            purpose, _, version = pin.partition(":")
            if purpose in seen:
                return f"holds {purpose} twice"
            seen.add(purpose)
            if not any(t.id == purpose and str(t.version) == version for t in templates.TEMPLATES):
                return f"names no template {pin} (ListPurposeTemplates names them)"
        return None

    def _purpose_template(self, purpose: str, version: int) -> PurposeTemplate:
        """The template a request names; its current one may be held back by a switch.

        A request that asks for the current version (0) gets the version the backout
        switch `rag.summary_templates` holds its purpose at, when it names one that exists.

        Raises:
            InvalidArgument: No such purpose or version.
        """
        switches = self.runtime.switches
        pinned = switches.pinned_templates().get(purpose.strip()) if switches else None
        if version == 0 and pinned is not None:
            try:
                return templates.template(purpose, pinned)
            except InvalidArgument:
                logger.warning(
                    "switch %s holds %s at version %s, which does not exist: the current one "
                    "is used",
                    RAG_SUMMARY_TEMPLATES,
                    purpose,
                    pinned,
                )
        return templates.template(purpose, version)

    def background_jobs(self) -> list[Job]:
        """Abandoned uploads freed past their expiry (one replica at a time)."""
        return [
            functools.partial(
                every_under_lease,
                self.runtime.database,
                "rag.uploads.expiry",
                60.0,
                self.uploads.expire_due,
            )
        ]

    async def UploadDocument(
        self,
        request_iterator: AsyncIterator[pb.UploadDocumentRequest],
        context: grpc.aio.ServicerContext[pb.UploadDocumentRequest, pb.UploadDocumentResponse],
    ) -> pb.UploadDocumentResponse:
        """Create or resume an upload, append its chunks, complete it with the last one."""
        principal = current_principal()
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument("an upload stream starts with its metadata", field="metadata")
        declared = first.metadata
        upload = await self.uploads.open(
            principal,
            NewUpload(
                upload_id=declared.upload_id,
                filename=declared.filename,
                content_type=declared.content_type,
                size_bytes=declared.size_bytes,
                sha256=declared.sha256,
            ),
        )
        async for message in request_iterator:
            if not message.HasField("chunk"):
                raise InvalidArgument("after the metadata, send only chunks", field="chunk")
            if not message.chunk.data:
                continue
            upload = await self.uploads.append(
                principal,
                upload.id,
                message.chunk.offset,
                message.chunk.data,
                message.chunk.sha256,
            )
        response = pb.UploadDocumentResponse()
        if upload.state != "failed" and upload.committed_bytes == upload.size_bytes:
            document = await self.documents.complete(principal, upload)
            upload = await self.uploads.status(principal, str(upload.id))
            response.document.CopyFrom(_document(document))
        response.status.CopyFrom(_upload_status(upload, self.runtime.clock()))
        return response

    async def GetUploadStatus(
        self,
        request: pb.GetUploadStatusRequest,
        context: grpc.aio.ServicerContext[pb.GetUploadStatusRequest, pb.GetUploadStatusResponse],
    ) -> pb.GetUploadStatusResponse:
        """An upload's committed offset and state."""
        row = await self.uploads.status(current_principal(), request.upload_id)
        return pb.GetUploadStatusResponse(status=_upload_status(row, self.runtime.clock()))

    async def CancelUpload(
        self,
        request: pb.CancelUploadRequest,
        context: grpc.aio.ServicerContext[pb.CancelUploadRequest, pb.CancelUploadResponse],
    ) -> pb.CancelUploadResponse:
        """Abandon an unfinished upload."""
        await self.uploads.cancel(current_principal(), request.upload_id)
        return pb.CancelUploadResponse()

    async def GetDocument(
        self,
        request: pb.GetDocumentRequest,
        context: grpc.aio.ServicerContext[pb.GetDocumentRequest, pb.GetDocumentResponse],
    ) -> pb.GetDocumentResponse:
        """One document."""
        row = await self.documents.get(current_principal(), request.document_id)
        return pb.GetDocumentResponse(document=_document(row))

    async def ListDocuments(
        self,
        request: pb.ListDocumentsRequest,
        context: grpc.aio.ServicerContext[pb.ListDocumentsRequest, pb.ListDocumentsResponse],
    ) -> pb.ListDocumentsResponse:
        """The tenant's documents, newest first."""
        listed = await self.documents.list(current_principal(), Page.of(request, TIME_AND_ID))
        return pb.ListDocumentsResponse(
            documents=[_document(row) for row in listed.rows],
            page=PageResponse(next_page_token=listed.next_page_token),
        )

    async def DeleteDocument(
        self,
        request: pb.DeleteDocumentRequest,
        context: grpc.aio.ServicerContext[pb.DeleteDocumentRequest, pb.DeleteDocumentResponse],
    ) -> pb.DeleteDocumentResponse:
        """Delete a document and everything derived from it."""
        await self.documents.delete(current_principal(), request.document_id)
        return pb.DeleteDocumentResponse()

    async def ListChunks(
        self,
        request: pb.ListChunksRequest,
        context: grpc.aio.ServicerContext[pb.ListChunksRequest, pb.ListChunksResponse],
    ) -> pb.ListChunksResponse:
        """A page of a document's chunks, redacted under the purpose, with lineage."""
        template = self._purpose_template(request.purpose, request.purpose_version)
        page: ChunkPage = await self.reads.chunks(
            current_principal(),
            request.document_id,
            template,
            Page.of(request, SEQUENCE, document_id=request.document_id),
        )
        return pb.ListChunksResponse(
            chunks=[_chunk(record) for record in page.records],
            page=PageResponse(next_page_token=page.next_page_token),
            purpose=_purpose(template),
        )

    async def Summarize(
        self,
        request: pb.SummarizeRequest,
        context: grpc.aio.ServicerContext[pb.SummarizeRequest, pb.SummarizeResponse],
    ) -> pb.SummarizeResponse:
        """The extractive summary under the purpose."""
        template = self._purpose_template(request.purpose, request.purpose_version)
        summary = await self.reads.summary(current_principal(), request.document_id, template)
        return pb.SummarizeResponse(
            summary=pb.Summary(
                document_id=str(summary.document.id),
                document_sha256=summary.document.sha256,
                purpose=_purpose(template),
                sentences=[
                    pb.SummarySentence(
                        text=sentence.text,
                        chunk_id=sentence.chunk_id,
                        anchor=outputs.anchor(sentence.chunk_index),
                        byte_start=sentence.byte_start,
                        byte_end=sentence.byte_end,
                        char_start=sentence.char_start,
                        char_end=sentence.char_end,
                        page=sentence.page,
                    )
                    for sentence in summary.sentences
                ],
                redactions=outputs.redaction_counts(summary.redactions),
                markdown=summary.markdown,
                markdown_sha256=outputs.sha256_hex(summary.markdown.encode()),
            )
        )

    async def GetManifest(
        self,
        request: pb.GetManifestRequest,
        context: grpc.aio.ServicerContext[pb.GetManifestRequest, pb.GetManifestResponse],
    ) -> pb.GetManifestResponse:
        """The signed manifest of the document under the purpose."""
        template = self._purpose_template(request.purpose, request.purpose_version)
        row = await self.manifests.issue(current_principal(), request.document_id, template)
        return pb.GetManifestResponse(manifest=_manifest(row))

    async def GetInclusionProof(
        self,
        request: pb.GetInclusionProofRequest,
        context: grpc.aio.ServicerContext[
            pb.GetInclusionProofRequest, pb.GetInclusionProofResponse
        ],
    ) -> pb.GetInclusionProofResponse:
        """One chunk's audit path to its document's Merkle root."""
        proof = await self.manifests.inclusion_proof(
            current_principal(), request.document_id, request.chunk_id
        )
        return _proof(proof)

    async def VerifyManifest(
        self,
        request: pb.VerifyManifestRequest,
        context: grpc.aio.ServicerContext[pb.VerifyManifestRequest, pb.VerifyManifestResponse],
    ) -> pb.VerifyManifestResponse:
        """Check a manifest (and, if asked, the stored document against it)."""
        envelope = json_format.MessageToDict(request.envelope)
        verdict = await self.manifests.verify(
            current_principal(), envelope, check_document=request.check_document
        )
        return _verdict(verdict)

    async def GetJwks(
        self,
        request: pb.GetJwksRequest,
        context: grpc.aio.ServicerContext[pb.GetJwksRequest, pb.GetJwksResponse],
    ) -> pb.GetJwksResponse:
        """Every public key that ever signed a manifest."""
        keys = await self.manifests.jwks()
        return pb.GetJwksResponse(
            keys=[pb.Jwk(**{k: v for k, v in jwk.items() if k in _JWK_FIELDS}) for jwk in keys]
        )

    async def ListPurposeTemplates(
        self,
        request: pb.ListPurposeTemplatesRequest,
        context: grpc.aio.ServicerContext[
            pb.ListPurposeTemplatesRequest, pb.ListPurposeTemplatesResponse
        ],
    ) -> pb.ListPurposeTemplatesResponse:
        """Every version of every template (one page: the list is small)."""
        current = templates.current_versions()
        return pb.ListPurposeTemplatesResponse(
            templates=[_template(template, current) for template in templates.TEMPLATES],
            page=PageResponse(),
        )

    async def ExportDocument(
        self,
        request: pb.ExportDocumentRequest,
        context: grpc.aio.ServicerContext[pb.ExportDocumentRequest, pb.ExportDocumentResponse],
    ) -> AsyncIterator[pb.ExportDocumentResponse]:
        """Stream an export, its description first, then its bytes from the offset."""
        template = self._purpose_template(request.purpose, request.purpose_version)
        export = await self.exports.export(
            current_principal(),
            request.document_id,
            template,
            _FORMAT_NAME.get(request.format or pb.EXPORT_FORMAT_SUMMARY_MARKDOWN, ""),
            request.offset,
        )
        yield pb.ExportDocumentResponse(info=_export_info(export), offset=request.offset)
        for start in range(request.offset, len(export.data), EXPORT_CHUNK_BYTES):
            yield pb.ExportDocumentResponse(
                offset=start, data=export.data[start : start + EXPORT_CHUNK_BYTES]
            )


_JWK_FIELDS = frozenset(pb.Jwk.DESCRIPTOR.fields_by_name)

SERVICE = ServiceDefinition(
    name="rag",
    descriptor=pb.DESCRIPTOR.services_by_name["RagService"],
    servicer_class=RagService,
    add_to_server=rag_service_pb2_grpc.add_RagServiceServicer_to_server,
    capability="RAG-safe connectors",
)
