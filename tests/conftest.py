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

from servers.config import Settings, load_settings
from servers.db import Database

POSTGRES_URL = os.environ.get("CONDUCTOR_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_SKIP_REASON = (
    "CONDUCTOR_TEST_POSTGRES_URL is not set: PostgreSQL storage tests skipped "
    "(set it, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test, to run them)"
)


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not POSTGRES_URL:
        raise pytest.UsageError("CI=true but CONDUCTOR_TEST_POSTGRES_URL is not set")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an in-process server on free ports with its own SQLite file."""
    return load_settings(
        grpc_port=0,
        http_port=0,
        var_dir=tmp_path / "var",
        shutdown_grace=2.0,
    )


def _libpq_url(sqlalchemy_url: str) -> str:
    url = make_url(sqlalchemy_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A SQLAlchemy URL whose connections land in a fresh, private schema."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_url(POSTGRES_URL), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq_url(POSTGRES_URL), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An empty database on each backend; disposed afterwards."""
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.dispose()
