"""Just-in-time access: request scopes, wait for approval, claim the grant, use its token.

    with Client(target, INSECURE, token=bearer_token(my_token)) as client:
        grant = request_jit(client, ["catalog.read"], lasting=timedelta(hours=1), reason="INC-42")
    with Client(target, INSECURE, token=grant.token_source()) as jit:
        jit.catalog.list_entities()

The JIT token carries exactly the granted scopes and expires with the grant;
once it has, `token_source()` refuses to give it (`JitExpiredError`) rather
than send a token the platform would refuse. Approval comes from someone
else: an approver holding `admin.write`, through ApproveAccess.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk.access import (
    ACCESS_REQUEST_STATUS_APPROVED,
    ACCESS_REQUEST_STATUS_PENDING,
    AccessRequest,
    Grant,
)
from intelgraph.sdk.services import (
    AccessClient,
    AsyncAccessClient,
    AsyncServiceClients,
    ServiceClients,
)
from intelgraph.sdk.transport import TokenSource

#: Seconds between two looks at a pending request.
DEFAULT_POLL_S = 1.0
#: Seconds to wait for a decision before giving up.
DEFAULT_WAIT_S = 300.0


class JitError(Exception):
    """A JIT request did not end with a usable token."""


class JitRefusedError(JitError):
    """The request was denied, or expired before anyone decided.

    Attributes:
        request: The access request as it ended, with its reviews.
    """

    def __init__(self, request: AccessRequest) -> None:
        status = AccessRequest.DESCRIPTOR.fields_by_name["status"].enum_type
        super().__init__(
            f"access request {request.id} ended {status.values_by_number[request.status].name}"
        )
        self.request = request


class JitTimeoutError(JitError):
    """No decision came within the wait; the request stays pending on the platform."""

    def __init__(self, request: AccessRequest, waited_s: float) -> None:
        super().__init__(f"access request {request.id} still pending after {waited_s:.0f} s")
        self.request = request


class JitExpiredError(JitError):
    """The grant's end has passed: request access again."""


@dataclass(frozen=True)
class JitGrant:
    """A claimed grant and its JIT token.

    Attributes:
        grant: The grant: its scopes, start and end.
        token: The JIT token; its `exp` is the grant's end.
        clock: Gives the current time (UTC); the system clock unless a test sets one.
    """

    grant: Grant
    token: str = field(repr=False)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)

    @property
    def ends_at(self) -> datetime:
        """When the grant, and its token, end."""
        return self.grant.ends_at.ToDatetime(UTC)

    def remaining(self) -> timedelta:
        """How long the token stays valid (negative once it has expired)."""
        return self.ends_at - self.clock()

    def token_source(self) -> TokenSource:
        """Gives the JIT token until the grant ends; afterwards raises `JitExpiredError`."""

        def token() -> str:
            if self.remaining() <= timedelta(0):
                raise JitExpiredError(f"grant {self.grant.id} ended at {self.ends_at.isoformat()}")
            return self.token

        return token


def _until(lasting: timedelta, clock: Callable[[], datetime]) -> Timestamp:
    if lasting <= timedelta(0):
        raise ValueError(f"lasting must be positive, not {lasting}")
    stamp = Timestamp()
    stamp.FromDatetime(clock() + lasting)
    return stamp


def _decided(request: AccessRequest) -> bool:
    if request.status == ACCESS_REQUEST_STATUS_APPROVED:
        return True
    if request.status != ACCESS_REQUEST_STATUS_PENDING:
        raise JitRefusedError(request)
    return False


def request_jit(
    client: ServiceClients | AccessClient,
    scopes: Sequence[str],
    *,
    lasting: timedelta,
    reason: str = "",
    poll_s: float = DEFAULT_POLL_S,
    wait_s: float = DEFAULT_WAIT_S,
    on_pending: Callable[[AccessRequest], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> JitGrant:
    """Request `scopes` for `lasting`, wait until an approver decides, and claim the grant.

    Args:
        client: A `Client` (or its `access` sub-client) with the requester's token.
        scopes: What to request, e.g. ["catalog.read"]; the policy says what is requestable.
        lasting: How long the grant should last; the policy may cut it.
        reason: The justification, which some scopes require.
        poll_s: Seconds between looks at the pending request.
        wait_s: Seconds to wait for the decision.
        on_pending: Called once with the new request while it awaits a decision: tell
            an approver its id.
        clock: The current time (UTC).

    Raises:
        JitRefusedError: The request was denied or expired.
        JitTimeoutError: Nobody decided within `wait_s`.
        ConductorError: The platform refused a call (e.g. a scope not requestable).
    """
    access = client if isinstance(client, AccessClient) else client.access
    request = access.request_access(
        scope=scopes, expires_at=_until(lasting, clock), reason=reason
    ).access_request
    if on_pending is not None and request.status == ACCESS_REQUEST_STATUS_PENDING:
        on_pending(request)
    started = time.monotonic()
    while not _decided(request):
        if time.monotonic() - started >= wait_s:
            raise JitTimeoutError(request, wait_s)
        time.sleep(poll_s)
        request = access.get_access_request(id=request.id).access_request
    claimed = access.claim_grant(grant_id=request.grant_id)
    return JitGrant(claimed.grant, claimed.token, clock)


async def request_jit_async(
    client: AsyncServiceClients | AsyncAccessClient,
    scopes: Sequence[str],
    *,
    lasting: timedelta,
    reason: str = "",
    poll_s: float = DEFAULT_POLL_S,
    wait_s: float = DEFAULT_WAIT_S,
    on_pending: Callable[[AccessRequest], Awaitable[None] | None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> JitGrant:
    """`request_jit` for an `AsyncClient` (`on_pending` may be a coroutine function)."""
    access = client if isinstance(client, AsyncAccessClient) else client.access
    answered = await access.request_access(
        scope=scopes, expires_at=_until(lasting, clock), reason=reason
    )
    request = answered.access_request
    if on_pending is not None and request.status == ACCESS_REQUEST_STATUS_PENDING:
        notified = on_pending(request)
        if inspect.isawaitable(notified):
            await notified
    started = time.monotonic()
    while not _decided(request):
        if time.monotonic() - started >= wait_s:
            raise JitTimeoutError(request, wait_s)
        await asyncio.sleep(poll_s)
        request = (await access.get_access_request(id=request.id)).access_request
    claimed = await access.claim_grant(grant_id=request.grant_id)
    return JitGrant(claimed.grant, claimed.token, clock)
