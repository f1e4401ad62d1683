"""Reliability figures of the catalog, and what a what-if scenario does to them (pure).

`Inputs` are what an entity's figures follow from: its own availability (and
where that figure comes from), its first SLO's objective and window, its
expected traffic, its dependencies and its linked monthly cost. `evaluate`
turns every entity's inputs into `Figures` — composite availability over the
dependency graph, error budget, steady burn rate, budgets in time and in
events, the weakest link. A scenario is a set of `Override`s applied to the
inputs (`apply`); `impacts` compares the figures before and after for every
entity the scenario can touch. Inputs have a JSON form, so a saved scenario
keeps those it was evaluated on and reproduces its results exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.errors import InvalidArgument
from servers.catalog.budgets import error_budget, time_budget
from servers.catalog.composite import Node, Requirement, affected_by, compose
from servers.catalog.specs import (
    DependencySpec,
    check_dependency,
    dependencies_from_json,
    dependencies_to_json,
)

OBSERVED = "observed"
DECLARED = "declared"
OBJECTIVE = "objective"
ASSUMED = "assumed"
SCENARIO = "scenario"


@dataclass(frozen=True)
class Inputs:
    """What one entity's reliability figures follow from."""

    own: float
    source: str
    #: The first SLO's objective; 0.0 without an SLO.
    objective: float = 0.0
    window_seconds: int = 30 * 86_400
    requests_per_second: float = 0.0
    dependencies: tuple[DependencySpec, ...] = ()
    #: The linked budget's monthly amount, in minor units of `currency`.
    monthly_cost: int | None = None
    currency: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON form (saved with scenarios)."""
        return {
            "own": self.own,
            "source": self.source,
            "objective": self.objective,
            "window_seconds": self.window_seconds,
            "requests_per_second": self.requests_per_second,
            "dependencies": dependencies_to_json(self.dependencies),
            "monthly_cost": self.monthly_cost,
            "currency": self.currency,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Inputs:
        """Inputs from their JSON form."""
        return cls(
            own=float(data["own"]),
            source=str(data["source"]),
            objective=float(data["objective"]),
            window_seconds=int(data["window_seconds"]),
            requests_per_second=float(data["requests_per_second"]),
            dependencies=dependencies_from_json(data["dependencies"]),
            monthly_cost=data.get("monthly_cost"),
            currency=str(data.get("currency", "")),
        )


@dataclass(frozen=True)
class WeakestLink:
    """What would raise the composite most if it never failed, and by how much.

    An entity, or (with `group`) one of its redundancy groups.
    """

    entity: str
    gain: float
    group: str = ""


@dataclass(frozen=True)
class Figures:
    """One entity's reliability figures."""

    availability: float
    source: str
    objective: float
    error_budget: float
    burn_rate: float
    time_budget_seconds: float
    allowed_bad_events: float
    expected_bad_events: float
    requests_per_second: float
    meets_objective: bool
    weakest_link: WeakestLink | None
    monthly_cost: int | None
    currency: str


