"""The narrow interfaces services meet through, instead of each other's internals.

A service that needs one finds it on the runtime (`servers.runtime.Runtime`); the
service that provides it implements it on one of its components. Which service
that is, the composition root alone knows: Billing meters usage, Edge caches
reads and drops them when resources change, Access announces revocations and
delivers notifications to the platform's webhooks.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from google.protobuf.descriptor import MethodDescriptor

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@runtime_checkable
class UsageMeter(Protocol):
    """Where services count billable work (Billing provides it)."""

    def count(self, tenant: uuid.UUID, meter: str, quantity: int = 1) -> None:
        """Add `quantity` of `meter` to the tenant's usage (recorded shortly after).

        `meter` must be one the provider prices (Billing: its price book,
        `servers/billing/price_book.json`); any other is refused at once.

        Raises:
            ValueError: The provider does not price `meter`.
        """
        ...

    async def admit(self, tenant: uuid.UUID) -> None:
        """Refuse new work once the tenant's spend cap is reached.

        Raises:
            core.errors.ResourceExhausted: The cap is reached.
        """
        ...


@runtime_checkable
class CacheInvalidation(Protocol):
    """Tells cached reads that resources changed outside an RPC (the edge cache provides it)."""

    async def changed(self, tenant: uuid.UUID, resource_types: Sequence[str]) -> None:
        """Drop the tenant's cached reads that touch any of `resource_types`."""
        ...


class CallerScope(NamedTuple):
    """Who a cached answer may be shared with: a verified caller, as the cache keys it."""

    tenant: str
    subject: str
    scopes: tuple[str, ...]
    jit: bool
    token_id: str


class CachedAnswer(NamedTuple):
    """An answer served through the read cache, and how ("hit", "miss", "stale", ...)."""

    body: bytes
    kind: str


#: Computes an answer afresh: its body, and whether it may be stored.
Origin = Callable[[], Awaitable[tuple[bytes, bool]]]


@runtime_checkable
class ReadCache(Protocol):
    """Caches answers of persisted reads (the edge cache provides it to the GraphQL facade)."""

    async def answer(
        self,
        caller: CallerScope,
        operation: str,
        reads: Sequence[MethodDescriptor],
        variables: Mapping[str, Any],
        origin: Origin,
    ) -> CachedAnswer | None:
        """The answer of `operation` (which calls the RPCs `reads`), cached or from `origin`.

        Returns:
            None when these reads are not cached (the caller asks the origin itself).
        """
        ...


class CostBudget(NamedTuple):
    """A cost budget as its provider (Billing) reads it: amounts in minor units of `currency`."""

    budget_id: str
    name: str
    monthly_amount: int
    #: What the current billing period has spent on the budget's meters.
    spent: int
    currency: str


@runtime_checkable
class CostBudgets(Protocol):
    """Cost budgets, read through Billing's contract as the calling user may read them.

    The composition root provides it (a client of the Billing RPCs); a service
    passes the `authorization` metadata of the call it serves, so nobody sees a
    budget their own token could not read.
    """

    async def budget(self, authorization: str, budget_id: str) -> CostBudget:
        """One budget.

        Raises:
            core.errors.NotFound: There is no such budget.
            core.errors.PermissionDenied: The caller may not read budgets.
            core.errors.Unavailable: Billing cannot be reached.
        """
        ...

    async def budgets(self, authorization: str) -> Mapping[str, CostBudget]:
        """Every budget of the caller's tenant, by id.

        Raises:
            As `budget`, but never NotFound.
        """
        ...


#: The recipient of notifications meant for the platform's operators (alerts, alarms).
OPERATORS = "operators"


@runtime_checkable
class Notifications(Protocol):
    """Where services push notifications to the platform's webhooks (Access provides it).

    The provider keeps an outbox in the platform's database, which every service
    shares: a notification is written in the caller's own transaction, so it
    exists exactly when what it reports does, and is delivered afterwards (at
    least once, retried with backoff) by a background job.
    """

    def notify(
        self,
        session: AsyncSession,
        event: str,
        tenant: uuid.UUID,
        payload: Mapping[str, Any],
        *,
        recipient: str,
        at: datetime,
    ) -> None:
        """Put a notification of `event` about `tenant` into `session`'s transaction.

        It is written when the caller's transaction commits and not otherwise;
        with no webhook configured nothing is written. Each webhook receives
        `payload` (JSON-safe) beside `id`, `recipient`, `kind` (the event) and
        `tenant_id`, from `at` on.

        Args:
            session: The caller's session, confined to `tenant`.
            event: What happened, e.g. "billing_alert" (at most 32 characters).
            tenant: Whom it concerns.
            payload: The event's facts; never secrets, tokens or cached bodies.
            recipient: Whom it is for: a subject, or a group such as `OPERATORS`.
            at: When it happened (aware UTC); it is delivered from then on.

        Raises:
            ValueError: `event` is too long, or `payload` names a key of the envelope.
        """
        ...
