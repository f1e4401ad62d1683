"""One server process: gRPC (services, health, reflection) and the HTTP listener.

`Platform.start` opens the store (migrating the embedded default), serves the
selected services on one `grpc.aio` server behind the interceptor chain, and
serves `/healthz` and `/metrics` under uvicorn on the same event loop.
`Platform.stop` drains: health turns NOT_SERVING, new calls are refused,
in-flight calls get the grace period to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import math
import os
import signal
import socket
import ssl
import stat
import time
from collections.abc import Iterator, Mapping
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any, TypeVar

import grpc
import redis.asyncio as redis
import structlog
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from intelgraph.sdk import INSECURE, AsyncClient
from sqlalchemy.exc import DBAPIError
from starlette.routing import BaseRoute

from core.request_ids import REQUEST_ID_KEY, current_request_id
from interceptors import PolicyEngine, StreamLimits, TokenVerifier, platform_chain
from interceptors.keys import RING_FILE, KeyRingError, KeyStore, rotate
from interceptors.metrics import RPC_STATS, write_snapshots
from interceptors.policy import POLICY_DIR, PolicyError
from interceptors.tokens import InMemoryRevocations
from servers import console
from servers.budget_links import BudgetsThroughBilling
from servers.config import Settings
from servers.db import Database
from servers.db.database import describe, displayed
from servers.db.migrate import current_revision, ensure_schema, head_revision
from servers.facade import (
    DEFAULT_OPERATIONS_DIR,
    FacadeLimits,
    Gateway,
    GraphqlEndpoint,
    OperationRegistry,
    RootField,
    build_facade_schema,
    caller_token,
    executable_schema,
    graphiql_routes,
)
from servers.facade.schema import Operation
from servers.http import create_http_app, create_metrics_app, multiprocess_dir
from servers.jobs import every
from servers.logs import route_to_stdlib
from servers.reflection import enable_reflection
from servers.registry import ServiceDefinition, all_services, services_named
from servers.runtime import Component, Foundation, Job, PlatformServicer, Runtime
from servers.switches import POLL_S as SWITCHES_POLL_S
from servers.switches import SwitchBoard
from servers.tls import RELOAD_CHECK_S, GrpcCertificates, HttpCertificates
from servers.tracing import Tracing

logger = logging.getLogger(__name__)
#: Readiness changes, as structured lines.
_health_events = structlog.get_logger("conductor.health")

ServicerT = TypeVar("ServicerT", bound=PlatformServicer)
ComponentT = TypeVar("ComponentT", bound=Component)

#: Set by the worker supervisor to tell workers apart in logs and /healthz.
WORKER_ENV = "CONDUCTOR_WORKER_ID"
#: Where the database is configured, as start-up errors name it.
DATABASE_SETTING = "CONDUCTOR_DATABASE_URL / --database-url"
#: Seconds between checks that the store still takes writes (for /healthz).


def loose_files(directory: Path) -> list[Path]:
    """`directory` and the files in it that its owner's group or others may access."""
    if not directory.is_dir():
        return []
    found = [directory] if stat.S_IMODE(directory.stat().st_mode) & 0o077 else []
    return found + [
        path
        for path in sorted(directory.iterdir())
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077
    ]


class StartupError(RuntimeError):
    """The platform could not start (a port is taken, the schema is behind, ...)."""


