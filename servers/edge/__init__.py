"""Cache operations for persisted GraphQL reads: invalidation, purges, caps, leak alarms."""

from servers.edge.service import SERVICE

__all__ = ["SERVICE"]
