"""What-if scenarios: evaluated against the catalog, saved under a content-addressed id, shared.

A scenario's results follow from its overrides and from the reliability
inputs of the entities it touches and depends on. Saving keeps both, and the
id is the SHA-256 of their canonical JSON (RFC 8785): the same scenario on the
same catalog figures gets the same id (saving twice changes nothing), and
reading a saved scenario recomputes its results from what was kept, so they
are identical to when it was saved, whatever the catalog did since (which the
scenario then says: `catalog_changed`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from core.errors import ErrorReason, FailedPrecondition, InvalidArgument, NotFound, quoted
from core.pagination import Page
from interceptors.tokens import Principal
from servers.catalog import store
from servers.catalog.availability import Reliability
from servers.catalog.composite import DependencyCycle
from servers.catalog.entities import cycle_refused
from servers.catalog.metrics import WHAT_IF
from servers.catalog.reliability import (
    Impact,
    Inputs,
    Override,
    OverrideRefused,
    impacts,
    relevant,
)
from servers.catalog.store import ScenarioRow
from servers.runtime import Runtime


@dataclass(frozen=True)
class SavedScenario:
    """A saved scenario, its results and whether the catalog moved on since."""

    row: ScenarioRow
    overrides: tuple[Override, ...]
    impacts: tuple[Impact, ...]
    catalog_changed: bool


def _evaluate(inputs: dict[str, Inputs], overrides: Sequence[Override]) -> list[Impact]:
    if not overrides:
        raise InvalidArgument(
            "scenario.overrides says what the scenario changes", field="scenario.overrides"
        )
    try:
        return impacts(inputs, overrides)
    except OverrideRefused as refused:
        refusal = refused.refusal
        field_path = f"scenario.overrides[{refusal.index}].{refusal.field_path}"
        if refusal.unknown_entity:
            raise FailedPrecondition(
                f"{field_path}: {refusal.problem}",
                reason=ErrorReason.ERROR_REASON_UNKNOWN_ENTITY,
                metadata={"entity": refusal.unknown_entity, "field": field_path},
            ) from None
        raise InvalidArgument(f"{field_path}: {refusal.problem}", field=field_path) from None
    except DependencyCycle as cycle:
        raise cycle_refused(cycle, "the scenario's dependencies form") from None


def scenario_id(overrides: Sequence[Override], inputs: dict[str, Inputs]) -> str:
    """The content address of a scenario evaluated on `inputs` (those it depends on)."""
    content: dict[str, Any] = {
        "overrides": [override.to_json() for override in overrides],
        "inputs": {name: inputs[name].to_json() for name in sorted(inputs)},
    }
    return hashlib.sha256(rfc8785.dumps(content)).hexdigest()


def _not_found(scenario: str) -> NotFound:
    return NotFound(f"no scenario has the id {quoted(scenario)}", metadata={"id": scenario})


class Scenarios:
    """What-if scenarios, for every tenant."""

    def __init__(self, runtime: Runtime, reliability: Reliability) -> None:
        self._db = runtime.database
        self._clock = runtime.clock
        self._reliability = reliability

    async def run(
        self, principal: Principal, overrides: Sequence[Override], authorization: str = ""
    ) -> list[Impact]:
        """Every entity the scenario can change, before and after (nothing saved).

        Raises:
            InvalidArgument: An override is out of range or removes a target that
                is not a dependency.
            FailedPrecondition: An override names an unknown entity
                (UNKNOWN_ENTITY), or the scenario makes a cycle (DEPENDENCY_CYCLE).
        """
        inputs = await self._reliability.inputs(principal, authorization)
        results = await asyncio.to_thread(_evaluate, inputs, overrides)
        WHAT_IF.labels("run").inc()
        return results

    async def save(
        self,
        principal: Principal,
        name: str,
        overrides: Sequence[Override],
        authorization: str = "",
    ) -> tuple[SavedScenario, bool]:
        """Save the scenario with the inputs it is evaluated on; True if it was not saved before.

        Raises:
            As `run`.
        """
        inputs = await self._reliability.inputs(principal, authorization)
        results = await asyncio.to_thread(_evaluate, inputs, overrides)
        kept = {entity: inputs[entity] for entity in relevant(inputs, overrides)}
        identifier = scenario_id(overrides, kept)
        row = ScenarioRow(
            tenant_id=principal.tenant,
            id=identifier,
            name=name,
            overrides=[override.to_json() for override in overrides],
            snapshot={entity: figures.to_json() for entity, figures in sorted(kept.items())},
            created_by=principal.subject,
            created_at=self._clock(),
            budget_id="",
            budget_linked_at=None,
        )
        async with self._db.tenant_session(principal.tenant) as session:
            created = await store.add_scenario(session, row)
            if not created:
                row = await store.scenario(session, identifier) or row
        if created:
            WHAT_IF.labels("save").inc()
        return SavedScenario(row, tuple(overrides), tuple(results), False), created

    async def _row(self, principal: Principal, scenario: str) -> ScenarioRow:
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            row = await store.scenario(session, scenario)
        if row is None:
            raise _not_found(scenario)
        return row

    async def get(
        self, principal: Principal, scenario: str, *, opened: bool = True, authorization: str = ""
    ) -> SavedScenario:
        """A saved scenario with its results, as when it was saved.

        `opened` counts it as a what-if use (a share link opened, say).

        Raises:
            NotFound: No scenario has that id.
        """
        row = await self._row(principal, scenario)
        overrides = tuple(Override.from_json(data) for data in row.overrides)
        kept = {name: Inputs.from_json(data) for name, data in row.snapshot.items()}
        results = await asyncio.to_thread(_evaluate, kept, overrides)
        current = await self._reliability.inputs(principal, authorization)
        changed = any(
            name not in current or current[name].to_json() != data
            for name, data in row.snapshot.items()
        )
        if opened:
            WHAT_IF.labels("open").inc()
        return SavedScenario(row, overrides, tuple(results), changed)

    async def page(self, principal: Principal, page: Page) -> list[ScenarioRow]:
        """A page of saved scenarios, newest first (size + 1 rows)."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            return await store.page_of_scenarios(session, page)

    async def rename(self, principal: Principal, scenario: str, name: str) -> ScenarioRow:
        """Rename a saved scenario.

        Raises:
            NotFound: No scenario has that id.
        """
        async with self._db.tenant_session(principal.tenant) as session:
            if not await store.rename_scenario(session, scenario, name):
                raise _not_found(scenario)
            row = await store.scenario(session, scenario)
        if row is None:
            raise _not_found(scenario)
        return row

    async def delete(self, principal: Principal, scenario: str) -> None:
        """Delete a saved scenario.

        Raises:
            NotFound: No scenario has that id.
        """
        async with self._db.tenant_session(principal.tenant) as session:
            if not await store.delete_scenario(session, scenario):
                raise _not_found(scenario)
