"""`conductor serve` and `conductor migrate`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from servers.cli.settings_options import LOGGING, STORE, settings_from, settings_options
from servers.cli.store import with_database
from servers.config import Settings
from servers.logs import configure_logging

logger = logging.getLogger("conductor")


@click.command()
@settings_options()
def serve(**flags: Any) -> int:
    """Serve the platform (gRPC and HTTP) until SIGTERM or Ctrl-C, then drain."""
    settings = settings_from(flags)
    configure_logging(settings.log_level, settings.log_format)
    return _serve(settings)


def _serve(settings: Settings) -> int:
    if settings.workers == 1 and "analytics" in settings.services:
        # Started first: they load their algorithms while this process loads the platform.
        from servers.analytics import prestart  # noqa: PLC0415

        prestart(settings.analytics_workers, settings.analytics_projection_cache_bytes)
    from servers.app import StartupError  # noqa: PLC0415 - keep the other commands light
    from servers.app import serve as run  # noqa: PLC0415
    from servers.db.migrate import SchemaOutOfDate  # noqa: PLC0415

    if settings.workers > 1:
        from servers.workers import run_workers  # noqa: PLC0415

        return run_workers(settings)
    try:
        asyncio.run(run(settings))
    except (StartupError, SchemaOutOfDate) as error:
        logger.error("conductor cannot start: %s", error)  # noqa: TRY400 - no traceback wanted
        return 1
    return 0


@click.command()
@click.option("--to", "revision", default="head", show_default=True, help="Target revision.")
@click.option("--check", is_flag=True, help="Only report; exit 1 if the schema is not at head.")
@settings_options(*STORE, *LOGGING)
def migrate(revision: str, *, check: bool, **flags: Any) -> int:
    """Bring the database schema to a revision (head by default)."""
    settings = settings_from(flags)
    configure_logging(settings.log_level, settings.log_format)
    if check and settings.is_sqlite:
        path = make_url(settings.database_url).database or ""
        if not Path(path).exists():  # only report: never create the file
            from servers.db.migrate import head_revision  # noqa: PLC0415

            click.echo(f"schema at nothing (no database at {path}), head is {head_revision()}")
            return 1
    return with_database(settings, _migrate(settings, revision, check=check))


async def _migrate(settings: Settings, revision: str, *, check: bool) -> int:
    from servers.db import Database  # noqa: PLC0415
    from servers.db.migrate import current_revision, head_revision, upgrade  # noqa: PLC0415

    database = Database(settings.database_url)
    try:
        if check:
            current, head = await current_revision(database.engine), head_revision()
            click.echo(f"schema at {current or 'nothing'}, head is {head}")
            return 0 if current == head else 1
        try:
            await upgrade(database.engine, revision)
        except CommandError as error:  # an unknown revision, one ahead of this code's
            raise click.BadParameter(str(error), param_hint="'--to'") from None
        click.echo(f"schema at {await current_revision(database.engine)}")
        return 0
    finally:
        await database.dispose()
