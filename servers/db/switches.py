"""Backout switches as the store keeps them: each switch's value, and every change to it.

Platform-wide rows (not a tenant's): `platform_switches` holds the current value of each
switch set at least once, `platform_switch_changes` every change with who made it, when
and why. The newest change's id is the switches' version: replicas poll it to notice a
change within a second (`servers.switches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from servers.db.base import Base
from servers.db.dialects import insert


class SwitchRow(Base):
    """A switch's current value."""

    __tablename__ = "platform_switches"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(1000))


class SwitchChangeRow(Base):
    """One change of a switch: the audit trail."""

    __tablename__ = "platform_switch_changes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    name: Mapped[str] = mapped_column(String(64), index=True)
    old_value: Mapped[str] = mapped_column(String(256))
    new_value: Mapped[str] = mapped_column(String(256))
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(1000))


async def version(session: AsyncSession) -> int:
    """The id of the newest change (0 before any)."""
    newest = await session.scalar(select(func.max(SwitchChangeRow.id)))
    return int(newest or 0)


async def current(session: AsyncSession) -> Sequence[SwitchRow]:
    """Every switch set at least once."""
    return (await session.execute(select(SwitchRow).order_by(SwitchRow.name))).scalars().all()


async def set_value(
    session: AsyncSession,
    name: str,
    value: str,
    *,
    default: str,
    changed_by: str,
    reason: str,
    at: datetime,
) -> str:
    """Set `name` to `value` in the caller's transaction; returns the value it replaced."""
    row = await session.get(SwitchRow, name, with_for_update=True)
    old = row.value if row is not None else default
    values = {
        "name": name,
        "value": value,
        "changed_at": at,
        "changed_by": changed_by,
        "reason": reason,
    }
    statement = insert(session, SwitchRow).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[SwitchRow.name],
            set_={key: item for key, item in values.items() if key != "name"},
        )
    )
    session.add(
        SwitchChangeRow(
            name=name,
            old_value=old,
            new_value=value,
            changed_at=at,
            changed_by=changed_by,
            reason=reason,
        )
    )
    return old


async def changes(
    session: AsyncSession, name: str | None = None, *, before: int | None = None, limit: int = 1000
) -> Sequence[SwitchChangeRow]:
    """The changes, newest first (of one switch, when named; older than `before`, when given)."""
    query = select(SwitchChangeRow).order_by(SwitchChangeRow.id.desc()).limit(limit)
    if name:
        query = query.where(SwitchChangeRow.name == name)
    if before is not None:
        query = query.where(SwitchChangeRow.id < before)
    return (await session.execute(query)).scalars().all()
