"""The catalog's reliability inputs as they stand, and an entity's composite availability.

An entity's own availability is, in order of preference: its first SLO's
share of good events over that SLO's window, when events were recorded
(observed); its declared expected availability; its first SLO's objective; or
1 (assumed, nothing known). The composite multiplies in what its dependencies
deliver (`servers.catalog.composite`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.errors import NotFound, quoted
from core.interfaces import CostBudget
from interceptors.tokens import Principal
from servers.catalog import store
from servers.catalog.composite import compose
from servers.catalog.costs import Costs
from servers.catalog.entities import spec_of
from servers.catalog.objectives import window_minutes
from servers.catalog.reliability import (
    ASSUMED,
    DECLARED,
    OBJECTIVE,
    OBSERVED,
    Inputs,
    WeakestLink,
    closure,
    nodes_of,
)
from servers.catalog.store import EntityRow
from servers.runtime import Runtime


@dataclass(frozen=True)
class EntityAvailability:
    """An entity's own and composite availability, and the weakest links below it."""

    entity: str
    own: float
    source: str
    composite: float
    #: The improvements that would raise the composite most, largest gain first.
    weakest_links: tuple[WeakestLink, ...]


@dataclass(frozen=True)
class Edge:
    """`source` depends on `target` through a dependency requiring k of n targets."""

    source: str
    target: str
    required: int
    of: int
    group: str


@dataclass(frozen=True)
class AvailabilityReport:
    """An entity's availability, that of everything it depends on, and the edges between."""

    entity: EntityAvailability
    dependencies: tuple[EntityAvailability, ...]
    edges: tuple[Edge, ...]


def _inputs(
    row: EntityRow, observed: tuple[int, int] | None, costs: Mapping[str, CostBudget]
) -> Inputs:
    spec = spec_of(row)
    slo = spec.slo()
    cost = costs.get(row.budget_id) if row.budget_id else None
    if observed is not None and observed[1] > 0:
        own, source = observed[0] / observed[1], OBSERVED
    elif spec.expected_availability is not None:
        own, source = spec.expected_availability, DECLARED
    elif slo is not None:
        own, source = slo.objective, OBJECTIVE
    else:
        own, source = 1.0, ASSUMED
    return Inputs(
        own=own,
        source=source,
        objective=slo.objective if slo is not None else 0.0,
        window_seconds=slo.window.seconds() if slo is not None else 30 * 86_400,
        requests_per_second=spec.requests_per_second,
        dependencies=spec.dependencies,
        monthly_cost=cost.monthly_amount if cost is not None else None,
        currency=cost.currency if cost is not None else "",
    )


class Reliability:
    """Reliability inputs and availability reports, for every tenant."""

    def __init__(self, runtime: Runtime, costs: Costs) -> None:
        self._db = runtime.database
        self._clock = runtime.clock
        self._costs = costs

    async def inputs(self, principal: Principal, authorization: str = "") -> dict[str, Inputs]:
        """Every entity's reliability inputs now, by name.

        Monthly costs of linked budgets are read from Billing with `authorization`
        (the caller's), and left out when there is none or it may not read them.
        """
        now = self._clock()
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            rows = await store.entities(session)
            ranges: dict[tuple[int, int], list[tuple[uuid.UUID, str]]] = defaultdict(list)
            for row in rows:
                if row.slos:
                    slo = spec_of(row).slos[0]
                    since, until, _ = window_minutes(slo.window, now)
                    ranges[since, until].append((row.id, slo.name))
            observed: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
            for (since, until), keys in ranges.items():
                observed |= await store.window_sums(session, keys, since, until)
        costs = await self._costs.all(authorization) if any(r.budget_id for r in rows) else {}
        return await asyncio.to_thread(  # a thousand entities take a while to read
            lambda: {
                row.name: _inputs(
                    row, observed.get((row.id, row.slos[0]["name"])) if row.slos else None, costs
                )
                for row in rows
            }
        )

    async def availability(self, principal: Principal, entity: str) -> AvailabilityReport:
        """The entity's availability and that of everything it depends on.

        Raises:
            NotFound: No such entity.
        """
        inputs = await self.inputs(principal)
        if entity not in inputs:
            raise NotFound(f"no entity is called {quoted(entity)}", metadata={"name": entity})
        return await asyncio.to_thread(_report, inputs, entity)


def _report(inputs: Mapping[str, Inputs], entity: str) -> AvailabilityReport:
    """The availability report of `entity` (CPU work, run off the event loop)."""
    below = closure(inputs, [entity])
    scoped = {name: inputs[name] for name in below}
    composition = compose(nodes_of(scoped))

    def report(name: str) -> EntityAvailability:
        links = composition.weakest_links(name)
        return EntityAvailability(
            entity=name,
            own=scoped[name].own,
            source=scoped[name].source,
            composite=composition.composites[name],
            weakest_links=tuple(WeakestLink(link.target, link.gain, link.group) for link in links),
        )

    edges: Sequence[Edge] = [
        Edge(name, target, d.required, len(d.targets), d.group)
        for name in sorted(below)
        for d in scoped[name].dependencies
        for target in d.targets
    ]
    return AvailabilityReport(
        entity=report(entity),
        dependencies=tuple(report(name) for name in sorted(below - {entity})),
        edges=tuple(edges),
    )
