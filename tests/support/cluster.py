"""Several `conductor serve` replicas on one PostgreSQL and one Redis, as production runs them.

Used by the load benchmark (`bench/load.py`) and the chaos suite (`tests/chaos/`):

* `Cluster`: a private schema of a PostgreSQL, the keys every replica shares,
  and N replicas, each on ports fixed for its life (a restarted replica comes
  back where its callers expect it), each logging to its own file. Its
  `target` lists every replica for the SDK, which spreads calls over them.
* `PrivateRedis` and `PrivatePostgres`: servers of our own on free ports, so a
  chaos case can stop and restart them without touching anything else.
* `Proxy`: a TCP relay one replica reaches a dependency through, which can cut
  its connections or stall them (a partition), then heal.

Nothing here imports pytest: the benchmark uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from interceptors.keys import load, rotate
from interceptors.tokens import mint

BIN = Path(sys.executable).parent
SERVING_LINE = re.compile(r"conductor serving grpc=(?P<grpc>\S+) http=(?P<http>\S+) ")
#: Every scope the load mix's operators use (a tenant's administrator, in effect).
OPERATOR_SCOPES = [
    "admin.write", "analytics.read", "analytics.write", "audit.read", "billing.read",
    "billing.write", "billing.usage.write", "catalog.read", "catalog.write", "edge.read",
    "platform.admin", "rag.read", "rag.write",
]  # fmt: skip


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq (psycopg.connect) takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Replica:
    """One `conductor serve` process and where it listens."""

    name: str
    grpc_port: int
    http_port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def grpc(self) -> str:
        """host:port of its gRPC listener."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        """host:port of its HTTP listener."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 60) -> float:
        """Start it and wait for its serving line; the seconds that took."""
        started = time.perf_counter()
        if self.process is not None:
            self.kill()  # reap the previous one (killed or exited)
        self.starts += 1
        with self.log.open("a") as output:
            output.write(f"--- start {self.starts} at {time.time():.3f}\n")
            output.flush()
            begin = output.tell()
            self.process = subprocess.Popen(
                [str(BIN / "conductor"), "serve", "--grpc-port", str(self.grpc_port),
                 "--http-port", str(self.http_port), "--log-level", "info"],
                env=self.env, stdout=output, stderr=output,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited:\n{self.tail()}")
            with self.log.open("rb") as text:
                text.seek(begin)
                if SERVING_LINE.search(text.read().decode(errors="replace")):
                    return time.perf_counter() - started
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"replica {self.name} did not start in {timeout_s} s:\n{self.tail()}")

    def signal(self, number: signal.Signals) -> None:
        """Send it a signal (SIGTERM drains it, SIGKILL is a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def wait(self, timeout_s: float = 30) -> int:
        """Wait for it to exit; its exit status."""
        assert self.process is not None
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL it (if it still runs) and reap it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 40) -> str:
        """The end of its log."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self, pattern: str) -> list[str]:
        """Its log lines that match `pattern` (a regular expression)."""
        if not self.log.exists():
            return []
        compiled = re.compile(pattern)
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if compiled.search(line)]  # fmt: skip


