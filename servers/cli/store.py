"""What commands share: how work fails (one line, exit 1), and the store when it cannot be used."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import click

from servers.config import Settings


class Failed(click.ClickException):
    """The command's work failed (exit 1): said in one line after the command's name."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        context = click.get_current_context(silent=True)
        self.command_path = context.command_path if context is not None else "conductor"


def with_database(settings: Settings, command: Coroutine[Any, Any, int]) -> int:
    """Run a command that uses the database; a database failure is one line, exit 1."""
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 - keep the CLI's start light

    from servers.db.database import describe, displayed  # noqa: PLC0415

    try:
        return asyncio.run(command)
    except (DBAPIError, OSError) as error:
        where = displayed(settings.database_url)
        raise Failed(
            f"cannot use the database {where} (CONDUCTOR_DATABASE_URL / --database-url): "
            f"{describe(error)}"
        ) from None
