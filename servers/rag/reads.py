"""Reading a document's chunks and summary under a purpose."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from core.pagination import Page
from interceptors.tokens import Principal
from servers.rag import outputs, store
from servers.rag.documents import Documents
from servers.rag.templates import PurposeTemplate
from servers.runtime import Runtime


@dataclass(frozen=True)
class ChunkPage:
    """One page of chunk records (`outputs.chunk_record`) and the token of the next."""

    records: list[dict[str, Any]]
    next_page_token: str


class Reads:
    """Chunk and summary reads over every tenant."""

    def __init__(self, runtime: Runtime, documents: Documents) -> None:
        self._db = runtime.database
        self._documents = documents

    async def chunks(
        self, principal: Principal, document_id: str, template: PurposeTemplate, page: Page
    ) -> ChunkPage:
        """A page of a document's chunks in order, redacted under `template` and screened.

        Raises:
            NotFound: No such document.
            FailedPrecondition: A chunk failed the second screen (OUTPUT_REFUSED).
        """
        document = await self._documents.get(principal, document_id)
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = await store.page_of_chunks(session, document.id, page)
            shown = rows[: page.size]
            wanted = [shown[0].index - 1, shown[-1].index + 1] if shown else []
            neighbours = await store.neighbour_ids(session, document.id, wanted)
        ids = {row.index: str(row.id) for row in shown} | {
            index: str(chunk_id) for index, chunk_id in neighbours.items()
        }
        done = await asyncio.to_thread(
            lambda: [outputs.redacted_chunk(row, template) for row in shown]
        )
        records = [
            outputs.chunk_record(
                row, document, redacted, ids.get(row.index - 1, ""), ids.get(row.index + 1, "")
            )
            for row, redacted in zip(shown, done, strict=True)
        ]
        for redacted in done:
            outputs.count(redacted.redactions)
        return ChunkPage(records, page.next_token(rows, lambda row: (row.index,)))

    async def summary(
        self, principal: Principal, document_id: str, template: PurposeTemplate
    ) -> outputs.Summary:
        """The document's extractive summary under `template`.

        Raises:
            NotFound: No such document.
            FailedPrecondition: The summary failed the second screen (OUTPUT_REFUSED).
        """
        document = await self._documents.get(principal, document_id)
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            chunks = await store.chunks(session, document.id)
        return await outputs.summarize_async(document, chunks, template)
