"""Access requests, approvals, time-boxed JIT grants, revocation and the audit chain."""

from servers.access.service import SERVICE, AccessService

__all__ = ["SERVICE", "AccessService"]
