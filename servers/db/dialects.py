"""Statements whose SQL differs between SQLite and PostgreSQL, written once for both."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert(session: AsyncSession, model: type) -> Any:
    """An INSERT of `model` in the session's dialect, so ON CONFLICT clauses can follow.

    Both dialects' `insert` offer `on_conflict_do_nothing` and
    `on_conflict_do_update` with the same arguments.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)
