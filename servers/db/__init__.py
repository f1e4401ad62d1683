"""Storage: SQLAlchemy 2 async on SQLite or PostgreSQL, tenant-confined sessions, migrations."""

from servers.db.base import Base, TenantScoped
from servers.db.database import Database, create_engine
from servers.db.dialects import insert
from servers.db.paging import after_position
from servers.db.tenancy import ALL_TENANTS, TenantScopeError, copy_rows
from servers.db.types import UUID, UtcDateTime, new_id, utc_now

__all__ = [
    "ALL_TENANTS",
    "UUID",
    "Base",
    "Database",
    "TenantScopeError",
    "TenantScoped",
    "UtcDateTime",
    "after_position",
    "copy_rows",
    "create_engine",
    "insert",
    "new_id",
    "utc_now",
]
