"""What leaves the service: chunk text, summaries, exports; redacted under a purpose, screened.

Every output is redacted under the request's purpose template from the
personal data found at ingest, then scanned again by an independent screen
(`screening.second_scan`) for every kind the template does not keep. An
output in which the screen still finds anything is refused (OUTPUT_REFUSED)
and counted; it is never sent.

Summaries are extractive: sentences of the source, ranked (`summaries`), each
an exact span with its chunk and offsets, rendered as Markdown that is
byte-identical for the same document and template version.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import ErrorReason, FailedPrecondition
from servers.rag import metrics
from servers.rag.pii import Finding, find_pii, redact
from servers.rag.screening import second_scan
from servers.rag.store import ChunkRow, DocumentRow
from servers.rag.summaries import select_summary
from servers.rag.templates import PurposeTemplate

_WHITESPACE = re.compile(r"\s+")


def anchor(index: int) -> str:
    """The URL fragment naming chunk `index` in its document.

    >>> anchor(12)
    'c12'
    """
    return f"c{index}"


@dataclass(frozen=True)
class Redacted:
    """Text as it may leave, and the spans replaced in it per kind."""

    text: str
    redactions: Counter[str] = field(default_factory=Counter)
    #: The chunk's heading path as it may leave (headings hold personal data too).
    section_path: tuple[str, ...] = ()


def redact_span(
    text: str, findings: Iterable[Sequence[Any]], start: int, end: int, template: PurposeTemplate
) -> Redacted:
    """`text` (the source's [start, end)) redacted under `template`.

    Args:
        text: The span's source text.
        findings: PII as [kind, start, end] in the coordinates of `start`/`end`.
        start: Where `text` starts, in the findings' coordinates.
        end: Where it ends.
        template: The purpose's rules.
    """
    inside = [
        Finding(kind, max(begin, start) - start, min(finish, end) - start)
        for kind, begin, finish in findings
        if begin < end and finish > start
    ]
    redacted, counts = redact(text, inside, template.rules())
    return Redacted(redacted, counts)


def screened(output: str, template: PurposeTemplate, what: str) -> str:
    """`output`, once the second screen finds none of the kinds `template` does not keep.

    Raises:
        FailedPrecondition: The screen found some (OUTPUT_REFUSED; metadata
            "kinds" names them, never the data).
    """
    found = second_scan(output, template.screened_kinds())
    if found:
        kinds = sorted({finding.kind for finding in found})
        metrics.OUTPUTS_REFUSED.labels(what).inc()
        raise FailedPrecondition(
            f"the {what} still held personal data ({', '.join(kinds)}) after redaction under "
            f"{template.id} v{template.version}; it was refused rather than sent",
            reason=ErrorReason.ERROR_REASON_OUTPUT_REFUSED,
            metadata={"kinds": ",".join(kinds), "output": what},
        )
    return output


@functools.lru_cache(maxsize=4096)
def _heading_findings(title: str) -> tuple[tuple[str, int, int], ...]:
    """PII in a heading (headings repeat across a document's chunks: found once)."""
    return tuple((finding.kind, finding.start, finding.end) for finding in find_pii(title))


def redact_chunk(row: ChunkRow, template: PurposeTemplate) -> Redacted:
    """A chunk's text and heading path as they may leave under `template` (not yet screened)."""
    done = redact_span(row.text, row.pii, 0, len(row.text), template)
    counts = Counter(done.redactions)
    path = []
    for title in row.section_path:
        heading = redact_span(title, _heading_findings(title), 0, len(title), template)
        counts.update(heading.redactions)
        path.append(heading.text)
    return Redacted(done.text, counts, tuple(path))


def redacted_chunk(row: ChunkRow, template: PurposeTemplate) -> Redacted:
    """A chunk's text and heading path as they may leave under `template`, screened."""
    done = redact_chunk(row, template)
    screened("\n".join((done.text, *done.section_path)), template, "chunk")
    return done


def count(redactions: Counter[str]) -> None:
    """Record redactions that left in an output."""
    for kind, number in redactions.items():
        metrics.REDACTIONS.labels(kind).inc(number)


@dataclass(frozen=True)
class SummarySentence:
    """A summary sentence: its redacted text and exactly where its source is."""

    text: str
    chunk_id: str
    chunk_index: int
    char_start: int
    char_end: int
    byte_start: int
    byte_end: int
    page: int


@dataclass(frozen=True)
class Summary:
    """A document's summary under one template version."""

    document: DocumentRow
    template: PurposeTemplate
    sentences: list[SummarySentence]
    redactions: Counter[str]
    markdown: str


def summarize(
    document: DocumentRow, chunks: Sequence[ChunkRow], template: PurposeTemplate
) -> Summary:
    """The extractive summary of `document` under `template` (CPU-bound: run it in a thread).

    Raises:
        FailedPrecondition: The second screen refused it (OUTPUT_REFUSED).
    """
    sources = _sentences(chunks)
    dropped = template.dropped_kinds()
    exclude = [
        position
        for position, (chunk, start, end) in enumerate(sources)
        if any(kind in dropped and b < end and e > start for kind, b, e in chunk.pii)
    ]
    texts = [chunk.text[start:end] for chunk, start, end in sources]
    chosen = select_summary(texts, template.max_sentences, exclude=exclude)
    sentences = []
    redactions: Counter[str] = Counter()
    for position in chosen:
        chunk, start, end = sources[position]
        done = redact_span(texts[position], chunk.pii, start, end, template)
        redactions.update(done.redactions)
        prefix = chunk.text[:start].encode()
        byte_start = chunk.byte_start + len(prefix)
        sentences.append(
            SummarySentence(
                text=done.text,
                chunk_id=str(chunk.id),
                chunk_index=chunk.index,
                char_start=chunk.char_start + start,
                char_end=chunk.char_start + end,
                byte_start=byte_start,
                byte_end=byte_start + len(texts[position].encode()),
                page=chunk.page,
            )
        )
    markdown = screened(_markdown(document, template, sentences), template, "summary")
    return Summary(document, template, sentences, redactions, markdown)


def _sentences(chunks: Sequence[ChunkRow]) -> list[tuple[ChunkRow, int, int]]:
    """Every sentence once, in order, with the first chunk holding it (chunks overlap)."""
    seen: set[int] = set()
    found = []
    for chunk in chunks:
        for start, end in chunk.sentences:
            absolute = chunk.char_start + start
            if absolute in seen:
                continue
            seen.add(absolute)
            found.append((chunk, start, end))
    return found


def _markdown(
    document: DocumentRow, template: PurposeTemplate, sentences: Sequence[SummarySentence]
) -> str:
    lines = [
        f"# Summary of document {document.id}",
        "",
        f"Purpose `{template.id}` version {template.version}; document sha256 "
        f"`{document.sha256}`; {len(sentences)} sentences, each quoted from the source.",
        "",
    ]
    for sentence in sentences:
        where = f"[{anchor(sentence.chunk_index)}](#{anchor(sentence.chunk_index)})"
        if sentence.page:
            where += f", page {sentence.page}"
        lines.append(f"- {_WHITESPACE.sub(' ', sentence.text).strip()} ({where})")
    return "\n".join(lines) + "\n"


def chunk_record(
    row: ChunkRow,
    document: DocumentRow,
    done: Redacted,
    previous_id: str,
    next_id: str,
) -> dict[str, Any]:
    """A chunk as a JSON object: redacted text and lineage (the JSON Lines export's line)."""
    return {
        "id": str(row.id),
        "index": row.index,
        "text": done.text,
        "sha256": row.sha256,
        "redactions": dict(sorted(done.redactions.items())),
        "lineage": {
            "document_id": str(document.id),
            "document_sha256": document.sha256,
            "text_sha256": document.text_sha256,
            "byte_start": row.byte_start,
            "byte_end": row.byte_end,
            "char_start": row.char_start,
            "char_end": row.char_end,
            "page": row.page,
            "section_path": list(done.section_path),
            "previous_chunk_id": previous_id,
            "next_chunk_id": next_id,
            "anchor": anchor(row.index),
        },
    }


def chunks_jsonl(
    document: DocumentRow, chunks: Sequence[ChunkRow], template: PurposeTemplate
) -> tuple[bytes, Counter[str]]:
    """Every chunk as JSON Lines under `template`, screened whole (CPU-bound: run in a thread)."""
    lines = []
    redactions: Counter[str] = Counter()
    for position, row in enumerate(chunks):
        done = redact_chunk(row, template)
        redactions.update(done.redactions)
        previous_id = str(chunks[position - 1].id) if position else ""
        next_id = str(chunks[position + 1].id) if position + 1 < len(chunks) else ""
        record = chunk_record(row, document, done, previous_id, next_id)
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    output = "".join(lines)
    screened(output, template, "chunks export")
    return output.encode(), redactions


async def summarize_async(
    document: DocumentRow, chunks: Sequence[ChunkRow], template: PurposeTemplate
) -> Summary:
    """`summarize` in a worker thread, counted."""
    summary = await asyncio.to_thread(summarize, document, chunks, template)
    metrics.SUMMARIES.labels(template.id).inc()
    count(summary.redactions)
    return summary


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def redaction_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per kind, in a stable order, without zeros."""
    return {kind: number for kind, number in sorted(counts.items()) if number}
