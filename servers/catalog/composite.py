"""Composite availability over a dependency graph, as a reliability block diagram.

Each entity (a service, a database, a queue) has its own availability and
needs its dependencies: a plain dependency, a redundant group of which one
member suffices, a quorum of k of n members. The composite availability of an
entity is its own availability times the probability that each of its
requirements is met, the members counted at their own composites:

    C(v) = own(v) * ∏ over v's requirements of P(at least k of its n targets are up)

Failures are assumed independent, as every reliability block diagram assumes:
an entity reached along two paths (a diamond) is counted on each path, and a
shared cause (one zone, one deployment) is not modelled. The figures are a
planning estimate of where unavailability comes from, not a measurement;
measurements are the SLOs' business (`servers.catalog.budgets`).

>>> nodes = {
...     "web": Node(0.9999, (Requirement(("api",), 1),)),
...     "api": Node(0.999, (Requirement(("db",), 1), Requirement(("cache-a", "cache-b"), 1))),
...     "db": Node(0.995),
...     "cache-a": Node(0.99),
...     "cache-b": Node(0.99),
... }
>>> composites = composite_availability(nodes)
>>> round(composites["api"], 12)  # 0.999 * 0.995 * (1 - 0.01²)
0.9939055995
>>> [link.target for link in weakest_path("web", nodes, composites)]  # the database it is
['api', 'db', 'db']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

__all__ = [
    "DependencyCycle",
    "Node",
    "Requirement",
    "UnknownTargets",
    "WeakLink",
    "affected_by",
    "at_least",
    "composite_availability",
    "weakest_link",
    "weakest_path",
]


@dataclass(frozen=True, slots=True)
class Requirement:
    """A dependency, met when at least `required` of its `targets` are up.

    One target and `required` 1 is a plain dependency; 1 of n is a redundant
    group (1 - ∏(1 - Aᵢ)); n of n is the same as n plain dependencies (∏ Aᵢ);
    anything between is a quorum, such as 2 of 3 replicas.

    Attributes:
        targets: The names of the entities depended on, distinct, at least one.
        required: How many of them must be up, from 1 to len(targets).
    """

    targets: tuple[str, ...]
    required: int

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("a requirement names at least one target")
        if len(set(self.targets)) != len(self.targets):
            # A member counted twice would be two independent failures of one thing.
            raise ValueError(f"a requirement names each target once, not {self.targets!r}")
        if isinstance(self.required, bool) or not 1 <= self.required <= len(self.targets):
            raise ValueError(
                f"a requirement needs between 1 and {len(self.targets)} of its targets, "
                f"not {self.required!r}"
            )


@dataclass(frozen=True, slots=True)
class Node:
    """An entity of the graph: its own availability and what it needs.

    Attributes:
        own: The availability of the entity by itself, in [0, 1].
        requirements: The dependencies that must all be met for it to be up.
    """

    own: float
    requirements: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.own <= 1:
            raise ValueError(f"an availability lies in [0, 1], not {self.own!r}")


@dataclass(frozen=True, slots=True)
class WeakLink:
    """The improvement that would raise an entity's composite availability the most.

    Attributes:
        target: The direct dependency to make perfect, or the entity's own name
            when improving the entity itself helps most.
        gain: How much the entity's composite availability would rise.
    """

    target: str
    gain: float


class DependencyCycle(ValueError):
    """The graph has a cycle, so no entity on it has a composite availability.

    Attributes:
        cycle: The names along the cycle in dependency order, the first
            repeated at the end: ("a", "b", "a") when a needs b and b needs a.
    """

    def __init__(self, cycle: tuple[str, ...]) -> None:
        self.cycle = cycle
        super().__init__(f"dependency cycle: {' → '.join(cycle)}")


class UnknownTargets(KeyError):
    """Requirements name entities the graph does not hold.

    Attributes:
        targets: The unknown names, sorted.
    """

    def __init__(self, targets: Iterable[str]) -> None:
        self.targets = tuple(sorted(targets))
        super().__init__(f"dependencies on unknown entities: {', '.join(self.targets)}")

    def __str__(self) -> str:
        # KeyError's own str() quotes its argument as if it were the missing key.
        return str(self.args[0])


def at_least(k: int, probabilities: Sequence[float]) -> float:
    """The probability that at least k of independent events occur (Poisson binomial).

    An exact O(n·k) dynamic programme over how many of the events seen so far
    occurred, stopped at k. Every step adds and multiplies non-negative
    numbers, so both tails, P(at least k) and P(fewer than k), come out with a
    small relative error; the answer is the smaller tail itself, or 1 minus
    it. A tiny answer thus keeps all its digits (the textbook 1 - ∏(1 - p)
    of two 1e-12 events is off in the fifth), and an answer near 1 is off by
    no more than its final rounding: a double just below 1 holds the
    unavailability to within 1.1e-16, and nothing is lost before that.

    Args:
        k: How many events must occur; k ≤ 0 is certain, k > n impossible.
        probabilities: Each event's probability, in [0, 1].

    Returns:
        P(at least k of the events occur).

    Raises:
        ValueError: A probability is outside [0, 1].

    >>> at_least(2, [0.9, 0.9, 0.9])  # a 2-of-3 quorum: 3 * 0.9² * 0.1 + 0.9³
    0.972
    >>> at_least(1, [1e-12, 1e-12])  # 2e-12 - 1e-24
    1.999999999999e-12
    """
    for probability in probabilities:
        if not 0 <= probability <= 1:
            raise ValueError(f"a probability lies in [0, 1], not {probability!r}")
    return _at_least(k, probabilities)


def _at_least(k: int, probabilities: Sequence[float]) -> float:
    """`at_least` on probabilities already known to lie in [0, 1]."""
    count = len(probabilities)
    if k <= 0:
        return 1.0
    if k > count:
        return 0.0
    if count == 1:
        return probabilities[0]
    if k == count:
        return math.prod(probabilities)
    # exactly[j]: P(exactly j of the events seen so far occurred), for j < k.
    exactly = [1.0] + [0.0] * (k - 1)
    reached = 0.0  # P(at least k of them occurred)
    for probability in probabilities:
        miss = 1.0 - probability
        reached += exactly[k - 1] * probability
        for occurred in range(k - 1, 0, -1):
            exactly[occurred] = exactly[occurred] * miss + exactly[occurred - 1] * probability
        exactly[0] *= miss
    short = math.fsum(exactly)
    # Near 1, subtracting the small tail keeps more digits than summing the big one.
    return reached if reached < short else 1.0 - short


def _targets(node: Node) -> Iterator[str]:
    return chain.from_iterable(requirement.targets for requirement in node.requirements)


def _requirement_availability(requirement: Requirement, composites: Mapping[str, float]) -> float:
    targets = requirement.targets
    if len(targets) == 1:
        return composites[targets[0]]
    return _at_least(requirement.required, [composites[target] for target in targets])


def _check_targets_known(nodes: Mapping[str, Node]) -> None:
    unknown = {
        target
        for node in nodes.values()
        for requirement in node.requirements
        for target in requirement.targets
        if target not in nodes
    }
    if unknown:
        raise UnknownTargets(unknown)


def composite_availability(nodes: Mapping[str, Node]) -> dict[str, float]:
    """Every entity's composite availability, dependencies first.

    An iterative depth-first search, so a chain of any depth needs no
    recursion; each entity and each edge is visited once.

    Args:
        nodes: The entities by name.

    Returns:
        The composite availability of every entity, by name.

    Raises:
        UnknownTargets: A requirement names an entity that is not in `nodes`
            (a KeyError; callers are expected to have validated before).
        DependencyCycle: The graph has a cycle (an entity needing itself
            included); one of them is named.
    """
    _check_targets_known(nodes)
    composites: dict[str, float] = {}
    for root in nodes:
        if root in composites:
            continue
        # The path from root to the entity being expanded, and each one's place on it.
        path = [root]
        place_on_path = {root: 0}
        unexplored = [_targets(nodes[root])]
        while unexplored:
            for target in unexplored[-1]:
                if target in composites:
                    continue
                if target in place_on_path:
                    raise DependencyCycle((*path[place_on_path[target] :], target))
                place_on_path[target] = len(path)
                path.append(target)
                unexplored.append(_targets(nodes[target]))
                break
            else:
                unexplored.pop()
                name = path.pop()
                del place_on_path[name]
                node = nodes[name]
                value = node.own
                for requirement in node.requirements:
                    value *= _requirement_availability(requirement, composites)
                composites[name] = value
    return composites


def _count_distributions(probabilities: Sequence[float], limit: int) -> list[list[float]]:
    """For each i, P(exactly j of the first i events occur) for j < limit."""
    rows = [[1.0] + [0.0] * (limit - 1)]
    for probability in probabilities:
        miss = 1.0 - probability
        previous = rows[-1]
        row = [previous[0] * miss]
        row.extend(
            previous[occurred] * miss + previous[occurred - 1] * probability
            for occurred in range(1, limit)
        )
        rows.append(row)
    return rows


def _lifts(required: int, availabilities: Sequence[float]) -> list[float]:
    """How much P(at least `required` up) rises when each member, alone, becomes perfect.

    Making member t perfect lifts the group by (1 - A_t) * P(exactly
    required - 1 of the others are up): only when the others are one short
    does t decide. All n lifts cost O(n*k) together, from prefix and suffix
    distributions of the others' count, and having no subtraction they keep
    their relative precision however small they are.
    """
    count = len(availabilities)
    if count == 1:
        return [1.0 - availabilities[0]]
    if required == 1:
        # One member up is enough, so t decides only when every member is down.
        return [math.prod([1.0 - availability for availability in availabilities])] * count
    if required == count:
        # Every member is needed, so t decides when it alone is down.
        up_after = [1.0] * (count + 1)
        for index in range(count - 1, -1, -1):
            up_after[index] = up_after[index + 1] * availabilities[index]
        lifts, up_before = [], 1.0
        for index, availability in enumerate(availabilities):
            lifts.append((1.0 - availability) * up_before * up_after[index + 1])
            up_before *= availability
        return lifts
    short_by_one = required - 1
    before = _count_distributions(availabilities, required)
    after = _count_distributions(availabilities[::-1], required)[::-1]
    return [
        (1.0 - availability)
        * math.fsum(
            before[index][ahead] * after[index + 1][short_by_one - ahead]
            for ahead in range(required)
        )
        for index, availability in enumerate(availabilities)
    ]


def _repeated_targets(requirements: Sequence[Requirement]) -> set[str]:
    """The targets named by more than one of the requirements."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for requirement in requirements:
        for target in requirement.targets:
            if target in seen:
                repeated.add(target)
            seen.add(target)
    return repeated


