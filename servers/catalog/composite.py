"""Composite availability over a dependency graph, each entity counted once.

Each entity (a service, a database, a queue) has its own availability and
needs its dependencies: a plain dependency, a redundant group of which one
member suffices, a quorum of k of n members. Failures are assumed independent.

A reliability block diagram that multiplies each dependency's composite in
counts a shared dependency once per path: a web front end whose API and
authentication both use one database would have that database's downtime
counted twice. Here every entity is counted once. An entity's *required set*
is what must be up for it to be up: itself, everything its plain (and
all-of-n) dependencies require, and whatever a quorum cannot do without —
what at least n - k + 1 of a k-of-n group's members require, so every k of
them need it. Then

    C(v) = ∏ over u in required(v) of w(u),    w(u) = own(u) · ∏ over u's groups g of P_g

where P_g = P(at least k of g's members are up) with each member at its
availability *given the entity's required set is up* (its own required set
less what is already counted). So a diamond is exact (the database counted
once), a redundancy group whose members share a dependency is exact (the
shared part is required, counted once outside the group), and a tree is the
textbook product. What remains an estimate is an entity shared by some but not
enough members of groups, counted inside each group that reaches it. The
figures are a planning estimate of where unavailability comes from, not a
measurement; measurements are the SLOs' business (`servers.catalog.budgets`).

>>> nodes = {
...     "web": Node(0.9999, (Requirement(("api",), 1), Requirement(("auth",), 1))),
...     "api": Node(0.999, (Requirement(("db",), 1), Requirement(("cache-a", "cache-b"), 1))),
...     "auth": Node(0.9995, (Requirement(("db",), 1),)),
...     "db": Node(0.995),
...     "cache-a": Node(0.99),
...     "cache-b": Node(0.99),
... }
>>> composition = compose(nodes)
>>> round(composition.composites["api"], 12)  # 0.999 * 0.995 * (1 - 0.01²)
0.9939055995
>>> round(composition.composites["web"], 12)  # the database once: 0.9999 * 0.9995 * C(api)
0.993309305836
>>> [link.target for link in composition.weakest_links("web", 2)]  # the database it is
['db', 'api']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

__all__ = [
    "Composition",
    "DependencyCycle",
    "Node",
    "Requirement",
    "UnknownTargets",
    "WeakLink",
    "affected_by",
    "at_least",
    "compose",
    "composite_availability",
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
        label: What to call it where it is the weak link ("regions"); the
            targets joined by "|" when empty.
    """

    targets: tuple[str, ...]
    required: int
    label: str = ""

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
    """An improvement that would raise an entity's composite availability, and by how much.

    Attributes:
        target: The entity to make perfect (the entity itself, or one it
            requires), or the owner of the redundancy group named by `group`.
        gain: How much the composite would rise if it never failed.
        group: The redundancy group of `target` to make certain ("" for the
            entity itself).
    """

    target: str
    gain: float
    group: str = ""


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


def _dependency_order(nodes: Mapping[str, Node]) -> list[str]:
    """Every entity, each after everything it depends on.

    An iterative depth-first search, so a chain of any depth needs no
    recursion; each entity and each edge is visited once.

    Raises:
        UnknownTargets: A requirement names an entity that is not in `nodes`.
        DependencyCycle: The graph has a cycle (an entity needing itself
            included); one of them is named.
    """
    _check_targets_known(nodes)
    ordered: list[str] = []
    done: set[str] = set()
    for root in nodes:
        if root in done:
            continue
        # The path from root to the entity being expanded, and each one's place on it.
        path = [root]
        place_on_path = {root: 0}
        unexplored = [_targets(nodes[root])]
        while unexplored:
            for target in unexplored[-1]:
                if target in done:
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
                done.add(name)
                ordered.append(name)
    return ordered


def _needed_by_enough(member_sets: Sequence[int], enough: int) -> int:
    """The entities (bits) in at least `enough` of the member sets.

    Bit-sliced counting: at_least[j] holds the entities seen in j or more of
    the sets so far.
    """
    at_least = [-1] + [0] * enough
    for members in member_sets:
        for count in range(enough, 0, -1):
            at_least[count] |= at_least[count - 1] & members
    return at_least[enough]


@dataclass(frozen=True)
class _Group:
    label: str
    availability: float


