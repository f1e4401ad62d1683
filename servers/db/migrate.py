"""Schema migrations with Alembic, run on the platform's own async engine.

`conductor migrate` and the start-up of `conductor serve` both come here. The
migration environment (`migrations/env.py`) runs on a connection handed to
it, so one code path serves SQLite and PostgreSQL, the CLI and the server.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaOutOfDate(RuntimeError):
    """The database schema is not at the revision this code expects."""


def alembic_config() -> Config:
    """Alembic configuration pointing at the platform's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration revision this code ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the repository always ships migrations
        raise RuntimeError("no migrations found")
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the schema up to `revision`, in one transaction where the backend allows."""
    async with engine.begin() as connection:
        await connection.run_sync(_run, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Migrate the schema down to `revision` ("base" removes everything)."""
    async with engine.begin() as connection:
        await connection.run_sync(_run, "downgrade", revision)


def _run(connection: Connection, direction: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


def known_revisions() -> set[str]:
    """Every migration revision this code ships."""
    return {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def ensure_schema(engine: AsyncEngine, *, migrate: bool) -> None:
    """Make sure the schema is at head before serving.

    Args:
        engine: The platform's engine.
        migrate: Bring the schema to head if it is behind (the embedded
            default does); otherwise refuse to serve an out-of-date schema.

    Raises:
        SchemaOutOfDate: `migrate` is False and the schema is not at head.
    """
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if migrate:
        await upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"database schema is at {current or 'nothing (empty database)'}, this code needs {head}: "
        "run `conductor migrate`"
    )
