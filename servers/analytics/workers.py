"""Pack workers: processes that hold projections and run packs, killed at their deadline.

A pack runs in C (igraph) inside a worker process, so a deadline cannot be
enforced by cancelling a coroutine: the server waits for the result until the
deadline and, past it, kills the worker and answers DEADLINE_EXCEEDED at once; a
fresh worker is started in the background. The clock starts once the worker
holds the revision's projection (loading it is paid once per revision, not
per run).

Protocol on a pipe: the worker says ("hello", seconds_per_unit) when ready; for
("run", path, pack_id, params, sample) it answers ("loaded", projection_bytes)
then ("result", dict) or ("error", message); or ("gone", why) alone if the
snapshot was pruned before it could be loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core.errors import Conflict, DeadlineExceeded, InvalidArgument, Unavailable
from servers.analytics import metrics

if TYPE_CHECKING:  # the server never loads the algorithms (igraph, NumPy): its workers do
    from servers.analytics.compute import PackResult

#: Seconds a worker may take to load a revision's projection.
LOAD_TIMEOUT_S = 300.0
#: Seconds a new worker may take to start.
START_TIMEOUT_S = 60.0


def worker_main(connection: Connection) -> None:
    """The worker process: keep the latest projection per snapshot file, run packs on it."""
    from servers.analytics import compute, graph  # noqa: PLC0415 - only in the worker

    connection.send(("hello", compute.calibrate()))
    projections: dict[str, compute.Projection] = {}
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the server went away: so does the worker
            return
        _, path, pack_id, params, sample = message
        projection = projections.get(path)
        if projection is None:
            projections.clear()  # one revision at a time keeps memory bounded
            try:
                snapshot = graph.load(Path(path))
            except OSError as error:  # pruned: newer revisions came in since the call began
                connection.send(("gone", str(error)))
                continue
            projection = projections[path] = compute.Projection.of(snapshot)
        connection.send(("loaded", projection.memory_bytes))
        try:
            started = time.perf_counter()
            output = compute.run_pack(projection, pack_id, params, sample)
            elapsed_ms = (time.perf_counter() - started) * 1000
            connection.send(("result", {**output, "elapsed_ms": elapsed_ms}))
        except LookupError as error:
            connection.send(("error", str(error)))


class _Worker:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.seconds_per_unit = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.connection.close()


async def _receive(connection: Connection, within_s: float) -> Any:
    """The next message, or TimeoutError after `within_s` seconds (without blocking the loop)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(connection.fileno(), readable)
    try:
        if not connection.poll():
            await asyncio.wait_for(ready, within_s)
    finally:
        loop.remove_reader(connection.fileno())
    return connection.recv()


class PackWorkers:
    """A small pool of pack workers (one per spare core is plenty on two cores).

    Args:
        size: Worker processes.
    """

    def __init__(self, size: int = 1) -> None:
        self._size = size
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self.seconds_per_unit = 0.0
        self.kills = 0
        self._starting: set[asyncio.Task[None]] = set()
        self._workers: set[_Worker] = set()
        self._calibrated = asyncio.Event()
        #: Set by `close`: no worker starts after it (not even to replace a killed one).
        self._closed = False

    async def speed(self) -> float:
        """Seconds per work unit on this machine, once the first worker has measured it.

        Raises:
            Unavailable: No worker started in time.
        """
        try:
            await asyncio.wait_for(self._calibrated.wait(), START_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable("the analytics workers have not started") from None
        return self.seconds_per_unit

    async def start(self) -> None:
        """Start the workers and learn this machine's speed from them."""
        await asyncio.gather(*(self._spawn() for _ in range(self._size)))

    async def _spawn(self) -> None:
        if self._closed:
            return
        worker = _Worker()
        self._workers.add(worker)
        try:
            kind, speed = await _receive(worker.connection, START_TIMEOUT_S)
        except (TimeoutError, EOFError):
            worker.kill()
            raise Unavailable("an analytics worker did not start") from None
        assert kind == "hello"
        worker.seconds_per_unit = speed
        self.seconds_per_unit = self.seconds_per_unit or speed
        self._calibrated.set()
        await self._idle.put(worker)

    async def run(
        self, snapshot: Path, pack_id: str, params: dict[str, Any], sample: str, deadline_s: float
    ) -> PackResult:
        """Run a pack on a snapshot, or its sample `sample`, within `deadline_s` once loaded.

        Raises:
            DeadlineExceeded: The pack ran past its deadline (its worker was killed).
            Conflict: The snapshot was replaced by a newer revision's before it was loaded.
            InvalidArgument: A parameter names no entity of the graph.
        """
        worker = await self._idle.get()
        healthy = sent = False
        try:
            worker.connection.send(("run", str(snapshot), pack_id, params, sample))
            sent = True
            loaded, projection_bytes = await _receive(worker.connection, LOAD_TIMEOUT_S)
            if loaded == "gone":
                healthy = True
                raise Conflict("the graph changed while this run started; run it again")
            started = time.perf_counter()
            try:
                kind, payload = await _receive(worker.connection, max(deadline_s, 0.0))
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{pack_id} ran past its {deadline_s * 1000:.0f} ms deadline and was stopped",
                    metadata={
                        "pack_id": pack_id,
                        "elapsed_ms": f"{(time.perf_counter() - started) * 1000:.0f}",
                    },
                ) from None
            healthy = True
        except (DeadlineExceeded, asyncio.CancelledError):
            # Past the deadline, or the call was cancelled (its gRPC deadline passed):
            # the run is abandoned, and its worker killed below.
            if sent:
                self.kills += 1
                metrics.DEADLINE_KILLS.labels(pack_id).inc()
            raise
        finally:
            if healthy:
                self._idle.put_nowait(worker)
            else:
                worker.kill()
                self._workers.discard(worker)
                if not self._closed:
                    task = asyncio.create_task(self._spawn())
                    self._starting.add(task)
                    task.add_done_callback(self._starting.discard)
        if kind == "error":
            raise InvalidArgument(str(payload), field="parameters")
        result = cast("PackResult", payload)  # as compute.run_pack built it, in the worker
        result["projection_bytes"] = projection_bytes
        return result

    async def close(self) -> None:
        """Stop every worker; none starts afterwards."""
        self._closed = True
        for task in self._starting:
            task.cancel()
        for worker in self._workers:
            worker.kill()
        self._workers.clear()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._starting, return_exceptions=True)
