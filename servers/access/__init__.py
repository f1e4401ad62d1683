"""Access requests, approvals, time-boxed JIT grants, revocation and the audit chain."""
