"""RPC metrics in the names of go-grpc-prometheus, so standard gRPC dashboards work.

* `grpc_server_started_total{grpc_type, grpc_service, grpc_method}`
* `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`
* `grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}` (histogram)

Every call updates them, so they are kept in plain Python counters (a dict
increment and a bisect) and turned into Prometheus metrics only when
`/metrics` is scraped, by `RpcStatsCollector`; the client library's metric
objects, with a lock per update, cost three times as much per call. With
several worker processes each worker also writes its counters to the shared
metrics directory once a second, and a scrape through any worker adds up all
of them.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.errors import DomainError
from interceptors.base import Context, Method, RpcMethod, ServerInterceptor

#: Upper bounds (seconds) of the handling-time histogram's buckets.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Seconds between a worker's snapshots to the shared metrics directory.
SNAPSHOT_INTERVAL_S = 1.0

Labels = tuple[str, str, str]  # (grpc_type, grpc_service, grpc_method)


class RpcStats:
    """Per-method call counts and handling-time histograms of this process."""

    def __init__(self) -> None:
        self.started: dict[Labels, int] = {}
        self.handled: dict[tuple[Labels, str], int] = {}
        self.buckets: dict[Labels, list[int]] = {}
        self.seconds: dict[Labels, float] = {}

    def start(self, labels: Labels) -> None:
        """Count a call as started."""
        self.started[labels] = self.started.get(labels, 0) + 1

    def finish(self, labels: Labels, code: str, elapsed_s: float) -> None:
        """Count a call as handled with `code`, after `elapsed_s`."""
        key = (labels, code)
        self.handled[key] = self.handled.get(key, 0) + 1
        buckets = self.buckets.get(labels)
        if buckets is None:
            buckets = self.buckets[labels] = [0] * (len(BUCKETS) + 1)
        buckets[bisect.bisect_left(BUCKETS, elapsed_s)] += 1
        self.seconds[labels] = self.seconds.get(labels, 0.0) + elapsed_s

    def snapshot(self) -> dict[str, list[Any]]:
        """The counters as JSON-ready lists."""
        return {
            "started": [[*labels, count] for labels, count in self.started.items()],
            "handled": [[*labels, code, count] for (labels, code), count in self.handled.items()],
            "histograms": [
                [*labels, list(buckets), self.seconds[labels]]
                for labels, buckets in self.buckets.items()
            ],
        }

    def add(self, snapshot: dict[str, list[Any]]) -> None:
        """Add another process's snapshot to these counters."""
        for *labels, count in snapshot["started"]:
            key = (labels[0], labels[1], labels[2])
            self.started[key] = self.started.get(key, 0) + count
        for kind, service, name, code, count in snapshot["handled"]:
            handled_key = ((kind, service, name), code)
            self.handled[handled_key] = self.handled.get(handled_key, 0) + count
        for kind, service, name, buckets, seconds in snapshot["histograms"]:
            labels = (kind, service, name)
            mine = self.buckets.setdefault(labels, [0] * (len(BUCKETS) + 1))
            for index, count in enumerate(buckets):
                mine[index] += count
            self.seconds[labels] = self.seconds.get(labels, 0.0) + seconds


#: This process's RPC counters.
RPC_STATS = RpcStats()
_LABEL_NAMES = ["grpc_type", "grpc_service", "grpc_method"]


def _snapshot_path(directory: Path, pid: int) -> Path:
    return directory / f"grpc-{pid}.json"


class RpcStatsCollector(Collector):
    """Exposes `RpcStats` as Prometheus metrics at scrape time.

    Args:
        stats: This process's counters.
        snapshot_dir: With several workers, the shared directory whose other
            workers' snapshots are added in; None for a single process.
    """

    def __init__(self, stats: RpcStats, snapshot_dir: Path | None = None) -> None:
        self._stats = stats
        self._snapshot_dir = snapshot_dir

    def _combined(self) -> RpcStats:
        if self._snapshot_dir is None:
            return self._stats
        combined = RpcStats()
        combined.add(self._stats.snapshot())
        own = _snapshot_path(self._snapshot_dir, os.getpid())
        for path in self._snapshot_dir.glob("grpc-*.json"):
            if path == own:
                continue
            try:
                combined.add(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a worker mid-write or gone: its next snapshot counts
        return combined

    def collect(self) -> Iterator[Metric]:
        """The three gRPC server metrics."""
        stats = self._combined()
        started = CounterMetricFamily(
            "grpc_server_started", "RPCs started on the server.", labels=_LABEL_NAMES
        )
        for labels, count in sorted(stats.started.items()):
            started.add_metric(labels, count)
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            labels=[*_LABEL_NAMES, "grpc_code"],
        )
        for (labels, code), count in sorted(stats.handled.items()):
            handled.add_metric([*labels, code], count)
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status.",
            labels=_LABEL_NAMES,
        )
        for labels, buckets in sorted(stats.buckets.items()):
            cumulative, total = [], 0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), buckets, strict=True):
                total += count
                cumulative.append((bound, total))
            seconds.add_metric(labels, cumulative, sum_value=stats.seconds[labels])
        yield from (started, handled, seconds)


async def write_snapshots(stats: RpcStats, directory: Path) -> None:
    """Write this worker's counters to `directory` every second, until cancelled."""
    path = _snapshot_path(directory, os.getpid())
    staging = path.with_suffix(".tmp")
    while True:
        staging.write_text(json.dumps(stats.snapshot()))
        staging.replace(path)
        await asyncio.sleep(SNAPSHOT_INTERVAL_S)


def _code_of(error: BaseException | None, context: Context) -> str:
    """The status code a call ends with, given what (if anything) it raised.

    A call that returns is counted OK: servicers report failures by raising
    (see `core.errors`), and asking the context for its code on every
    successful call would cost more than the rest of this interceptor.
    """
    code: grpc.StatusCode
    if error is None:
        return "OK"
    if isinstance(error, DomainError):
        code = error.status_code
    elif isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        code = grpc.StatusCode.CANCELLED
    elif isinstance(error, grpc.aio.AbortError):
        # Typed as always set, but None until the handler set one.
        code = cast("grpc.StatusCode | None", context.code()) or grpc.StatusCode.UNKNOWN
    else:
        # The error-mapping interceptor turns anything else into INTERNAL.
        code = grpc.StatusCode.INTERNAL
    return str(code.name)


class MetricsInterceptor(ServerInterceptor):
    """Counts RPCs and times them to their status."""

    def __init__(self, stats: RpcStats = RPC_STATS) -> None:
        self._stats = stats

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: Context,
        rpc: RpcMethod,
    ) -> Any:
        """Record start, status and duration of the call."""
        labels = rpc.metric_labels
        self._stats.start(labels)
        started = time.perf_counter()
        if rpc.response_streaming:
            return self._observe_stream(
                method(request_or_iterator, context), context, labels, started
            )
        error: BaseException | None = None
        try:
            return await method(request_or_iterator, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._stats.finish(labels, _code_of(error, context), time.perf_counter() - started)

    async def _observe_stream(
        self,
        responses: AsyncIterator[Any],
        context: Context,
        labels: Labels,
        started: float,
    ) -> AsyncIterator[Any]:
        error: BaseException | None = None
        try:
            async for response in responses:
                yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._stats.finish(labels, _code_of(error, context), time.perf_counter() - started)
