"""What services and changes cost: links to Billing's cost budgets, read through its contract.

The catalog keeps only which budget an entity (its running cost) or a saved
scenario (the cost of the change it describes) is linked to. The figures — the
monthly amount and what the period has spent — are read from Billing when they
are shown, through `core.interfaces.CostBudgets` with the token of the call
being served: a caller who may not read Billing's budgets sees reliability
figures without costs, never an error. Linking checks the budget exists, so it
needs billing.read too.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import FailedPrecondition, NotFound, PermissionDenied, Unavailable, quoted
from core.interfaces import CostBudget
from interceptors.tokens import Principal
from servers.catalog import store
from servers.catalog.entities import new_etag
from servers.catalog.store import EntityRow, ScenarioRow
from servers.runtime import Runtime


class Costs:
    """Budget links and the budgets' figures, for every tenant."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._db = runtime.database
        self._clock = runtime.clock

    async def all(self, authorization: str) -> Mapping[str, CostBudget]:
        """Every budget the caller may read, by id ({} when Billing cannot be read)."""
        budgets = self._runtime.cost_budgets
        if budgets is None or not authorization:
            return {}
        try:
            return await budgets.budgets(authorization)
        except (PermissionDenied, Unavailable):
            return {}

    async def one(self, authorization: str, budget_id: str) -> CostBudget | None:
        """The budget `budget_id` if linked and readable by the caller."""
        budgets = self._runtime.cost_budgets
        if not budget_id or budgets is None or not authorization:
            return None
        try:
            return await budgets.budget(authorization, budget_id)
        except (NotFound, PermissionDenied, Unavailable):
            return None

    async def _checked(self, authorization: str, budget_id: str) -> CostBudget | None:
        if not budget_id:
            return None
        budgets = self._runtime.cost_budgets
        if budgets is None:
            raise FailedPrecondition("cost budgets cannot be read on this platform")
        return await budgets.budget(authorization, budget_id)

    async def link_entity(
        self, principal: Principal, authorization: str, entity: str, budget_id: str
    ) -> tuple[EntityRow, CostBudget | None]:
        """Link the entity to the budget (or unlink it with ""); its etag changes.

        Raises:
            NotFound: No such entity, or Billing has no such budget.
            PermissionDenied: The caller may not read Billing's budgets.
            Unavailable: Billing cannot be reached.
        """
        cost = await self._checked(authorization, budget_id)
        now = self._clock()
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.entity(session, entity)
            if row is None:
                raise NotFound(f"no entity is called {quoted(entity)}", metadata={"name": entity})
            row.budget_id = budget_id
            row.budget_linked_at = now if budget_id else None
            row.etag = new_etag()
            row.updated_at = now
        return row, cost

    async def link_scenario(
        self, principal: Principal, authorization: str, scenario_id: str, budget_id: str
    ) -> tuple[ScenarioRow, CostBudget | None]:
        """Link a saved scenario to the budget of the change it describes (or unlink it).

        Raises:
            As `link_entity`; NotFound also for no such scenario.
        """
        cost = await self._checked(authorization, budget_id)
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.scenario(session, scenario_id)
            if row is None:
                raise NotFound(
                    f"no scenario has the id {quoted(scenario_id)}", metadata={"id": scenario_id}
                )
            row.budget_id = budget_id
            row.budget_linked_at = self._clock() if budget_id else None
        return row, cost
