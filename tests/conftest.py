"""Shared fixtures: settings, databases (SQLite always, PostgreSQL when configured), servers.

PostgreSQL tests run against `CONDUCTOR_TEST_POSTGRES_URL` (for example
`postgresql+psycopg://postgres@127.0.0.1:5432/test`), each in a schema of its
own that is dropped afterwards. Without the variable they are skipped with a
visible reason; under `CI=true` its absence is an error, so CI can never pass
by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from servers.app import ensure_signing_keys
from servers.config import Settings, load_settings
from servers.db import Database
from tests.support import slow_callbacks
from tests.support.serving import (
    IN_CI,
    POSTGRES_SKIP_REASON,
    POSTGRES_URL,
    REDIS_SKIP_REASON,
    REDIS_URL,
    Minter,
    libpq_url,
)


def pytest_configure(config: pytest.Config) -> None:
    slow_callbacks.install()
    if IN_CI and not POSTGRES_URL:
        raise pytest.UsageError("CI=true but CONDUCTOR_TEST_POSTGRES_URL is not set")
    if IN_CI and not os.environ.get("CONDUCTOR_TEST_REDIS_URL"):
        raise pytest.UsageError("CI=true but CONDUCTOR_TEST_REDIS_URL is not set")


#: Each test's kind is the folder it lives in.
KINDS = ("unit", "contract", "integration", "e2e", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its kind (its folder), and tests that use Redis with `redis`."""
    for item in items:
        folder = item.path.parent.name
        if folder in KINDS:
            item.add_marker(folder)
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker("redis")


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


@pytest.fixture
def minter(settings: Settings) -> Minter:
    """Tokens for the `settings` platform; its first key is created if needed."""
    ensure_signing_keys(settings)
    return Minter(settings)


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
