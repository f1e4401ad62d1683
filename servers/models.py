"""Every model the migrations manage, collected on one metadata.

Each service's store defines its models on `servers.db.Base`; importing the
registry imports every service, and with it every store, so Alembic's
autogenerate (and the schema test) see them all.
"""

from servers.db import leases, switches
from servers.db.base import Base
from servers.registry import all_services

metadata = Base.metadata

__all__ = ["all_services", "leases", "metadata", "switches"]
