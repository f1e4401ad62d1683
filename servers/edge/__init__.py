"""Cache operations for persisted GraphQL reads: invalidation, purges, caps, leak alarms."""