#: Seconds a schema revision read stays current for readiness.
SCHEMA_CHECK_S = 60.0


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn that leaves signals to the platform, which drains both listeners (see `stop`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ensure_signing_keys(settings: Settings) -> None:
    """On the embedded default, create the first signing key if there is none.

    With a configured key directory, keys are the operator's to provide
    (`conductor keys rotate`): replicas must share them, so none invents its own.
    """
    directory = settings.signing_keys_dir
    if settings.generates_keys_at_start and not (directory / RING_FILE).exists():
        logger.warning("no signing keys in %s: generating the first one", directory)
        rotate(directory, settings.key_algorithm)


def forwarded_request_id() -> list[tuple[str, str]]:
    """The metadata the facade's and the console's gRPC calls carry: the HTTP request's id."""
    return [(REQUEST_ID_KEY, current_request_id())]


class Platform:
    """The services of one process, their listeners and their store.

    Args:
        settings: Validated settings.
        tracing: Where spans go; default: as the settings say (`otlp_endpoint`), and shut
            down with the platform. One given here is the caller's to shut down.
    """

    def __init__(self, settings: Settings, *, tracing: Tracing | None = None) -> None:
        route_to_stdlib()
        self.settings = settings
        self._owns_tracing = tracing is None
        self.tracing = tracing or Tracing.exporting(
            settings.otlp_endpoint,
            sample_ratio=settings.trace_sample_ratio,
            version=_version("intelgraph-conductor"),
            instance=f"{socket.gethostname()}:{os.getpid()}",
        )
        self.services: tuple[ServiceDefinition, ...] = services_named(settings.services)
        try:
            self.database = Database(
                settings.database_url, tenant_connections=settings.tenant_connections
            )
        except OSError as error:  # the SQLite file's directory cannot be made
            raise StartupError(
                f"cannot create the database file {displayed(settings.database_url)} "
                f"({DATABASE_SETTING}): {error.strerror}: {error.filename}"
            ) from None
        self.tracing.trace_database(self.database.engine)
        #: The backout switches, kept in step with the store every `POLL_S` seconds.
        self.switches = SwitchBoard(self.database)
        self.health = health.aio.HealthServicer()
        #: Revoked token ids this process refuses (the Access service feeds it).
        self.revocations = InMemoryRevocations()
        #: The signing keys, once started.
        self.keys: KeyStore | None = None
        self.grpc_port = 0
        self.http_port = 0
        self.state = "starting"
        self._grpc: grpc.aio.Server | None = None
        self._http_servers: list[tuple[_EmbeddedUvicorn, asyncio.Task[None]]] = []
        #: The private metrics port, when /metrics is served apart (`metrics_port`).
        self.metrics_port: int | None = None
        self._jobs: list[asyncio.Task[Any]] = []
        self._servicers: list[PlatformServicer] = []
        #: Every service's component (served here or not), once started.
        self.components: tuple[Component, ...] = ()
        self._started: list[Component] = []
        self._client: AsyncClient | None = None
        self._console_client: AsyncClient | None = None
        self._internal_target = ""
        files = settings.certificate_files
        try:
            #: The certificates both listeners serve (None: plaintext).
            self._grpc_certificates = GrpcCertificates(files) if files is not None else None
            self._http_certificates = HttpCertificates(files) if files is not None else None
        except (OSError, ssl.SSLError) as error:
            raise StartupError(
                f"cannot use the TLS files (CONDUCTOR_TLS_CERT / --tls-cert, CONDUCTOR_TLS_KEY / "
                f"--tls-key, CONDUCTOR_CLIENT_CA / --client-ca): {error}"
            ) from None
        self._engine: PolicyEngine | None = None
        #: Why the store refuses writes, as last checked (None: it takes them).
        self.write_problem: str | None = None
        self._ready = True
        self._schema_checked: tuple[float, str | None] | None = None
        self._redis: redis.Redis | None = None
        #: The persisted GraphQL operations and the facade's root fields, once started.
        self.operations: OperationRegistry | None = None
        self.graphql_roots: Mapping[tuple[Operation, str], RootField] = {}

    @property
    def grpc_target(self) -> str:
        """Where clients reach the gRPC server, e.g. "127.0.0.1:50051"."""
        return _join_host_port(self.settings.host, self.grpc_port)

    @property
    def internal_target(self) -> str:
        """Where the platform's own clients (the facade, the console) reach the gRPC server.

        The public port with plaintext; with TLS, a Unix socket only this process's user
        may open, so that its own calls need no certificate of their own.
        """
        return self._internal_target or self.grpc_target

    async def start(self) -> None:
        """Open the store, bind both listeners and report SERVING.

        Raises:
            StartupError: A listener could not bind, or the schema is not at head.
            SchemaOutOfDate: The schema is behind and migrating at start is off.
        """
        started = time.perf_counter()
        try:
            await self._open_store()
            await self._start_grpc()
            await self._start_http()
            await self._start_jobs()
        except BaseException:
            await self.stop(grace=0)
            raise
        for name in ("", *(service.full_name for service in self.services)):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.state = "serving"
        logger.info(
            "conductor serving grpc=%s http=%s%s services=%s ready_ms=%.0f",
            self.grpc_target,
            _join_host_port(self.settings.host, self.http_port),
            "" if self.metrics_port is None else f" metrics=127.0.0.1:{self.metrics_port}",
            ",".join(service.name for service in self.services),
            (time.perf_counter() - started) * 1000,
        )

    async def _open_store(self) -> None:
        """Reach the store, bring (or check) its schema, and make sure it takes writes.

        Raises:
            StartupError: In one line naming the cause and the setting to look at.
        """
        where = displayed(self.database.url)
        flag = DATABASE_SETTING
        try:
            await ensure_schema(self.database.engine, migrate=self.settings.migrates_at_start)
        except (DBAPIError, OSError) as error:
            raise StartupError(
                f"cannot use the database {where} ({flag}): {describe(error)}"
            ) from None
        problem = await self.database.write_problem()
        if problem is not None:
            raise StartupError(f"the database {where} refuses writes ({flag}): {problem}")
        await self.switches.refresh()  # serve the first call with the switches as they stand
        self.write_problem = None
        secrets = (self.settings.signing_keys_dir, self.settings.document_keys_dir)
        for directory in (*secrets, self.settings.var_dir / "analytics"):
            for loose in loose_files(directory):
                logger.warning("%s is open to others: chmod go-rwx it", loose)

    async def check_writes(self) -> None:
        """Keep `write_problem` current, for /readyz (a database can turn read-only)."""
        self.write_problem = await self.database.write_problem()

    async def _start_grpc(self) -> None:
        try:
            ensure_signing_keys(self.settings)
            keys = self.keys = KeyStore(self.settings.signing_keys_dir)
            engine = PolicyEngine(self.settings.policy_dir or POLICY_DIR)
        except (KeyRingError, PolicyError) as error:
            raise StartupError(str(error)) from None
        revocations = self.revocations
        verifier = TokenVerifier(
            keys,
            issuer=self.settings.token_issuer,
            audience=self.settings.token_audience,
            leeway_s=self.settings.token_leeway,
            revocations=revocations,
        )
        self._verifier, self._engine = verifier, engine
        foundation = Foundation(
            settings=self.settings,
            database=self.database,
            keys=keys,
            engine=engine,
            revocations=revocations,
            services=all_services(),
            tracing=self.tracing,
            switches=self.switches,
        )
        self.components = (
            *(
                component
                for service in foundation.services
                if service.component is not None
                and (component := service.component(foundation)) is not None
            ),
            # What the root provides: Billing's budgets read through its contract.
            BudgetsThroughBilling(
                lambda: self.internal_target, interceptors=self.tracing.client_interceptors
            ),
        )
        inner = [layer for component in self.components for layer in component.interceptors()]
        limits = StreamLimits(self.settings.stream_idle_timeout, self.settings.stream_max_duration)
        server = grpc.aio.server(
            interceptors=[
                # Spans outermost, so that the chain's log line names the call's trace.
                *self.tracing.server_interceptors(),
                platform_chain(
                    verifier,
                    engine,
                    *inner,
                    stream_limits=limits,
                    peer_certificates=self.settings.client_ca is not None,
                ),
            ],
            options=[("grpc.so_reuseport", 1 if self.settings.reuse_port else 0)],
        )
        self.runtime = Runtime.compose(foundation, self.components)
        self._servicers = [service.register(server, self.runtime) for service in self.services]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection(
            [*(service.full_name for service in self.services), health.SERVICE_NAME], server
        )
        address = _join_host_port(self.settings.host, self.settings.grpc_port)
        try:
            if self._grpc_certificates is None:
                self.grpc_port = server.add_insecure_port(address)
            else:
                self.grpc_port = server.add_secure_port(
                    address, self._grpc_certificates.credentials()
                )
                self._internal_target = f"unix:{self._internal_socket()}"
                server.add_insecure_port(self._internal_target)
        except RuntimeError as error:
            raise StartupError(f"cannot bind gRPC to {address}: {error}") from None
        self._grpc = server
        await server.start()

    def _internal_socket(self) -> Path:
        """A fresh Unix socket path in a directory only this user may enter."""
        directory = self.settings.var_dir / "run"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        path = directory / f"grpc-{os.getpid()}.sock"
        path.unlink(missing_ok=True)  # left by a process that died with this pid
        return path

    def _listen(self, host: str, port: int, what: str = "HTTP") -> socket.socket:
        """A listening TCP socket on (host, port), as both HTTP listeners bind theirs.

        Raises:
            StartupError: It cannot bind.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto=IPPROTO_TCP, so that asyncio sets TCP_NODELAY on every accepted
        # connection (it checks the proto); without it each keep-alive response
        # waits ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.settings.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            address = _join_host_port(host, port)
            raise StartupError(f"cannot bind {what} to {address}: {error.strerror}") from None
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    async def _serve_http(
        self, app: Any, sock: socket.socket, certificates: HttpCertificates | None = None
    ) -> None:
        tls: dict[str, Any] = (
            {"ssl_context_factory": lambda _config, _default: certificates.context}
            if certificates is not None
            else {}
        )
        server = _EmbeddedUvicorn(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=max(math.ceil(self.settings.shutdown_grace), 1),
                **tls,
            )
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._http_servers.append((server, task))
        while not server.started:
            if task.done():
                await task
                raise StartupError("HTTP listener stopped during start-up")
            await asyncio.sleep(0.005)

    async def _start_http(self) -> None:
        private_metrics = self.settings.metrics_port is not None
        sock = self._listen(self.settings.host, self.settings.http_port)
        self.http_port = sock.getsockname()[1]
        app = create_http_app(
            self.health_report,
            self._graphql_endpoint().handle,
            [
                *(graphiql_routes() if self.settings.environment != "production" else []),
                *self._console_routes(),
            ],
            liveness=self.liveness,
            metrics=not private_metrics,
        )
        await self._serve_http(self.tracing.http_app(app), sock, self._http_certificates)
        if self.settings.metrics_port is not None:
            # Metrics on a port of their own, on loopback only: scraped by an agent beside
            # the process, never exposed with the public listener.
            metrics = self._listen(
                "127.0.0.1", self.settings.metrics_port, "/metrics (CONDUCTOR_METRICS_PORT)"
            )
            self.metrics_port = metrics.getsockname()[1]
            await self._serve_http(create_metrics_app(), metrics)

    def servicer(self, kind: type[ServicerT]) -> ServicerT:
        """The running servicer of class `kind` (for operators' drills and tests).

        Raises:
            LookupError: That service is not served here.
        """
        for servicer in self._servicers:
            if isinstance(servicer, kind):
                return servicer
        raise LookupError(f"{kind.__name__} is not served here")

    def component(self, kind: type[ComponentT]) -> ComponentT:
        """The running component of class `kind` (for operators' drills and tests).

        Raises:
            LookupError: No service built one here (turned off, or not started).
        """
        found = self.runtime.component(kind) if self.components else None
        if found is None:
            raise LookupError(f"no {kind.__name__} runs here")
        return found

    async def _start_jobs(self) -> None:
        """Background work: each component's and each servicer's jobs, metrics snapshots."""
        jobs: list[Job] = [
            functools.partial(
                every, self.settings.readiness_interval, self.watch_readiness, "readiness"
            ),
            functools.partial(every, SWITCHES_POLL_S, self.switches.refresh, "switches"),
        ]
        for component in self.components:
            await component.start()
            self._started.append(component)
            jobs += component.background_jobs()
        for servicer in self._servicers:
            jobs += servicer.background_jobs()
        directory = multiprocess_dir()
        if directory is not None:
            jobs.append(functools.partial(write_snapshots, RPC_STATS, directory))
        if self._http_certificates is not None:
            jobs.append(
                functools.partial(every, RELOAD_CHECK_S, self._reload_certificates, "tls.reload")
            )
        self._jobs = [asyncio.create_task(job()) for job in jobs]

    async def _reload_certificates(self) -> None:
        """Renewed certificate files serve new HTTP connections (gRPC reads them per handshake)."""
        if self._http_certificates is not None:
            self._http_certificates.reload_if_changed()

    def _console_routes(self) -> list[BaseRoute]:
        """The web console at /console where Rag, the Catalog or Access is served.

        Each section of the console exists only where its service is served;
        tus uploads (/files) only where Rag is.
        """
        served = set(self.settings.services)
        if not served & {"rag", "catalog", "access"}:
            return []
        # Like the facade, a client of our own loopback port, calling with each
        # request's token.
        client = self._console_client = AsyncClient(
            self.internal_target,
            INSECURE,
            token=console.caller_token,
            metadata=forwarded_request_id,
            interceptors=self.tracing.client_interceptors(),
        )
        routes: list[BaseRoute] = []
        if "rag" in served:
            tus = console.TusEndpoint(
                client.rag,
                console.call_as,
                max_size=self.settings.rag_max_document_bytes,
                prefix="/files",
            )
            routes += tus.routes()
        pages = console.Console(
            client.access,
            rag=client.rag if "rag" in served else None,
            catalog=client.catalog if "catalog" in served else None,
            approvals="access" in served,
            upload_url="/files",
        )
        return [*routes, *pages.routes()]

    def _graphql_endpoint(self) -> GraphqlEndpoint:
        settings = self.settings
        if self._engine is None:
            raise StartupError("the GraphQL facade needs the policy engine: start gRPC first")
        facade = build_facade_schema(service.descriptor for service in self.services)
        # The facade calls our own loopback port, as any SDK user would.
        self._client = AsyncClient(
            self.internal_target,
            INSECURE,
            token=caller_token,
            metadata=forwarded_request_id,
            interceptors=self.tracing.client_interceptors(),
        )
        tracer = self.tracing.tracer("conductor.graphql") if self.tracing.enabled else None
        gateway = Gateway(
            self._client.by_path,
            self._engine,
            max_stream_items=settings.graphql_max_stream_items,
            tracer=tracer,
        )
        schema = executable_schema(facade, gateway)
        operations = self.operations = OperationRegistry(
            schema, settings.graphql_operations_dir or DEFAULT_OPERATIONS_DIR
        )
        self.graphql_roots = facade.roots
        for problem in operations.problems:
            logger.warning("persisted operation not registered: %s", problem)
        limits = FacadeLimits(
            production=settings.environment == "production",
            auto_register=settings.graphql_auto_register,
            max_document_bytes=settings.graphql_max_document_bytes,
            max_depth=settings.graphql_max_depth,
            max_fields=settings.graphql_max_fields,
        )
        return GraphqlEndpoint(
            schema,
            operations,
            self._verifier,
            self._engine,
            limits,
            metering=self.runtime.metering,
            cache=self.runtime.read_cache,
            roots=facade.roots,
            tracer=tracer,
        )

    async def liveness(self) -> tuple[bool, dict[str, object]]:
        """Whether the process is alive (its loop answers): /healthz."""
        document: dict[str, object] = {
            "status": self.state,
            "services": [service.full_name for service in self.services],
            "pid": os.getpid(),
            "worker": os.environ.get(WORKER_ENV, "0"),
        }
        return self.state != "stopped", document

    async def health_report(self, *, schema: bool = True) -> tuple[bool, dict[str, object]]:
        """Whether this process should receive traffic, and the facts behind it: /readyz.

        Serving, the database reachable and taking writes, and its schema at head
        (not checked with `schema` false: the watcher's frequent checks skip
        Alembic's costly context). Redis, when configured, is reported but does not
        decide: every replica falls back without it (ADR 0024), and taking them all
        out of rotation would turn its outage into the platform's; the status then
        says "degraded".
        """
        alive, document = await self.liveness()
        reachable = await self.database.ping()
        if not reachable:
            database = "unreachable"
        elif self.write_problem is not None:
            database = f"refuses writes: {self.write_problem}"
        else:
            database = "ok"
        document["database"] = database
        checks = [database == "ok"]
        if reachable and schema:
            revision = await self._schema_revision()
            document["schema"] = "at head" if revision == head_revision() else f"at {revision}"
            checks.append(revision == head_revision())
        degraded = False
        if self.settings.redis_url:
            document["redis"] = await self._redis_state()
            degraded = document["redis"] != "ok"
        if self.keys is not None and self.keys.problem:
            # Informational: the previous ring still verifies tokens, so the replica serves.
            document["keys"] = f"previous ring in use: {self.keys.problem}"
        ready = alive and self.state == "serving" and all(checks)
        if self.state == "serving" and not ready:
            document["status"] = "not ready"
        elif ready and degraded:
            document["status"] = "degraded"
        return ready, document

    async def _schema_revision(self) -> str | None:
        """The schema's revision, read at most once a minute (Alembic's context costs ~40 ms)."""
        now = time.monotonic()
        if self._schema_checked is not None and now - self._schema_checked[0] < SCHEMA_CHECK_S:
            return self._schema_checked[1]
        try:
            revision = await current_revision(self.database.engine)
        except (DBAPIError, OSError):
            return None
        self._schema_checked = (now, revision)
        return revision

    async def _redis_state(self) -> str:
        if self._redis is None:
            self._redis = redis.from_url(
                self.settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
        try:
            await self._redis.ping()
        except (redis.RedisError, OSError) as error:
            return f"unreachable: {type(error).__name__}"
        return "ok"

    async def watch_readiness(self) -> None:
        """Keep gRPC health in step with readiness: NOT_SERVING while a dependency is down."""
        await self.check_writes()
        ready, document = await self.health_report(schema=False)
        if self.state != "serving" or ready == self._ready:
            return
        self._ready = ready
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        for name in ("", *(service.full_name for service in self.services)):
            await self.health.set(name, status)
        if ready:
            _health_events.info("ready again: health SERVING", **document)
        else:
            _health_events.warning("not ready: health NOT_SERVING", **document)

    async def _drain_http(self, grace: float) -> None:
        """Take no more HTTP requests; wait (up to `grace`) for those being answered."""
        for server, _ in self._http_servers:
            server.should_exit = True
            server.force_exit = grace <= 0
            # At once, not at uvicorn's next tick: no new connection, and no new request on
            # a kept-alive one (idle ones close, busy ones close after their response).
            for listener in getattr(server, "servers", ()):
                listener.close()
            for connection in list(server.server_state.connections):
                connection.shutdown()
        answering = {task for server, _ in self._http_servers for task in server.server_state.tasks}
        if answering and grace > 0:
            await asyncio.wait(answering, timeout=grace)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new calls, give in-flight ones `grace` seconds, close the store.

        HTTP stops taking connections first, and the requests it already took
        finish while gRPC still serves: their GraphQL fields and console pages
        call this process's gRPC server (stopped first, it would fail them
        UNAVAILABLE). Then gRPC stops: clients are told to go elsewhere, and the
        calls in flight get `grace` seconds.
        """
        grace = self.settings.shutdown_grace if grace is None else grace
        self.state = "draining"
        await self.health.enter_graceful_shutdown()
        deadline = time.monotonic() + grace
        await self._drain_http(grace)
        if self._grpc is not None:
            await self._grpc.stop(max(deadline - time.monotonic(), 0.0))
        await asyncio.gather(*(task for _, task in self._http_servers), return_exceptions=True)
        self._http_servers.clear()
        for client in (self._client, self._console_client):
            if client is not None:
                await client.close()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        for component in reversed(self._started):
            await component.close()
        self._started.clear()
        await self.database.dispose()
        if self._internal_target:
            socket_file = Path(self._internal_target.removeprefix("unix:"))
            socket_file.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink, at the end
        if self._engine is not None:
            self._engine.close()
        if self._owns_tracing:  # flushes buffered spans: off the loop, the collector may be slow
            await asyncio.to_thread(self.tracing.shutdown)
        self.state = "stopped"


async def serve(settings: Settings) -> None:
    """Run one platform process until SIGTERM or SIGINT, then drain."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Installed before start-up, so a signal during it drains rather than kills.
        loop.add_signal_handler(signum, stopping.set)
    platform = Platform(settings)
    await platform.start()
    # What start-up built lives as long as the process: out of the collector's way, so
    # full collections (which pause the event loop) only walk what serving allocates.
    gc.freeze()
    await stopping.wait()
    logger.info("conductor draining (grace %.1fs)", settings.shutdown_grace)
    await platform.stop()
    logger.info("conductor stopped")