def _first_requirement_naming(target: str, requirements: Sequence[Requirement]) -> int:
    return next(index for index, found in enumerate(requirements) if target in found.targets)


def _repeated_target_lift(
    target: str,
    requirements: Sequence[Requirement],
    groups: Sequence[float],
    lifts: Sequence[Sequence[float]],
    after: Sequence[float],
) -> float:
    """How much the product of the groups rises when a target named by several becomes perfect.

    prod(G') - prod(G) = sum over i of (G'i - Gi) * prod(G'j, j < i) * prod(Gj, j > i),
    a sum of non-negative terms: again no cancellation.
    """
    total, improved_before = 0.0, 1.0
    for index, requirement in enumerate(requirements):
        lift = 0.0
        if target in requirement.targets:
            lift = lifts[index][requirement.targets.index(target)]
        total += lift * improved_before * after[index + 1]
        improved_before *= groups[index] + lift
    return total


def weakest_link(
    name: str, nodes: Mapping[str, Node], composites: Mapping[str, float]
) -> WeakLink | None:
    """The one improvement, among the entity itself and its direct targets, that helps it most.

    Each candidate is made perfect in turn (its composite, or the entity's own
    availability, set to 1.0) and the entity's composite recomputed, holding
    the other targets' composites as they are; only the requirement holding
    the target is recomputed, so a whole graph's weakest links cost O(edges)
    for plain, redundant and all-of-n groups (O(n*k) for a k-of-n quorum). The
    gain is computed as the lift of that requirement times the untouched
    factors, never as a difference of two composites, so it keeps its digits
    and is exactly 0.0 when nothing changes. A target reached again through
    another of the entity's targets (a diamond) is credited on this edge only,
    as the independence assumption has it.

    Ties go to the candidate met first: the entity itself, then its targets in
    the order of its requirements.

    Args:
        name: The entity.
        nodes: The graph, as given to `composite_availability`.
        composites: Its result; only the entity's direct targets are read.

    Returns:
        The target to improve (the entity's own name for the entity itself)
        and the gain, or None when no improvement would raise the composite.
    """
    node = nodes[name]
    own, requirements = node.own, node.requirements
    groups: list[float] = []  # each requirement's availability
    lifts: list[Sequence[float]] = []  # per requirement, its rise when each target is perfect
    for requirement in requirements:
        targets = requirement.targets
        if len(targets) == 1:
            availability = composites[targets[0]]
            groups.append(availability)
            lifts.append((1.0 - availability,))
        else:
            availabilities = [composites[target] for target in targets]
            groups.append(_at_least(requirement.required, availabilities))
            lifts.append(_lifts(requirement.required, availabilities))
    # before[i] * after[i + 1] is the product of every group but i, with no division by zero.
    before = [1.0]
    for group in groups:
        before.append(before[-1] * group)
    after = [1.0] * (len(groups) + 1)
    for index in range(len(groups) - 1, -1, -1):
        after[index] = after[index + 1] * groups[index]

    best_target, best_gain = name, (1.0 - own) * before[-1]
    repeated = _repeated_targets(requirements) if len(requirements) > 1 else set()
    for index, requirement in enumerate(requirements):
        untouched = own * before[index] * after[index + 1]
        for target, lift in zip(requirement.targets, lifts[index], strict=True):
            if target not in repeated:
                gain = untouched * lift
            elif index == _first_requirement_naming(target, requirements):
                gain = own * _repeated_target_lift(target, requirements, groups, lifts, after)
            else:
                continue
            if gain > best_gain:
                best_target, best_gain = target, gain
    return WeakLink(best_target, best_gain) if best_gain > 0 else None


