"""Cache operations for persisted GraphQL reads: invalidation, purges, caps, leak alarms."""

from servers.edge.service import SERVICE, EdgeService

__all__ = ["SERVICE", "EdgeService"]