@dataclass
class Cluster:
    """Replicas of one platform on a private PostgreSQL schema and a Redis.

    Args:
        directory: Where the keys, the replicas' var directories and logs go.
        postgres_url: A SQLAlchemy PostgreSQL URL; the cluster makes a schema of its own there.
        redis_url: The Redis every replica uses ("" for none).
        replicas: How many.
        settings: More CONDUCTOR_* variables for every replica.
    """

    directory: Path
    postgres_url: str
    redis_url: str = ""
    replicas: int = 2
    settings: dict[str, str] = field(default_factory=dict)
    members: list[Replica] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.schema = f"cluster_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(libpq(self.postgres_url), autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{self.schema}"')
        self.database_url = (
            make_url(self.postgres_url)
            .update_query_dict({"options": f"-csearch_path={self.schema}"})
            .render_as_string(hide_password=False)
        )
        self.keys = self.directory / "keys"
        rotate(self.keys, "EdDSA")
        shared = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")},
            "CONDUCTOR_DATABASE_URL": self.database_url,
            "CONDUCTOR_KEYS_DIR": str(self.keys),
            "CONDUCTOR_BILLING_KEYS_DIR": str(self.directory / "billing-keys"),
            "CONDUCTOR_RAG_KEYS_DIR": str(self.directory / "rag-keys"),
            "CONDUCTOR_SHUTDOWN_GRACE": "5",
            **({"CONDUCTOR_REDIS_URL": self.redis_url} if self.redis_url else {}),
            **self.settings,
        }
        self.env = shared
        try:
            subprocess.run(
                [str(BIN / "conductor"), "migrate", "--log-level", "warning"],
                env=shared, check=True, capture_output=True,
            )  # fmt: skip
        except BaseException:
            self._drop_schema()
            raise
        for index in range(self.replicas):
            name = chr(ord("a") + index)
            self.members.append(
                Replica(
                    name,
                    free_port(),
                    free_port(),
                    {**shared, "CONDUCTOR_VAR_DIR": str(self.directory / f"var-{name}")},
                    self.directory / f"replica-{name}.log",
                )
            )

    def start(self) -> None:
        """Start every replica (one after another: they share two cores)."""
        for replica in self.members:
            replica.start()

    def use_redis(self, replica: int, url: str) -> None:
        """Point one replica at another Redis (a proxy, say) from its next start."""
        self.members[replica].env["CONDUCTOR_REDIS_URL"] = url

    @property
    def target(self) -> str:
        """Every replica, as a gRPC target the SDK spreads calls over."""
        return "ipv4:" + ",".join(replica.grpc for replica in self.members)

    def token(self, tenant: uuid.UUID, scopes: list[str], subject: str = "load") -> str:
        """A token of this platform's signing key."""
        return mint(
            load(self.keys),
            issuer="intelgraph-conductor",
            audience="intelgraph",
            subject=subject,
            tenant=tenant,
            scopes=scopes,
            ttl_s=3600,
        )

    def close(self) -> None:
        """Stop every replica (SIGTERM, then SIGKILL) and drop the schema."""
        for replica in self.members:
            replica.signal(signal.SIGTERM)
        for replica in self.members:
            if replica.process is not None:
                try:
                    replica.wait(20)
                except subprocess.TimeoutExpired:
                    replica.kill()
        self._drop_schema()

    def _drop_schema(self) -> None:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(libpq(self.postgres_url), autocommit=True, connect_timeout=5) as db,
        ):
            db.execute(f'DROP SCHEMA "{self.schema}" CASCADE')


class PrivateRedis:
    """A `redis-server` of our own on a free port, without persistence (as CI's is)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://... of it."""
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        """Whether redis-server is installed."""
        return shutil.which("redis-server") is not None

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for_port(self.port)

    def stop(self) -> None:
        """Stop it at once (what it held is gone, as after a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _postgres_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temporary directory), restartable.

    Its directory is a fresh one under the system's temporary directory (run as
    root, the server runs as the `postgres` user, which must reach it); `remove`
    deletes it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="conductor-postgres-"))
        self.bin = _postgres_bin()
        self._as_postgres = os.geteuid() == 0  # initdb refuses root

    @property
    def url(self) -> str:
        """Its `postgres` database, as a SQLAlchemy URL."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def available() -> bool:
        """Whether PostgreSQL's server programs are installed."""
        return _postgres_bin() is not None

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *command], check=True, capture_output=True)

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )

    def start(self) -> None:
        """Create the cluster (the first time) and start it."""
        assert self.bin is not None
        data = self.directory / "data"
        if not data.exists():
            if self._as_postgres:
                shutil.chown(self.directory, "postgres")
            self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8")  # fmt: skip
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", self._options(),
                  "-l", str(self.directory / "server.log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop it (`fast` rolls back open transactions; `immediate` is a crash)."""
        assert self.bin is not None
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"),
                      "-m", mode, "-w", "stop")  # fmt: skip

    def remove(self) -> None:
        """Stop it at once and delete its files."""
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _wait_for_port(port: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing answered on port {port} in {timeout_s} s")


class Proxy:
    """A TCP relay to `upstream_port` on its own thread: cut, stall (partition) and heal.

    While stalled, bytes are held in neither direction and new connections are
    accepted but not relayed, as on a partitioned network; `heal` lets them flow.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def _call(self, action: str) -> None:
        def run() -> None:
            if action == "stall":
                self._flowing.clear()
            elif action == "heal":
                self._flowing.set()
            else:
                for writer in list(self._writers):
                    writer.transport.abort()

        self._loop.call_soon_threadsafe(run)
        time.sleep(0.01)

    def cut(self) -> None:
        """Reset every open connection (a blip: clients reconnect at once)."""
        self._call("cut")

    def stall(self) -> None:
        """Stop relaying in both directions (a partition)."""
        self._call("stall")

    def heal(self) -> None:
        """Relay again."""
        self._call("heal")

    def close(self) -> None:
        """Cut everything and stop the relay."""
        self.heal()
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def running(cluster: Cluster) -> Iterator[Cluster]:
    """Start the cluster's replicas; close it afterwards whatever happens."""
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
