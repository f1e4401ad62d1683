"""Reading documents in child processes: on every core, within a time budget, killable.

Reading a document (extraction, sentences, chunks, the PII scan) is pure
Python and CPU-bound. In the serving process it would compete with the event
loop for the interpreter lock, and a hostile document (text built to make the
sentence splitter slow) could run for many minutes with no way to stop a
thread. So each ingest runs in a child process from a fork server that has
the readers imported already (a start costs milliseconds, not the imports'
seconds): it uses another core, the serving process stays responsive, and
one that overruns `rag_ingest_timeout` is killed and the upload refused.
At most `slots` children run at once per serving process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
from dataclasses import dataclass
from typing import Any

from servers.rag.extraction import UnreadableDocument, UnsupportedMediaType
from servers.rag.ingest import Ingested, ingest

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["servers.rag.ingest"])
#: The refusals a child reports by name, rebuilt in the parent.
_REFUSALS: dict[str, type[ValueError]] = {
    "UnreadableDocument": UnreadableDocument,
    "UnsupportedMediaType": UnsupportedMediaType,
}


class IngestTimeout(UnreadableDocument):
    """Reading the document took longer than its budget; the reader was stopped."""


@dataclass(frozen=True)
class _Outcome:
    read: Ingested | None
    refusal: str = ""
    problem: str = ""


def _read(connection: multiprocessing.connection.Connection, data: bytes, media_type: str) -> None:
    """The child: read the document, send back what came of it."""
    try:
        outcome = _Outcome(ingest(data, media_type))
    except (UnreadableDocument, UnsupportedMediaType) as refused:
        name = next(
            (name for name, kind in _REFUSALS.items() if type(refused) is kind),
            "UnreadableDocument",
        )
        outcome = _Outcome(None, name, str(refused))
    connection.send(outcome)
    connection.close()


def _receive(connection: multiprocessing.connection.Connection) -> Any:
    try:
        return connection.recv()
    except EOFError:  # the child died (killed, out of memory) without answering
        return None


class IngestPool:
    """Runs `ingest` in killable child processes, a few at a time.

    Args:
        timeout_s: The most one document may take.
        slots: Children at once (further ingests wait their turn).
    """

    def __init__(self, timeout_s: float, slots: int) -> None:
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max(1, slots))

    async def ingest(self, data: bytes, media_type: str) -> Ingested:
        """`ingest(data, media_type)`, read in a child process.

        Raises:
            UnreadableDocument: As `ingest` does; `IngestTimeout` past the budget.
            UnsupportedMediaType: As `ingest` does.
        """
        async with self._slots:
            receiving, sending = _CONTEXT.Pipe(duplex=False)
            child = _CONTEXT.Process(target=_read, args=(sending, data, media_type), daemon=True)
            await asyncio.to_thread(child.start)
            sending.close()
            try:
                outcome = await asyncio.wait_for(
                    asyncio.to_thread(_receive, receiving), self._timeout_s
                )
            except TimeoutError:
                child.kill()
                raise IngestTimeout(
                    f"reading it took longer than {self._timeout_s:.0f} s and was stopped"
                ) from None
            except asyncio.CancelledError:  # the call went away: so does its reader
                child.kill()
                raise
            finally:
                await asyncio.to_thread(child.join)
                receiving.close()
        if not isinstance(outcome, _Outcome):
            raise UnreadableDocument(f"the reader stopped unexpectedly (exit {child.exitcode})")
        if outcome.read is None:
            raise _REFUSALS.get(outcome.refusal, UnreadableDocument)(outcome.problem)
        return outcome.read
