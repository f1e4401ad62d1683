"""The whole access workflow behind one name: request → review → grant → claim → revoke or expire.

A thin façade over the step modules (`requests`, `reviews`, `grants`, `audit`),
each of which owns its transactions; see `servers.access.steps`.
"""

from __future__ import annotations

from servers.access.audit import AuditLog
from servers.access.grants import Claimed, Grants
from servers.access.requests import Requests
from servers.access.reviews import Reviews
from servers.access.steps import APPROVER, Listed
from servers.runtime import Runtime

__all__ = ["APPROVER", "AccessWorkflow", "Claimed", "Listed"]


class AccessWorkflow:
    """The access requests and JIT grants of every tenant, one transaction per step."""

    def __init__(self, runtime: Runtime) -> None:
        self.requests = Requests(runtime)
        self.reviews = Reviews(runtime)
        self.grants = Grants(runtime)
        self.audit = AuditLog(runtime)
        self.is_approver = self.requests.is_approver
        self.request_access = self.requests.request_access
        self.get_request = self.requests.get_request
        self.list_requests = self.requests.list_requests
        self.approve = self.reviews.approve
        self.deny = self.reviews.deny
        self.claim = self.grants.claim
        self.revoke = self.grants.revoke
        self.list_grants = self.grants.list_grants
        self.expire_due = self.grants.expire_due
        self.observe_grants = self.grants.observe_grants
        self.audit_events = self.audit.audit_events
        self.verify_chain = self.audit.verify_chain
