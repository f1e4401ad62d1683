"""Column types shared by every store: UTC timestamps and UUID keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect, Uuid
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    Naive datetimes are refused on the way in (their zone is unknowable);
    aware ones are converted to UTC. SQLite, which keeps no zone, stores the
    UTC wall time; PostgreSQL stores `timestamptz`. Values read back are
    aware UTC on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive values; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def new_id() -> uuid.UUID:
    """A new random primary key."""
    return uuid.uuid4()


#: Native `uuid` on PostgreSQL, 32-character hex on SQLite.
UUID = Uuid(as_uuid=True)


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


__all__ = ["UUID", "UtcDateTime", "new_id", "utc_now"]
