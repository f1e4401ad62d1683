"""Engines and transactions: SQLite (embedded default) and PostgreSQL, both async.

Every tenant's transactions together hold at most `tenant_connections` pooled
connections at once: a tenant that opens more waits for one of its own to
finish (and is refused with RESOURCE_EXHAUSTED after `TENANT_SHARE_WAIT_S`),
so no tenant can take the whole pool from the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core.errors import ResourceExhausted
from servers.db.tenancy import TENANT_KEY

logger = logging.getLogger(__name__)

#: Milliseconds an SQLite writer waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Execution option of read-only transactions.
READONLY = "intelgraph_readonly"
#: Connections one tenant's transactions may hold at once, unless configured.
DEFAULT_TENANT_CONNECTIONS = 4
#: Seconds a transaction waits for its tenant's share of the pool before it is refused.
TENANT_SHARE_WAIT_S = 10.0


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine for `url`, tuned for the backend.

    SQLite: the file's directory is created; WAL journal, foreign keys on, a
    busy timeout, and transactions begun explicitly (`BEGIN IMMEDIATE`) so
    that they really are serializable transactions (the sqlite3 module's
    legacy implicit BEGIN skips SELECTs). PostgreSQL: pre-ping pooled
    connections so a restarted server costs one retry, not an error.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
            _private_file(Path(parsed.database))
        engine = create_async_engine(url, **options)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, **{"pool_pre_ping": True, **options})


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only; warn if others may read it.

    SQLite gives its WAL and shared-memory files the mode of the database file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "the database file %s is open to others (mode %04o): chmod 600 it", path, mode
            )
    else:
        os.close(descriptor)


def displayed(url: str) -> str:
    """`url` as messages may show it: passwords hidden, in the user part and in the query."""
    parsed = make_url(url)
    query = {
        key: "***" if "password" in key.lower() else value for key, value in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True)


def describe(error: BaseException) -> str:
    """One line saying what went wrong with the database (the driver's own first line)."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers: IMMEDIATE takes the write lock up front, so a transaction never
        # reads a row and then finds another writer got in first (SQLite serializes
        # writers anyway; this makes it happen before the read, not after).
        # Readers: a deferred BEGIN reads a WAL snapshot beside any writer.
        readonly = connection.get_execution_options().get(READONLY, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class TenantShares:
    """Caps the connections each tenant's transactions hold at once.

    Args:
        limit: Connections per tenant.
        wait_s: How long a transaction waits for its tenant's share.
    """

    def __init__(self, limit: int, wait_s: float = TENANT_SHARE_WAIT_S) -> None:
        self.limit = limit
        self._wait_s = wait_s
        #: Per tenant: its semaphore and how many transactions hold or want it.
        self._tenants: dict[uuid.UUID, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def held(self, tenant: uuid.UUID) -> AsyncIterator[None]:
        """Hold one of `tenant`'s connections for the duration of the block.

        Raises:
            ResourceExhausted: The tenant's share stayed taken for `wait_s`.
        """
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = (asyncio.Semaphore(self.limit), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            if semaphore.locked():  # the share is taken: wait, but not for ever
                try:
                    await asyncio.wait_for(semaphore.acquire(), self._wait_s)
                except TimeoutError:
                    raise ResourceExhausted(
                        f"this tenant already has {self.limit} transactions open; retry shortly",
                        metadata={"connections": str(self.limit)},
                    ) from None
            else:
                await semaphore.acquire()  # free: returns at once
            try:
                yield
            finally:
                semaphore.release()
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._tenants[tenant]


class Database:
    """The platform's store: one engine, and transactions scoped to a tenant or not.

    Args:
        url: SQLAlchemy URL, `sqlite+aiosqlite:///path` or `postgresql+psycopg://...`.
        tenant_connections: Connections one tenant's transactions may hold at once.
        engine_options: Passed to `create_async_engine`.
    """

    def __init__(
        self,
        url: str,
        *,
        tenant_connections: int = DEFAULT_TENANT_CONNECTIONS,
        **engine_options: Any,
    ) -> None:
        self.url = url
        self.shares = TenantShares(tenant_connections)
        self.engine = create_engine(url, **engine_options)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._readers = async_sessionmaker(
            self.engine.execution_options(**{READONLY: True}), expire_on_commit=False
        )

    @asynccontextmanager
    async def tenant_session(
        self, tenant_id: uuid.UUID, *, readonly: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A transaction confined to one tenant's rows; commits on success, rolls back on error.

        Every statement on a `TenantScoped` model in it is filtered to
        `tenant_id`, and every row it writes belongs to `tenant_id`. A `readonly`
        transaction does not wait for writers (on SQLite) and must not write.
        """
        sessions = self._readers if readonly else self._sessions
        async with (
            self.shares.held(tenant_id),
            sessions(info={TENANT_KEY: tenant_id}) as session,
            session.begin(),
        ):
            yield session

    @asynccontextmanager
    async def platform_session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """A transaction for platform tables (no tenant); tenant rows are out of reach."""
        sessions = self._readers if readonly else self._sessions
        async with sessions() as session, session.begin():
            yield session

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False
        return True

    async def write_problem(self) -> str | None:
        """Why the database refuses writes (read-only file or server, ...); None if it takes them.

        It writes a row into `job_leases` and rolls the transaction back, so it
        needs (and proves) exactly what every write needs.
        """
        probe = text(
            "INSERT INTO job_leases (name, holder, acquired_at, expires_at) "
            "VALUES (:name, 'write-probe', :now, :now)"
        )
        now = datetime.now(UTC).replace(tzinfo=None) if self.is_sqlite else datetime.now(UTC)
        try:
            async with self.engine.connect() as connection:
                transaction = await connection.begin()
                try:
                    await connection.execute(
                        probe, {"name": f"write-probe:{uuid.uuid4()}", "now": now}
                    )
                finally:
                    await transaction.rollback()
        except (DBAPIError, OSError) as error:
            return describe(error)
        return None

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is the embedded SQLite file."""
        return self.engine.dialect.name == "sqlite"

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
