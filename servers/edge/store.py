"""Edge cache records: per-tenant byte caps (operators') and leak alarms (each tenant's)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from servers.db import Base, TenantScoped, new_id


class TenantCacheCapRow(Base):
    """A tenant's cache byte cap, where it is not the default.

    A platform table (operators set caps), so the column is `tenant`, not `tenant_id`.
    """

    __tablename__ = "edge_tenant_caps"

    tenant: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cap_bytes: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class GenerationRow(Base):
    """An invalidation counter shared by the processes of one store (when there is no Redis).

    A platform table: the name carries the tenant ("t:<tenant>", "x:<tenant>:<tag>", "p").
    """

    __tablename__ = "edge_generations"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class LeakAlarmRow(TenantScoped, Base):
    """A refused suspicious cache hit, kept for the tenant whose request it was."""

    __tablename__ = "edge_leak_alarms"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    operation_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(200))
    cache_key_hash: Mapped[str] = mapped_column(String(64))
