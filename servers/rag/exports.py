"""Exports: a document's summary, chunks or manifest as a file, under a purpose that allows it.

An export is built whole and deterministically (the same document and
template give the same bytes), so a download cut anywhere resumes from an
offset and the pieces join into exactly the file its digest names.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument
from interceptors.tokens import Principal
from servers.rag import outputs, store, templates
from servers.rag.documents import Documents
from servers.rag.manifests import Manifests
from servers.rag.store import DocumentRow
from servers.rag.templates import PurposeTemplate
from servers.runtime import Runtime

#: Bytes per streamed message of an export.
EXPORT_CHUNK_BYTES = 256 * 1024

_MEDIA_TYPES = {
    templates.SUMMARY_MARKDOWN: ("text/markdown; charset=utf-8", "summary.md"),
    templates.CHUNKS_JSONL: ("application/jsonl; charset=utf-8", "chunks.jsonl"),
    templates.MANIFEST_JSON: ("application/vnd.dsse.envelope.v1+json", "manifest.dsse.json"),
}


@dataclass(frozen=True)
class Export:
    """An export's bytes and what they are."""

    document: DocumentRow
    template: PurposeTemplate
    format: str
    media_type: str
    filename: str
    data: bytes
    sha256: str


class Exports:
    """Building exports over every tenant."""

    def __init__(self, runtime: Runtime, documents: Documents, manifests: Manifests) -> None:
        self._db = runtime.database
        self._documents = documents
        self._manifests = manifests

    async def export(
        self,
        principal: Principal,
        document_id: str,
        template: PurposeTemplate,
        export_format: str,
        offset: int,
    ) -> Export:
        """The export of `document_id` in `export_format` under `template`.

        Raises:
            InvalidArgument: No format named, or an offset past the export's end.
            FailedPrecondition: The template does not allow the format
                (EXPORT_NOT_ALLOWED), or the output failed the second screen
                (OUTPUT_REFUSED).
            NotFound: No such document.
        """
        if export_format not in _MEDIA_TYPES:
            raise InvalidArgument(
                "name an export format: "
                + ", ".join(f"EXPORT_FORMAT_{name.upper()}" for name in _MEDIA_TYPES),
                field="format",
            )
        if export_format not in template.exports:
            raise FailedPrecondition(
                f"purpose {template.id} v{template.version} does not allow exporting "
                f"{export_format}; it allows {', '.join(template.exports)}",
                reason=ErrorReason.ERROR_REASON_EXPORT_NOT_ALLOWED,
                metadata={"format": export_format, "purpose": template.id},
            )
        document = await self._documents.get(principal, document_id)
        data = await self._build(principal, document, template, export_format)
        if offset > len(data):
            raise InvalidArgument(
                f"offset {offset} is past the export's end ({len(data)} bytes)", field="offset"
            )
        media_type, suffix = _MEDIA_TYPES[export_format]
        return Export(
            document=document,
            template=template,
            format=export_format,
            media_type=media_type,
            filename=f"{document.id}.{template.id}-v{template.version}.{suffix}",
            data=data,
            sha256=outputs.sha256_hex(data),
        )

    async def _build(
        self,
        principal: Principal,
        document: DocumentRow,
        template: PurposeTemplate,
        export_format: str,
    ) -> bytes:
        if export_format == templates.MANIFEST_JSON:
            row = await self._manifests.issue(principal, str(document.id), template)
            return (json.dumps(row.envelope, sort_keys=True, indent=2) + "\n").encode()
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            chunks = await store.chunks(session, document.id)
        if export_format == templates.SUMMARY_MARKDOWN:
            summary = await outputs.summarize_async(document, chunks, template)
            return summary.markdown.encode()
        data, redactions = await asyncio.to_thread(outputs.chunks_jsonl, document, chunks, template)
        outputs.count(redactions)
        return data