@dataclass(frozen=True)
class Override:
    """One entity's changes in a scenario; None keeps the catalog's figure."""

    entity: str
    availability: float | None = None
    objective: float | None = None
    requests_per_second: float | None = None
    add_dependencies: tuple[DependencySpec, ...] = ()
    remove_targets: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form (what a scenario's id is computed over)."""
        return {
            "entity": self.entity,
            "availability": self.availability,
            "objective": self.objective,
            "requests_per_second": self.requests_per_second,
            "add_dependencies": dependencies_to_json(self.add_dependencies),
            "remove_targets": sorted(self.remove_targets),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Override:
        """An override from its JSON form."""
        return cls(
            entity=data["entity"],
            availability=data.get("availability"),
            objective=data.get("objective"),
            requests_per_second=data.get("requests_per_second"),
            add_dependencies=dependencies_from_json(data.get("add_dependencies", [])),
            remove_targets=tuple(data.get("remove_targets", [])),
        )


@dataclass(frozen=True)
class Impact:
    """One entity's figures before and after a scenario."""

    entity: str
    before: Figures
    after: Figures


@dataclass(frozen=True)
class Refusal:
    """Why overrides cannot apply: the override's index, the field and the problem."""

    index: int
    field_path: str
    problem: str
    unknown_entity: str = ""


class OverrideRefused(ValueError):
    """An override does not fit the catalog (see `Refusal`)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.problem)
        self.refusal = refusal


def nodes_of(inputs: Mapping[str, Inputs]) -> dict[str, Node]:
    """The dependency graph of `inputs`, each entity at its own availability."""
    return {
        name: Node(
            entity.own,
            tuple(Requirement(d.targets, d.required, d.group) for d in entity.dependencies),
        )
        for name, entity in inputs.items()
    }


def _figures(entity: Inputs, availability: float, link: WeakestLink | None) -> Figures:
    budget = error_budget(entity.objective) if entity.objective else 0.0
    window = entity.window_seconds
    unavailability = 1.0 - availability
    return Figures(
        availability=availability,
        source=entity.source,
        objective=entity.objective,
        error_budget=budget,
        burn_rate=unavailability / budget if budget else 0.0,
        time_budget_seconds=time_budget(budget, window),
        allowed_bad_events=budget * entity.requests_per_second * window,
        expected_bad_events=unavailability * entity.requests_per_second * window,
        requests_per_second=entity.requests_per_second,
        meets_objective=availability >= entity.objective,
        weakest_link=link,
        monthly_cost=entity.monthly_cost,
        currency=entity.currency,
    )


def evaluate(
    inputs: Mapping[str, Inputs], names: Iterable[str] | None = None
) -> dict[str, Figures]:
    """The figures of `names` (every entity when None).

    Raises:
        DependencyCycle: The dependencies form a cycle.
    """
    composition = compose(nodes_of(inputs))
    figures = {}
    for name in sorted(inputs if names is None else names):
        links = composition.weakest_links(name, 1)
        figures[name] = _figures(
            inputs[name],
            composition.composites[name],
            WeakestLink(links[0].target, links[0].gain, links[0].group) if links else None,
        )
    return figures


def closure(inputs: Mapping[str, Inputs], names: Iterable[str]) -> set[str]:
    """`names` and every entity they depend on, transitively."""
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(target for d in inputs[name].dependencies for target in d.targets)
    return seen


def _check_override(index: int, override: Override, inputs: Mapping[str, Inputs]) -> None:
    def refuse(field_path: str, problem: str, unknown: str = "") -> OverrideRefused:
        return OverrideRefused(Refusal(index, field_path, problem, unknown))

    if override.entity not in inputs:
        raise refuse("entity", f"{override.entity!r} is not in the catalog", override.entity)
    if override.objective is not None and not 0.0 < override.objective < 1.0:
        raise refuse("objective", "objective must lie strictly between 0 and 1")
    if override.objective is not None and not inputs[override.entity].objective:
        raise refuse("objective", f"{override.entity!r} has no SLO whose objective to change")
    current = {t for d in inputs[override.entity].dependencies for t in d.targets}
    for position, target in enumerate(override.remove_targets):
        if target not in current:
            raise refuse(
                f"remove_targets[{position}]",
                f"{override.entity!r} does not depend on {target!r}",
            )
    for position, dependency in enumerate(override.add_dependencies):
        try:
            check_dependency(dependency, override.entity, f"add_dependencies[{position}]")
        except InvalidArgument as error:
            raise OverrideRefused(Refusal(index, error.field, error.message)) from None
        for at, target in enumerate(dependency.targets):
            if target not in inputs:
                raise refuse(
                    f"add_dependencies[{position}].targets[{at}]",
                    f"{target!r} is not in the catalog",
                    target,
                )
            if target == override.entity:
                raise refuse(
                    f"add_dependencies[{position}].targets[{at}]",
                    f"{override.entity!r} cannot depend on itself",
                )


def _without(dependencies: Sequence[DependencySpec], removed: set[str]) -> list[DependencySpec]:
    kept = []
    for dependency in dependencies:
        targets = tuple(t for t in dependency.targets if t not in removed)
        if targets:
            kept.append(
                replace(
                    dependency, targets=targets, required=min(dependency.required, len(targets))
                )
            )
    return kept


def apply(inputs: Mapping[str, Inputs], overrides: Sequence[Override]) -> dict[str, Inputs]:
    """The inputs with `overrides` applied, in order.

    A dependency that loses targets keeps requiring at most as many as remain
    (a 2-of-3 group losing two members becomes 1 of 1); one left with none goes.

    Raises:
        OverrideRefused: An override names an unknown entity or target, a
            target it does not depend on, or an objective out of range.
    """
    changed = dict(inputs)
    seen: set[str] = set()
    for index, override in enumerate(overrides):
        if override.entity in seen:
            raise OverrideRefused(
                Refusal(index, "entity", f"{override.entity!r} is overridden twice; merge them")
            )
        seen.add(override.entity)
        _check_override(index, override, changed)
        entity = changed[override.entity]
        dependencies = _without(entity.dependencies, set(override.remove_targets))
        dependencies.extend(override.add_dependencies)
        changed[override.entity] = replace(
            entity,
            own=entity.own if override.availability is None else override.availability,
            source=entity.source if override.availability is None else SCENARIO,
            objective=entity.objective if override.objective is None else override.objective,
            requests_per_second=(
                entity.requests_per_second
                if override.requests_per_second is None
                else override.requests_per_second
            ),
            dependencies=tuple(dependencies),
        )
    return changed


def relevant(inputs: Mapping[str, Inputs], overrides: Sequence[Override]) -> set[str]:
    """The entities a scenario's results depend on.

    Those it can change (the overridden entities and everything depending on
    them, before and after the change) and everything those depend on.
    """
    after = apply(inputs, overrides)
    changed = {override.entity for override in overrides}
    touched = affected_by(changed, nodes_of(inputs)) | affected_by(changed, nodes_of(after))
    return closure(inputs, touched) | closure(after, touched)


def impacts(inputs: Mapping[str, Inputs], overrides: Sequence[Override]) -> list[Impact]:
    """Every entity the scenario can change, by name, with its figures before and after.

    Raises:
        OverrideRefused: As `apply`.
        DependencyCycle: The scenario's dependencies form a cycle.
    """
    after = apply(inputs, overrides)
    changed = {override.entity for override in overrides}
    touched = affected_by(changed, nodes_of(inputs)) | affected_by(changed, nodes_of(after))
    before_figures = evaluate(inputs, touched)
    after_figures = evaluate(after, touched)
    return [Impact(name, before_figures[name], after_figures[name]) for name in sorted(touched)]
