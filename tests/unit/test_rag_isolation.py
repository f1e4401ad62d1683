"""Documents are read in child processes: results and refusals come back, overruns are stopped."""

from __future__ import annotations

import asyncio
import time

import pytest

from servers.rag.extraction import UnreadableDocument, UnsupportedMediaType
from servers.rag.isolation import IngestPool, IngestTimeout

pytestmark = pytest.mark.asyncio

TEXT = b"# Notes\n\nThe replica fell behind. Operators paused the rollout.\n"


async def test_a_child_reads_the_document_as_ingest_would() -> None:
    read = await IngestPool(60, 1).ingest(TEXT, "text/markdown")
    assert read.text.encode() == TEXT
    assert [chunk["section_path"] for chunk in read.chunks] == [["Notes"]]


async def test_refusals_come_back_as_their_own_kind() -> None:
    pool = IngestPool(60, 1)
    with pytest.raises(UnreadableDocument, match="UTF-8"):
        await pool.ingest(b"\xff\xfe broken", "text/plain")
    with pytest.raises(UnsupportedMediaType):
        await pool.ingest(TEXT, "application/x-unknown")


async def test_an_overrun_is_killed_and_the_loop_kept_serving() -> None:
    pool = IngestPool(0.3, 1)
    slow = b"a. " * 400_000  # many tiny sentences: seconds of work
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(tick())
    started = time.monotonic()
    with pytest.raises(IngestTimeout):
        await pool.ingest(slow, "text/plain")
    elapsed = time.monotonic() - started
    ticking.cancel()
    assert elapsed < 5  # stopped near its budget, not run to the end
    assert ticks > 5  # the event loop went on meanwhile
