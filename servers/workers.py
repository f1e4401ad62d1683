"""`--workers N`: N server processes sharing the ports through SO_REUSEPORT.

One Python process serves on one core; the kernel spreads new connections
over every process listening on a port with SO_REUSEPORT. The supervisor
migrates the schema once, starts the workers with the same settings, forwards
SIGTERM/SIGINT so every worker drains, and stops them all if one dies, so that
the process manager above it (systemd, Kubernetes) sees the failure and acts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from types import FrameType

from sqlalchemy.exc import DBAPIError

from servers.app import WORKER_ENV, ensure_signing_keys
from servers.config import Settings
from servers.db import Database
from servers.db.migrate import SchemaOutOfDate, ensure_schema

logger = logging.getLogger(__name__)

#: Seconds a worker may take beyond the grace period before it is killed.
KILL_AFTER_GRACE_S = 5.0


async def _prepare(settings: Settings) -> None:
    """What workers must not race over: the first signing key and the schema."""
    ensure_signing_keys(settings)
    database = Database(settings.database_url)
    try:
        await ensure_schema(database.engine, migrate=settings.migrates_at_start)
    finally:
        await database.dispose()


def run_workers(settings: Settings) -> int:
    """Supervise `settings.workers` worker processes until a signal or a failure.

    Returns:
        The exit status: 0 after a clean drain, 1 if a worker failed.
    """
    try:
        asyncio.run(_prepare(settings))
    except (SchemaOutOfDate, DBAPIError, OSError) as error:
        # Like a single process's start: one line, exit 1 (the service manager sees it).
        logger.error("conductor cannot start: %s", error)  # noqa: TRY400 - no traceback wanted
        return 1
    metrics_dir = tempfile.mkdtemp(prefix="conductor-metrics-")
    environment = {
        **os.environ,
        **settings.as_environment(),
        "CONDUCTOR_WORKERS": "1",
        "CONDUCTOR_REUSE_PORT": "true",
        "CONDUCTOR_AUTO_MIGRATE": "false",
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
    }
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("supervisor got %s; draining workers", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers: list[subprocess.Popen[bytes]] = []
    failed = False
    try:
        for index in range(settings.workers):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "servers", "serve"],
                    env={**environment, WORKER_ENV: str(index)},
                )
            )
        logger.info("supervisor started %d workers: %s", len(workers), [w.pid for w in workers])
        while not stop.wait(0.2):
            exited = [worker for worker in workers if worker.poll() is not None]
            if exited:
                logger.error(
                    "worker pid %d exited with %d; stopping all",
                    exited[0].pid,
                    exited[0].returncode,
                )
                failed = True
                break
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=settings.shutdown_grace + KILL_AFTER_GRACE_S)
            except subprocess.TimeoutExpired:
                logger.error("worker pid %d did not drain in time; killing it", worker.pid)  # noqa: TRY400
                worker.kill()
                worker.wait()
                failed = True
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 1 if failed or any(worker.returncode != 0 for worker in workers) else 0