class Composition:
    """Every entity's composite availability, and what each is made of.

    Built by `compose`; `composites` is the answer, `required` and
    `weakest_links` explain it.
    """

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        order = _dependency_order(nodes)
        self._names = order
        self._index = {name: index for index, name in enumerate(order)}
        size = len(order)
        self._own = [nodes[name].own for name in order]
        self._weights = [1.0] * size
        self._required: list[int] = [0] * size
        self._groups: list[tuple[_Group, ...]] = [()] * size
        #: The entities with redundancy groups (bits).
        self._grouped = 0
        self.composites: dict[str, float] = {}
        for position, name in enumerate(order):
            self._add(position, nodes[name])

    def _product(self, required: int) -> float:
        """The product of the weights of the entities in `required` (bits).

        Required sets are small next to the graph (tens of entities in
        thousands), so walking their set bits beats any vectorised mask.
        """
        weights = self._weights
        product = 1.0
        while required:
            lowest = required & -required
            product *= weights[lowest.bit_length() - 1]
            required ^= lowest
        return product

    def _add(self, position: int, node: Node) -> None:
        index = self._index
        required = 1 << position
        quorums = []
        for requirement in node.requirements:
            members = [self._required[index[target]] for target in requirement.targets]
            if requirement.required == len(members):  # all of them: plain dependencies
                for member in members:
                    required |= member
            else:
                quorums.append((requirement, members))
        for requirement, members in quorums:
            # What n - k + 1 members need, every k of them need.
            required |= _needed_by_enough(members, len(members) - requirement.required + 1)
        groups = []
        weight = node.own
        for requirement, members in quorums:
            given = [self._product(member & ~required) for member in members]
            availability = _at_least(requirement.required, given)
            groups.append(_Group(requirement.label or "|".join(requirement.targets), availability))
            weight *= availability
        self._weights[position] = weight
        self._required[position] = required
        self._groups[position] = tuple(groups)
        if groups:
            self._grouped |= 1 << position
        self.composites[self._names[position]] = self._product(required)

    def required(self, name: str) -> list[str]:
        """What must be up for `name` to be up (itself included), dependencies first."""
        required = self._required[self._index[name]]
        return [other for position, other in enumerate(self._names) if required >> position & 1]

    def weakest_links(self, name: str, limit: int = 5) -> list[WeakLink]:
        """The improvements that would raise `name`'s composite most, largest gain first.

        Candidates are every entity `name` requires (itself included), made
        never to fail, and every redundancy group of those, made certain. The
        gain is exact within the model: the composite with that factor set to
        1, less the composite. Ties go to the entity met first, dependencies
        before their dependents.
        """
        composite = self.composites[name]
        required = self._required[self._index[name]]
        links = []
        remaining = required
        while remaining:
            lowest = remaining & -remaining
            remaining ^= lowest
            position = lowest.bit_length() - 1
            own = self._own[position]
            if own > 0:
                gain = composite / own - composite
            else:  # a dead entity: the rest, were it alive
                gain = self._product(required & ~lowest) * self._local(position)
            if gain > 0:
                links.append(WeakLink(self._names[position], gain))
        grouped = required & self._grouped
        while grouped:
            lowest = grouped & -grouped
            grouped ^= lowest
            position = lowest.bit_length() - 1
            for group in self._groups[position]:
                gain = composite / group.availability - composite if group.availability else 0.0
                if gain > 0:
                    links.append(WeakLink(self._names[position], gain, group.label))
        # Stable: on ties, dependencies before dependents, entities before their groups.
        links.sort(key=lambda link: -link.gain)
        return links[:limit]

    def _local(self, position: int) -> float:
        return math.prod(group.availability for group in self._groups[position])


def compose(nodes: Mapping[str, Node]) -> Composition:
    """Every entity's composite availability, each entity counted once (see the module).

    Args:
        nodes: The entities by name.

    Raises:
        UnknownTargets: A requirement names an entity that is not in `nodes`
            (a KeyError; callers are expected to have validated before).
        DependencyCycle: The graph has a cycle (an entity needing itself
            included); one of them is named.
    """
    return Composition(nodes)


def composite_availability(nodes: Mapping[str, Node]) -> dict[str, float]:
    """Every entity's composite availability, by name (`compose(nodes).composites`)."""
    return compose(nodes).composites


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
