"""What the workflow's steps share: the runtime's parts, the approver check, loaders, the outbox.

The workflow runs request → review (approve/deny) → grant → claim → revoke or
expire. Every step (`requests`, `reviews`, `grants`, `audit`) is one
transaction that writes the state change, its audit events and its
notifications together, so a crash leaves either all of them or none: no grant
without its audit record; and a JIT token is only ever produced from an
existing grant (it is minted deterministically from the grant, with `exp`
equal to the grant's end, when the grantee claims it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.errors import InvalidArgument, NotFound
from interceptors.policy import MethodFacts
from interceptors.tokens import Principal
from servers.access import store
from servers.access.component import AccessComponent
from servers.access.store import AccessRequestRow, GrantRow
from servers.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

#: What approvers are checked against: holding admin.write (and the scope's approver set).
APPROVER = MethodFacts("intelgraph.access.v1.AccessService", "Review", "admin.write")


@dataclass(frozen=True)
class Listed:
    """One page of rows and the token of the next."""

    rows: Sequence[Any]
    next_page_token: str


class Step:
    """A group of workflow steps over every tenant: the runtime's parts they use."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._db = runtime.database
        self._engine = runtime.engine
        access = runtime.component(AccessComponent)
        if access is None:
            raise RuntimeError("the access workflow needs its component (revocations, outbox)")
        self._revocations = access.feed
        self._outbox = access.outbox

    def _now(self) -> datetime:
        return self._runtime.clock()

    async def is_approver(self, principal: Principal) -> bool:
        """Whether the caller holds admin.write (needed to review and to see every request)."""
        decision = await self._engine.decision(principal.facts, APPROVER, {}, int(time.time()))
        return decision.allow

    def _notify(
        self,
        session: AsyncSession,
        kind: str,
        recipient: str,
        request: AccessRequestRow,
        deliver_at: datetime,
        *,
        grant: GrantRow | None = None,
    ) -> None:
        """Put a notification in the outbox, once per configured webhook."""
        payload: dict[str, Any] = {
            "access_request_id": str(request.id),
            "requester": request.requester,
            "scope": list(request.scope),
            "status": request.status,
        }
        if grant is not None:
            payload |= {"grant_id": str(grant.id), "grant_ends_at": grant.ends_at.isoformat()}
        self._outbox.notify(
            session, kind, request.tenant_id, payload, recipient=recipient, at=deliver_at
        )


def parse_id(value: str, field: str) -> uuid.UUID:
    """`value` as a UUID.

    Raises:
        InvalidArgument: It is not one.
    """
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} is not a UUID", field=field) from None


def request_not_found(request_id: str) -> NotFound:
    """The answer about a request the caller may not see, or that does not exist."""
    return NotFound(f"access request {request_id} not found")


def grant_not_found(grant_id: str) -> NotFound:
    """The answer about a grant the caller may not see, or that does not exist."""
    return NotFound(f"grant {grant_id} not found")


async def locked_request(session: AsyncSession, request_id: str) -> AccessRequestRow:
    """The request, locked for the step's transaction.

    Raises:
        InvalidArgument: `request_id` is not a UUID.
        NotFound: There is no such request.
    """
    row = await store.request_for_update(session, parse_id(request_id, "id"))
    if row is None:
        raise request_not_found(request_id)
    return row


async def locked_grant(session: AsyncSession, grant_id: str) -> GrantRow:
    """The grant, locked for the step's transaction.

    Raises:
        InvalidArgument: `grant_id` is not a UUID.
        NotFound: There is no such grant.
    """
    row = await store.grant_for_update(session, parse_id(grant_id, "grant_id"))
    if row is None:
        raise grant_not_found(grant_id)
    return row