def weakest_path(
    name: str, nodes: Mapping[str, Node], composites: Mapping[str, float]
) -> list[WeakLink]:
    """The chain of weakest links from an entity down to where its unavailability comes from.

    Follows `weakest_link` from the entity to its weakest target, then that
    target's, until an entity is its own weakest link or has none.

    Args:
        name: The entity to start from.
        nodes: The graph, as given to `composite_availability`.
        composites: Its result.

    Returns:
        The links in order; the last names the entity to improve. Empty when
        the entity cannot be improved at all.

    Raises:
        DependencyCycle: The links lead back to an entity already on the path,
            which only a cyclic graph (with made-up composites) can do.
    """
    links: list[WeakLink] = []
    visited = [name]
    place_on_path = {name: 0}
    current = name
    while (link := weakest_link(current, nodes, composites)) is not None:
        links.append(link)
        if link.target == current:
            break
        if link.target in place_on_path:
            raise DependencyCycle((*visited[place_on_path[link.target] :], link.target))
        place_on_path[link.target] = len(visited)
        visited.append(link.target)
        current = link.target
    return links


def affected_by(changed: Iterable[str], nodes: Mapping[str, Node]) -> set[str]:
    """The changed entities and every entity that depends on one of them, however indirectly.

    These are the composites a what-if scenario must recompute; the rest keep
    their values.

    Args:
        changed: The names whose availability or requirements change.
        nodes: The graph.

    Returns:
        The changed names and all their transitive dependents.

    >>> graph = {"web": Node(1.0, (Requirement(("api",), 1),)), "api": Node(1.0), "cron": Node(1.0)}
    >>> sorted(affected_by(["api"], graph))
    ['api', 'web']
    """
    dependents: dict[str, list[str]] = {}
    for dependent, node in nodes.items():
        for target in _targets(node):
            dependents.setdefault(target, []).append(dependent)
    reached = set(changed)
    frontier = list(reached)
    while frontier:
        for dependent in dependents.get(frontier.pop(), ()):
            if dependent not in reached:
                reached.add(dependent)
                frontier.append(dependent)
    return reached
