"""Cost budgets read through Billing's contract: the `CostBudgets` the composition root provides.

The Catalog shows a service's monthly cost beside its error budget. It never
reads Billing's tables: this component calls the Billing RPCs (`GetBudget`,
`ListBudgets`) on the platform's own gRPC port through the SDK, as any client
would, carrying the token of the call being served. So a budget is shown
exactly when the caller could read it themselves, and Billing may be served by
another replica behind the same address.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence

import grpc
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    ConductorError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from intelgraph.sdk.billing import Budget
from intelgraph.sdk.pagination import PageRequest

from core.errors import NotFound, PermissionDenied, Unavailable
from core.interfaces import CostBudget, CostBudgets
from core.request_ids import REQUEST_ID_KEY, current_request_id
from servers.runtime import Component

_FORWARDED: contextvars.ContextVar[str] = contextvars.ContextVar("budget_token", default="")
_PAGE = 500


def _forwarded() -> str:
    return _FORWARDED.get()


def _budget(message: Budget) -> CostBudget:
    return CostBudget(
        budget_id=message.id,
        name=message.name,
        monthly_amount=message.monthly_amount.minor_units,
        spent=message.spent.minor_units,
        currency=message.monthly_amount.currency_code,
    )


def _translated(error: ConductorError, budget_id: str = "") -> Exception:
    if isinstance(error, NotFoundError):
        return NotFound(f"Billing has no budget {budget_id!r}", metadata={"budget_id": budget_id})
    if isinstance(error, (PermissionDeniedError, UnauthenticatedError)):
        return PermissionDenied(
            "reading cost budgets needs the billing.read scope", metadata={"scope": "billing.read"}
        )
    return Unavailable(f"Billing could not be read: {error.code.name}")


class BudgetsThroughBilling(Component, CostBudgets):
    """`CostBudgets` over the Billing RPCs of the platform's own gRPC port."""

    def __init__(
        self,
        target: Callable[[], str],
        *,
        interceptors: Callable[[], Sequence[grpc.aio.ClientInterceptor]] = tuple,
    ) -> None:
        self._target = target
        self._interceptors = interceptors
        self._client: AsyncClient | None = None

    def _billing(self) -> AsyncClient:
        if self._client is None:  # the port is known once the server has started
            self._client = AsyncClient(
                self._target(),
                INSECURE,
                token=_forwarded,
                metadata=lambda: [(REQUEST_ID_KEY, current_request_id())],
                interceptors=self._interceptors(),
            )
        return self._client

    async def budget(self, authorization: str, budget_id: str) -> CostBudget:
        """One budget, as the caller of `authorization` may read it."""
        reset = _FORWARDED.set(authorization.removeprefix("Bearer ").strip())
        try:
            answer = await self._billing().billing.get_budget(id=budget_id, timeout=5)
        except ConductorError as error:
            raise _translated(error, budget_id) from None
        finally:
            _FORWARDED.reset(reset)
        return _budget(answer.budget)

    async def budgets(self, authorization: str) -> Mapping[str, CostBudget]:
        """Every budget of the caller's tenant, by id."""
        reset = _FORWARDED.set(authorization.removeprefix("Bearer ").strip())
        found: dict[str, CostBudget] = {}
        try:
            token = ""
            while True:
                page = await self._billing().billing.list_budgets(
                    page=PageRequest(page_size=_PAGE, page_token=token), timeout=5
                )
                found.update((b.id, _budget(b)) for b in page.budgets)
                token = page.page.next_page_token
                if not token:
                    return found
        except ConductorError as error:
            raise _translated(error) from None
        finally:
            _FORWARDED.reset(reset)

    async def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
