"""Pack workers: processes that map projections in and run packs, killed at their deadline.

A pack runs in C (scipy, igraph, networkit) inside a worker process, so a
deadline cannot be enforced by cancelling a coroutine: the server waits for the
result until the deadline and, past it, kills the worker and answers
DEADLINE_EXCEEDED at once; a fresh worker is started in the background. The
clock starts once the worker holds the revision's projection.

Each worker keeps the projections it mapped in an LRU bounded in bytes, across
tenants (a projection is memory-mapped from its files: taking one up costs
milliseconds, and the page cache is shared with the other workers).

Protocol on a pipe: the worker says ("hello", seconds_per_unit) when ready; for
("run", path, pack_id, params) it answers ("loaded", projection_bytes) then
("result", dict) or ("error", message); for ("materialize", path, previous,
seed, threads) it answers ("loaded", projection_bytes) then ("materialized",
[(pack_id, payload, summary), ...]); for ("warm", path) ("loaded", ...) then
("warmed", None); or ("gone", why) alone if the snapshot was pruned before it
could be loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core.errors import Conflict, DeadlineExceeded, InvalidArgument, Unavailable
from servers.analytics import metrics
from servers.analytics.rankings import Materialized

if TYPE_CHECKING:  # the server never loads the algorithms (scipy, igraph): its workers do
    import numpy as np

    from servers.analytics.compute import PackResult

#: Seconds a worker may take to load a revision's projection.
LOAD_TIMEOUT_S = 300.0
#: Seconds a new worker may take to start.
START_TIMEOUT_S = 60.0
#: Seconds a revision's whole-graph packs may take.
MATERIALIZE_TIMEOUT_S = 1800.0


def worker_main(connection: Connection, cache_bytes: int) -> None:
    """The worker process: map projections in (an LRU across tenants), run packs on them."""
    from cachetools import LRUCache  # noqa: PLC0415 - only in the worker

    from servers.analytics import compute, graph  # noqa: PLC0415 - only in the worker

    connection.send(("hello", compute.calibrate()))
    projections: LRUCache[str, compute.Projection] = LRUCache(
        maxsize=max(cache_bytes, 1), getsizeof=lambda projection: max(projection.memory_bytes, 1)
    )
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the server went away: so does the worker
            return
        kind, path, *arguments = message
        projection = projections.get(path)
        if projection is None:
            try:
                projection = compute.Projection.of(graph.load(Path(path)))
            except OSError as error:  # pruned: newer revisions came in since the call began
                connection.send(("gone", str(error)))
                continue
            with contextlib.suppress(ValueError):  # larger than the whole cache: not kept
                projections[path] = projection
        connection.send(("loaded", projection.memory_bytes))
        started = time.perf_counter()
        if kind == "warm":  # mapped in, and what runs derive from the graph alone made
            projection.sweep_blocks()
            connection.send(("warmed", None))
            continue
        if kind == "materialize":
            previous, seed, threads = arguments
            try:
                done = compute.materialize(projection, previous, seed=seed, threads=threads)
            except Exception as error:  # noqa: BLE001 - said to the server, which retries
                connection.send(("error", f"{type(error).__name__}: {error}"))
                continue
            connection.send(("materialized", done))
            continue
        pack_id, params = arguments
        try:
            output = compute.run_pack(projection, pack_id, params)
        except LookupError as error:
            connection.send(("error", str(error)))
            continue
        elapsed_ms = (time.perf_counter() - started) * 1000
        connection.send(("result", {**output, "elapsed_ms": elapsed_ms}))


#: The workers' environment: OpenMP and OpenBLAS on one thread unless an algorithm asks for
#: more (networkit's betweenness sets its own count). Left at their defaults, the idle
#: OpenMP threads of one worker spin on the cores the others need: two workers took 1.1 s
#: to start on two cores, 0.4 s with these.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class _Worker:
    def __init__(self, cache_bytes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, cache_bytes), daemon=True)
        for name, value in _ONE_THREAD.items():  # inherited by the process started here
            os.environ.setdefault(name, value)
        self.process.start()
        child.close()
        self.seconds_per_unit = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.connection.close()


#: Workers started before any pool was made (`prestart`), for the first pools to take.
_prestarted: list[_Worker] = []


def prestart(count: int, cache_bytes: int) -> None:
    """Start `count` worker processes now, for the pools made later to take.

    `conductor serve` calls it before it imports the platform, so the workers load
    their algorithms while the server loads its modules: a restarted server's first
    parameterised pack finds them ready.
    """
    _prestarted.extend(_Worker(cache_bytes) for _ in range(count))


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
        cache_bytes: Bytes of projections each worker keeps mapped (least recently used go).
    """

    def __init__(self, size: int = 1, cache_bytes: int = 2**31) -> None:
        self._size = size
        self._cache_bytes = cache_bytes
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self.seconds_per_unit = 0.0
        self.kills = 0
        self._starting: set[asyncio.Task[None]] = set()
        self._workers: set[_Worker] = set()
        self._calibrated = asyncio.Event()
        #: Set by `close`: no worker starts after it (not even to replace a killed one).
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the pool was closed (the platform stops)."""
        return self._closed

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
        worker = _prestarted.pop() if _prestarted else _Worker(self._cache_bytes)
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
        self, snapshot: Path, pack_id: str, params: dict[str, Any], deadline_s: float
    ) -> PackResult:
        """Run a parameterised pack on a snapshot within `deadline_s` once loaded.

        Raises:
            DeadlineExceeded: The pack ran past its deadline (its worker was killed).
            Conflict: The snapshot was replaced by a newer revision's before it was loaded.
            InvalidArgument: A parameter names no entity of the graph.
        """
        kind, payload, projection_bytes = await self._exchange(
            ("run", str(snapshot), pack_id, params), pack_id, deadline_s
        )
        if kind == "error":  # "seed_ids: no entity 'x' in this graph"
            name = str(payload).partition(":")[0]
            field = f"parameters.{name}" if name.isidentifier() else "parameters"
            raise InvalidArgument(str(payload), field=field)
        result = cast("PackResult", payload)  # as compute.run_pack built it, in the worker
        result["projection_bytes"] = projection_bytes
        return result

    async def materialize(
        self,
        snapshot: Path,
        previous_pagerank: tuple[np.ndarray, np.ndarray] | None,
        seed: int,
        threads: int,
    ) -> list[Materialized]:
        """Compute a revision's whole-graph packs (see `compute.materialize`).

        Raises:
            Conflict: The snapshot was pruned before it was loaded.
            DeadlineExceeded: It took longer than MATERIALIZE_TIMEOUT_S (the worker was killed).
            Unavailable: The worker failed (the reason is in the message).
        """
        kind, payload, _ = await self._exchange(
            ("materialize", str(snapshot), previous_pagerank, seed, threads),
            "materialize",
            MATERIALIZE_TIMEOUT_S,
        )
        if kind == "error":
            raise Unavailable(f"computing the whole-graph packs failed: {payload}")
        return cast("list[Materialized]", payload)

    async def warm(self, snapshots: list[Path]) -> None:
        """Map `snapshots` into each worker, one worker at a time, before calls need them.

        For a restarted replica: a worker being warmed is taken from the pool, the others
        serve meanwhile. A snapshot gone meanwhile is skipped.
        """
        for _ in range(self._size):
            worker = await self._idle.get()
            try:
                for snapshot in snapshots:
                    worker.connection.send(("warm", str(snapshot)))
                    if (await _receive(worker.connection, LOAD_TIMEOUT_S))[0] == "loaded":
                        await _receive(worker.connection, LOAD_TIMEOUT_S)
            finally:
                # At the back of the queue: the next turn takes a worker not warmed yet.
                self._idle.put_nowait(worker)

    async def _exchange(
        self, message: tuple[Any, ...], label: str, deadline_s: float
    ) -> tuple[str, Any, int]:
        """Send `message` to an idle worker; (kind, payload, projection bytes) it answers.

        A worker past the deadline, cancelled or broken is killed and replaced.
        """
        worker = await self._idle.get()
        healthy = sent = False
        try:
            worker.connection.send(message)
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
                    f"{label} ran past its {deadline_s * 1000:.0f} ms deadline and was stopped",
                    metadata={
                        "pack_id": label,
                        "elapsed_ms": f"{(time.perf_counter() - started) * 1000:.0f}",
                    },
                ) from None
            healthy = True
        except (DeadlineExceeded, asyncio.CancelledError):
            # Past the deadline, or the call was cancelled (its gRPC deadline passed):
            # the run is abandoned, and its worker killed below.
            if sent:
                self.kills += 1
                metrics.DEADLINE_KILLS.labels(label).inc()
            raise
        except (EOFError, OSError) as error:  # the worker died under the run
            raise Unavailable(f"the analytics worker running {label} failed") from error
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
        return kind, payload, projection_bytes

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
