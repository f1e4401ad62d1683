"""Reading a completed upload: its text, its chunks with lineage, the personal data in them.

Pure and CPU-bound (no I/O): the use cases run it in a worker thread, so the
event loop keeps serving while a large document is read.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from servers.rag.chunking import chunk_text
from servers.rag.extraction import extract
from servers.rag.pii import Finding, find_pii


@dataclass(frozen=True)
class Ingested:
    """A document, read.

    Attributes:
        text: The text the chunks index.
        own_text: Whether `text` differs from the upload (HTML, PDF) and is kept apart.
        chunks: Rows of `ChunkRow` columns, without ids, tenant or document.
        pii_counts: Personal data found, per kind.
    """

    text: str
    own_text: bool
    text_sha256: str
    text_bytes: int
    page_count: int
    chunks: list[dict[str, Any]]
    pii_counts: dict[str, int]


def ingest(data: bytes, media_type: str) -> Ingested:
    """Extract, chunk and scan a document.

    Raises:
        UnreadableDocument: The bytes are not a readable `media_type` document.
        UnsupportedMediaType: Not a type the platform reads.
    """
    rendition = extract(data, media_type)
    text = rendition.text
    encoded = text.encode()
    findings = find_pii(text)
    starts = [finding.start for finding in findings]
    chunks = []
    for span in chunk_text(rendition):
        source = encoded[span.byte_start : span.byte_end]
        chunks.append(
            {
                "index": span.index,
                "char_start": span.char_start,
                "char_end": span.char_end,
                "byte_start": span.byte_start,
                "byte_end": span.byte_end,
                "page": span.page,
                "section_path": list(span.section_path),
                "text": text[span.char_start : span.char_end],
                "sha256": hashlib.sha256(source).hexdigest(),
                "sentences": [
                    [start - span.char_start, end - span.char_start]
                    for start, end in span.sentences
                ],
                "pii": _within(findings, starts, span.char_start, span.char_end),
            }
        )
    return Ingested(
        text=text,
        own_text=encoded != data,
        text_sha256=hashlib.sha256(encoded).hexdigest(),
        text_bytes=len(encoded),
        page_count=len(rendition.pages),
        chunks=chunks,
        pii_counts=dict(Counter(finding.kind for finding in findings)),
    )


def _within(findings: list[Finding], starts: list[int], start: int, end: int) -> list[list[Any]]:
    """Findings overlapping [start, end), clipped to it, relative to `start`."""
    found = []
    # A finding starting before `start` may still reach into it: look a few back.
    first = max(0, bisect.bisect_left(starts, start) - 8)
    for finding in findings[first : bisect.bisect_left(starts, end)]:
        if finding.end > start:
            found.append(
                [finding.kind, max(finding.start, start) - start, min(finding.end, end) - start]
            )
    return found
