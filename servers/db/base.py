"""The declarative base every store's models derive from, and the tenant mixin."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servers.db.types import UUID, UtcDateTime

#: Deterministic constraint names, so Alembic migrations are reproducible on
#: every backend (and batch mode on SQLite can address constraints by name).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of all models: UTC timestamps and UUIDs by annotation."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), uuid.UUID: UUID}  # noqa: RUF012 - SQLAlchemy API


class TenantScoped:
    """Mixin for rows that belong to one tenant.

    Sessions opened for a tenant (`Database.tenant_session`) see only that
    tenant's rows of such models and write only rows of that tenant; any query
    on them outside a tenant session fails. See `servers.db.tenancy`.
    """

    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
