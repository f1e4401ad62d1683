"""Every model the migrations manage, collected on one metadata.

Each store module defines its models on `servers.db.Base`; importing it here
makes Alembic's autogenerate see them.
"""

from servers.access import store as access_store
from servers.analytics import store as analytics_store
from servers.billing import store as billing_store
from servers.db import leases
from servers.db.base import Base
from servers.edge import store as edge_store

metadata = Base.metadata

__all__ = ["access_store", "analytics_store", "billing_store", "edge_store", "leases", "metadata"]
