"""Access requests, approvals, time-boxed JIT grants, revocation and the audit chain.

Public surface: the service definition, and the audit chain's offline export.
"""

from servers.access.audit import export_audit
from servers.access.service import SERVICE

__all__ = ["SERVICE", "export_audit"]
