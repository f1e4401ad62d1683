"""Shared fixtures: settings, databases (SQLite always, PostgreSQL when configured), servers.

PostgreSQL tests run against `CONDUCTOR_TEST_POSTGRES_URL` (for example
`postgresql+psycopg://postgres@127.0.0.1:5432/test`), each in a schema of its
own that is dropped afterwards. Without the variable they are skipped with a
visible reason; under `CI=true` its absence is an error, so CI can never pass
by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from intelgraph.common.v1 import authorization_pb2
from sqlalchemy.engine import make_url

from interceptors import keys, tokens
from servers.app import Platform, ensure_signing_keys
from servers.config import Settings, load_settings
from servers.db import Database
from servers.registry import all_services
from tests import slow_callbacks

POSTGRES_URL = os.environ.get("CONDUCTOR_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_SKIP_REASON = (
    "CONDUCTOR_TEST_POSTGRES_URL is not set: PostgreSQL storage tests skipped "
    "(set it, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test, to run them)"
)


def pytest_configure(config: pytest.Config) -> None:
    slow_callbacks.install()
    if IN_CI and not POSTGRES_URL:
        raise pytest.UsageError("CI=true but CONDUCTOR_TEST_POSTGRES_URL is not set")
    if IN_CI and not os.environ.get("CONDUCTOR_TEST_REDIS_URL"):
        raise pytest.UsageError("CI=true but CONDUCTOR_TEST_REDIS_URL is not set")


@pytest.fixture(autouse=True)
def _serving_path_never_holds_the_loop() -> Iterator[None]:
    """Fail a test during which a serving-path callback held its event loop over 100 ms."""
    slow_callbacks.collected()  # what earlier tests' leftovers did is not this test's
    yield
    slow = slow_callbacks.collected()
    if slow:
        listed = "; ".join(
            f"{found.what} ({found.cpu_s * 1000:.0f} ms){found.stack and chr(10) + found.stack}"
            for found in slow
        )
        pytest.fail(f"event loop held over {slow_callbacks.LIMIT_S * 1000:.0f} ms: {listed}")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an in-process server on free ports with its own SQLite file."""
    return load_settings(
        grpc_port=0,
        http_port=0,
        var_dir=tmp_path / "var",
        shutdown_grace=2.0,
    )


def libpq_url(sqlalchemy_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg (libpq) takes it."""
    url = make_url(sqlalchemy_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A SQLAlchemy URL whose connections land in a fresh, private schema."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Like `database_url`, shared by a whole module (for a platform the module serves)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    url: str = request.getfixturevalue("postgres_module_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An empty database on each backend; disposed afterwards."""
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.dispose()


#: A tenant for tests, and another one to prove isolation.
TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")
OTHER_TENANT = uuid.UUID("7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910")


def all_permissions() -> list[str]:
    """Every permission some RPC of the contracts declares."""
    permissions = set()
    for service in all_services():
        for method in service.descriptor.methods:
            rule = method.GetOptions().Extensions[authorization_pb2.authorization]
            if rule.WhichOneof("rule") == "permission":
                permissions.add(rule.permission)
    return sorted(permissions)


class Minter:
    """Mints tokens with the keys of a settings' key directory, as `conductor token mint` does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(
        self,
        scopes: list[str] | None = None,
        *,
        tenant: uuid.UUID = TENANT,
        subject: str = "alice",
        ttl_s: float = 600,
        **overrides: object,
    ) -> str:
        ring = keys.load(self.settings.signing_keys_dir)
        options: dict[str, object] = {
            "issuer": self.settings.token_issuer,
            "audience": self.settings.token_audience,
            **overrides,
        }
        return tokens.mint(
            ring,
            subject=subject,
            tenant=tenant,
            scopes=all_permissions() if scopes is None else scopes,
            ttl_s=ttl_s,
            **options,  # type: ignore[arg-type]
        )

    def metadata(
        self, scopes: list[str] | None = None, **options: object
    ) -> tuple[tuple[str, str]]:
        """Call metadata carrying a fresh token."""
        return (("authorization", f"Bearer {self(scopes, **options)}"),)


@pytest.fixture
def minter(settings: Settings) -> Minter:
    """Tokens for the `settings` platform; its first key is created if needed."""
    ensure_signing_keys(settings)
    return Minter(settings)


REDIS_URL = os.environ.get("CONDUCTOR_TEST_REDIS_URL", "")
REDIS_SKIP_REASON = (
    "CONDUCTOR_TEST_REDIS_URL is not set: Redis tests skipped "
    "(set it, e.g. redis://127.0.0.1:6379/0, to run them)"
)


@pytest.fixture(scope="module")
def postgres_module_url() -> Iterator[str]:
    """Like `postgres_schema_url`, for a whole module."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> str:
    """The Redis the tests may use (skipped, visibly, without one)."""
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP_REASON)
    return REDIS_URL


@contextlib.asynccontextmanager
async def serving(var_dir: Path, **options: object) -> AsyncIterator[Platform]:
    """A platform on free ports, its schema migrated at start, stopped at once afterwards."""
    platform = Platform(
        load_settings(grpc_port=0, http_port=0, var_dir=var_dir, auto_migrate=True, **options)
    )
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop(grace=0)
