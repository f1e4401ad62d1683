"""What the catalog holds, as plain values checked by the catalog's rules (no gRPC, no SQL).

An entity (Backstage's component, API, resource or system) is an `EntitySpec`:
its owner, lifecycle, tags and links, its dependencies (`DependencySpec`, k of
n targets) and its SLOs (`SloSpec`, in OpenSLO's spirit). `check_entity`
enforces the rules every way in (gRPC, YAML import, scenarios) goes through;
`to_json`/`from_json` give the form the store and saved scenarios keep.

>>> spec = check_entity(EntitySpec(kind="component", name="billing-api", owner="team-pay"))
>>> spec.slos, spec.dependencies
((), ())
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from core.errors import InvalidArgument, quoted

KINDS = ("component", "api", "resource", "system")
LIFECYCLES = ("experimental", "production", "deprecated")
OCCURRENCES = "occurrences"
TIMESLICES = "timeslices"
BUDGETING_METHODS = (OCCURRENCES, TIMESLICES)
CALENDAR_PERIODS = ("week", "month", "quarter")
#: A rolling window unless the SLO says otherwise: the workbook's 30 days.
DEFAULT_WINDOW_DAYS = 30
MAX_WINDOW_DAYS = 400
#: The placeholder a query's range is written as (Sloth's convention).
WINDOW_PLACEHOLDER = "{{window}}"

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TAG = re.compile(r"[a-z0-9](?:[a-z0-9:+#-]{0,61}[a-z0-9+#])?")
_DAY = 86_400


def _invalid(message: str, field_path: str) -> InvalidArgument:
    return InvalidArgument(message, field=field_path)


def check_name(name: str, field_path: str = "name") -> str:
    """`name` if it is a valid entity or SLO name (DNS-label style, at most 63 characters).

    Raises:
        InvalidArgument: It is not.
    """
    if not _NAME.fullmatch(name):
        raise _invalid(
            f"{field_path} {quoted(name)} must be 1 to 63 lower-case letters, digits and "
            "inner hyphens",
            field_path,
        )
    return name


@dataclass(frozen=True)
class WindowSpec:
    """An SLO's window: rolling over `rolling_days`, or a calendar period aligned in UTC."""

    rolling_days: int = DEFAULT_WINDOW_DAYS
    calendar: str = ""

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """The window that holds `now`: [start, end). A rolling window ends at `now`."""
        if not self.calendar:
            return now - timedelta(days=self.rolling_days), now
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if self.calendar == "week":
            start = day - timedelta(days=day.weekday())
            return start, start + timedelta(days=7)
        first_month = day.month if self.calendar == "month" else 3 * ((day.month - 1) // 3) + 1
        start = day.replace(day=1, month=first_month)
        months = 1 if self.calendar == "month" else 3
        end_month, end_year = first_month + months, start.year
        if end_month > 12:
            end_month, end_year = end_month - 12, end_year + 1
        return start, start.replace(year=end_year, month=end_month)

    def seconds(self, now: datetime | None = None) -> int:
        """The window's length: that of the period holding `now`, or its longest without one."""
        if not self.calendar:
            return self.rolling_days * _DAY
        if now is not None:
            start, end = self.bounds(now)
            return int((end - start).total_seconds())
        return {"week": 7, "month": 31, "quarter": 92}[self.calendar] * _DAY

    def describe(self) -> str:
        """How the window reads: "30d rolling", "calendar month", ..."""
        return f"calendar {self.calendar}" if self.calendar else f"{self.rolling_days}d rolling"


@dataclass(frozen=True)
class IndicatorSpec:
    """How events are told good from bad: Prometheus queries of an OpenSLO ratio metric."""

    description: str = ""
    good_query: str = ""
    bad_query: str = ""
    total_query: str = ""

    @property
    def measurable(self) -> bool:
        """Whether alert rules can be generated: a total and a good or bad query."""
        return bool(self.total_query and (self.good_query or self.bad_query))

    def error_ratio_query(self) -> str:
        """The error ratio over `{{window}}`, as PromQL."""
        if self.bad_query:
            return f"({self.bad_query})\n/\n({self.total_query})"
        return f"1 - (\n({self.good_query})\n/\n({self.total_query})\n)"


@dataclass(frozen=True)
class SloSpec:
    """A service level objective."""

    name: str
    objective: float
    description: str = ""
    window: WindowSpec = field(default_factory=WindowSpec)
    budgeting_method: str = OCCURRENCES
    #: Timeslices: a slice is good when its ratio is at least this (0: the objective).
    timeslice_target: float = 0.0
    timeslice_minutes: int = 1
    indicator: IndicatorSpec = field(default_factory=IndicatorSpec)

    @property
    def slice_target(self) -> float:
        """The ratio a time slice must reach to count as good."""
        return self.timeslice_target or self.objective


@dataclass(frozen=True)
class DependencySpec:
    """A dependency met when at least `required` of `targets` are up (k of n)."""

    targets: tuple[str, ...]
    required: int = 1
    group: str = ""


@dataclass(frozen=True)
class LinkSpec:
    """A link from an entity (a dashboard, a runbook)."""

    url: str
    title: str = ""


@dataclass(frozen=True)
class EntitySpec:
    """An entity of the catalog, as its owner declares it."""

    kind: str
    name: str
    title: str = ""
    description: str = ""
    owner: str = ""
    lifecycle: str = "production"
    tags: tuple[str, ...] = ()
    links: tuple[LinkSpec, ...] = ()
    system: str = ""
    dependencies: tuple[DependencySpec, ...] = ()
    slos: tuple[SloSpec, ...] = ()
    expected_availability: float | None = None
    requests_per_second: float = 0.0

    @property
    def targets(self) -> set[str]:
        """Every entity this one depends on."""
        return {target for dependency in self.dependencies for target in dependency.targets}

    def slo(self, name: str = "") -> SloSpec | None:
        """The SLO called `name`, or the first one when `name` is empty."""
        if not name:
            return self.slos[0] if self.slos else None
        return next((slo for slo in self.slos if slo.name == name), None)


def _check_objective(value: float, field_path: str) -> float:
    if not 0.0 < value < 1.0:
        raise _invalid(f"{field_path} must lie strictly between 0 and 1", field_path)
    return value


def check_window(window: WindowSpec, field_path: str) -> WindowSpec:
    """`window` if it is a rolling window of 1 to 400 days or a known calendar period.

    Raises:
        InvalidArgument: It is neither.
    """
    if window.calendar:
        if window.calendar not in CALENDAR_PERIODS:
            raise _invalid(f"{field_path}.calendar must be week, month or quarter", field_path)
        return window
    if not 1 <= window.rolling_days <= MAX_WINDOW_DAYS:
        raise _invalid(
            f"{field_path}.rolling_days must be between 1 and {MAX_WINDOW_DAYS}",
            f"{field_path}.rolling_days",
        )
    return window


def _check_query(query: str, field_path: str) -> None:
    if query and WINDOW_PLACEHOLDER not in query:
        raise _invalid(
            f"{field_path} must hold {WINDOW_PLACEHOLDER} where its range goes", field_path
        )


def check_slo(slo: SloSpec, field_path: str) -> SloSpec:
    """`slo` if it keeps the rules of an SLO.

    Raises:
        InvalidArgument: It does not: a bad name or objective, window, budgeting
            method, timeslice, or indicator.
    """
    check_name(slo.name, f"{field_path}.name")
    _check_objective(slo.objective, f"{field_path}.objective")
    check_window(slo.window, f"{field_path}.window")
    if slo.budgeting_method not in BUDGETING_METHODS:
        raise _invalid(
            f"{field_path}.budgeting_method must be occurrences or timeslices",
            f"{field_path}.budgeting_method",
        )
    if slo.timeslice_target:
        _check_objective(slo.timeslice_target, f"{field_path}.timeslice_target")
    if not 1 <= slo.timeslice_minutes <= 60 or 60 % slo.timeslice_minutes:
        raise _invalid(
            f"{field_path}.timeslice_minutes must divide an hour (1 to 60)",
            f"{field_path}.timeslice_minutes",
        )
    indicator = slo.indicator
    if indicator.good_query and indicator.bad_query:
        raise _invalid(
            f"{field_path}.indicator takes a good_query or a bad_query, not both",
            f"{field_path}.indicator",
        )
    if bool(indicator.good_query or indicator.bad_query) != bool(indicator.total_query):
        raise _invalid(
            f"{field_path}.indicator needs a total_query and a good or bad one, or neither",
            f"{field_path}.indicator.total_query",
        )
    for name in ("good_query", "bad_query", "total_query"):
        _check_query(getattr(indicator, name), f"{field_path}.indicator.{name}")
    return slo


def check_dependency(dependency: DependencySpec, owner: str, field_path: str) -> DependencySpec:
    """`dependency` (k defaulted to 1) if its targets are valid, distinct, not `owner`, 1 ≤ k ≤ n.

    Raises:
        InvalidArgument: It is not.
    """
    if not dependency.targets:
        raise _invalid(f"{field_path}.targets names no entity", f"{field_path}.targets")
    for index, target in enumerate(dependency.targets):
        check_name(target, f"{field_path}.targets[{index}]")
    if len(set(dependency.targets)) != len(dependency.targets):
        raise _invalid(f"{field_path}.targets names an entity twice", f"{field_path}.targets")
    required = dependency.required or 1
    if not 1 <= required <= len(dependency.targets):
        raise _invalid(
            f"{field_path}.required must be between 1 and its {len(dependency.targets)} targets",
            f"{field_path}.required",
        )
    if dependency.group and not _NAME.fullmatch(dependency.group):
        raise _invalid(
            f"{field_path}.group must be lower-case letters, digits and inner hyphens",
            f"{field_path}.group",
        )
    if owner in dependency.targets:
        raise _invalid(f"{field_path} makes {owner!r} depend on itself", f"{field_path}.targets")
    return replace(dependency, required=required)


def _check_link(link: LinkSpec, field_path: str) -> LinkSpec:
    parts = urlsplit(link.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(f"{field_path}.url must be an http or https URL", f"{field_path}.url")
    return link


def check_entity(entity: EntitySpec) -> EntitySpec:
    """`entity` with defaults filled in, if it keeps every rule of the catalog.

    Rules: a known kind and lifecycle; a valid name; tags lower-case and unique
    (kept sorted); links http(s); dependencies with valid, distinct targets,
    never the entity itself, and 1 ≤ k ≤ n; SLOs valid, with unique names;
    availability in [0, 1]; traffic not negative. Whether targets exist, and
    whether the graph stays acyclic, the use cases check against the catalog.

    Raises:
        InvalidArgument: The first rule it breaks, with the field's path.
    """
    if entity.kind not in KINDS:
        raise _invalid("kind must be component, api, resource or system", "kind")
    check_name(entity.name)
    if entity.lifecycle not in LIFECYCLES:
        raise _invalid("lifecycle must be experimental, production or deprecated", "lifecycle")
    for index, tag in enumerate(entity.tags):
        if not _TAG.fullmatch(tag):
            raise _invalid(
                f"tags[{index}] {quoted(tag)} must be lower-case letters, digits and inner "
                "'-', ':', '+' or '#'",
                f"tags[{index}]",
            )
    if entity.system:
        check_name(entity.system, "system")
    links = tuple(_check_link(link, f"links[{i}]") for i, link in enumerate(entity.links))
    dependencies = tuple(
        check_dependency(dependency, entity.name, f"dependencies[{index}]")
        for index, dependency in enumerate(entity.dependencies)
    )
    plain = [d.targets[0] for d in dependencies if len(d.targets) == 1]
    if len(set(plain)) != len(plain):
        raise _invalid("dependencies name one plain dependency twice", "dependencies")
    slos = tuple(check_slo(slo, f"slos[{index}]") for index, slo in enumerate(entity.slos))
    if len({slo.name for slo in slos}) != len(slos):
        raise _invalid("two SLOs share a name", "slos")
    if entity.expected_availability is not None and not 0.0 <= entity.expected_availability <= 1.0:
        raise _invalid("expected_availability must lie in [0, 1]", "expected_availability")
    if entity.requests_per_second < 0.0:
        raise _invalid("requests_per_second must not be negative", "requests_per_second")
    return replace(
        entity,
        tags=tuple(sorted(set(entity.tags))),
        links=links,
        dependencies=dependencies,
        slos=slos,
    )


def window_to_json(window: WindowSpec) -> dict[str, Any]:
    """The JSON form of a window."""
    return {"calendar": window.calendar} if window.calendar else {"days": window.rolling_days}


def window_from_json(data: Mapping[str, Any]) -> WindowSpec:
    """A window from its JSON form."""
    if data.get("calendar"):
        return WindowSpec(calendar=str(data["calendar"]))
    return WindowSpec(rolling_days=int(data["days"]))


def slo_to_json(slo: SloSpec) -> dict[str, Any]:
    """The JSON form of an SLO (the store's and saved scenarios')."""
    return {
        "name": slo.name,
        "description": slo.description,
        "objective": slo.objective,
        "window": window_to_json(slo.window),
        "budgeting_method": slo.budgeting_method,
        "timeslice_target": slo.timeslice_target,
        "timeslice_minutes": slo.timeslice_minutes,
        "indicator": {
            "description": slo.indicator.description,
            "good_query": slo.indicator.good_query,
            "bad_query": slo.indicator.bad_query,
            "total_query": slo.indicator.total_query,
        },
    }


def slo_from_json(data: Mapping[str, Any]) -> SloSpec:
    """An SLO from its JSON form."""
    return SloSpec(
        name=data["name"],
        description=data.get("description", ""),
        objective=float(data["objective"]),
        window=window_from_json(data["window"]),
        budgeting_method=data.get("budgeting_method", OCCURRENCES),
        timeslice_target=float(data.get("timeslice_target", 0.0)),
        timeslice_minutes=int(data.get("timeslice_minutes", 1)),
        indicator=IndicatorSpec(**data.get("indicator", {})),
    )


def dependencies_to_json(dependencies: Sequence[DependencySpec]) -> list[dict[str, Any]]:
    """The JSON form of dependencies."""
    return [
        {"targets": list(d.targets), "required": d.required, "group": d.group} for d in dependencies
    ]


def dependencies_from_json(data: Sequence[Mapping[str, Any]]) -> tuple[DependencySpec, ...]:
    """Dependencies from their JSON form."""
    return tuple(
        DependencySpec(tuple(d["targets"]), int(d["required"]), d.get("group", "")) for d in data
    )
