"""Leases on named jobs, so that of N replicas exactly one runs a background job.

A lease is one row per job name with its holder and expiry. Taking it is one
atomic upsert that succeeds only if the row is free, expired, or already
ours, so two replicas can never both hold it, on SQLite or PostgreSQL, without
any lock held in Python. A holder renews by taking it again before expiry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, delete, or_
from sqlalchemy.orm import Mapped, mapped_column

from servers.db.base import Base
from servers.db.database import Database
from servers.db.dialects import insert


class JobLease(Base):
    """Who runs a named background job, until when."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


async def acquire_lease(
    database: Database, name: str, holder: str, ttl: timedelta, now: datetime
) -> bool:
    """Take or renew the lease on job `name` for `holder` until `now + ttl`.

    Returns:
        True when `holder` now holds the lease; False when another holder's
        lease is still live.
    """
    values = {"name": name, "holder": holder, "acquired_at": now, "expires_at": now + ttl}
    async with database.platform_session() as session:
        statement = (
            insert(session, JobLease)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[JobLease.name],
                set_={"holder": holder, "acquired_at": now, "expires_at": now + ttl},
                where=or_(JobLease.expires_at <= now, JobLease.holder == holder),
            )
            .returning(JobLease.holder)
        )
        taken = (await session.execute(statement)).scalar_one_or_none()
    return taken == holder


async def release_lease(database: Database, name: str, holder: str) -> None:
    """Give up the lease on `name` if `holder` holds it; otherwise do nothing."""
    async with database.platform_session() as session:
        await session.execute(
            delete(JobLease).where(JobLease.name == name, JobLease.holder == holder)
        )
