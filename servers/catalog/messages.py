"""Translation between the Catalog's messages and its domain values, both ways."""

from __future__ import annotations

from datetime import datetime

from intelgraph.catalog.v1 import catalog_service_pb2 as pb
from intelgraph.common.v1.money_pb2 import Money

from core.errors import InvalidArgument
from core.interfaces import CostBudget
from core.times import to_timestamp
from interceptors.validation import within_bounds
from servers.catalog.availability import AvailabilityReport, EntityAvailability
from servers.catalog.budgets import BudgetReport, BurnAlert
from servers.catalog.descriptor_files import CatalogFile, document_invalid
from servers.catalog.entities import spec_of
from servers.catalog.objectives import SloStatus
from servers.catalog.reliability import Figures, Impact, Override
from servers.catalog.scenarios import SavedScenario
from servers.catalog.specs import (
    OCCURRENCES,
    TIMESLICES,
    DependencySpec,
    EntitySpec,
    IndicatorSpec,
    LinkSpec,
    SloSpec,
    WindowSpec,
)
from servers.catalog.store import EntityRow, ScenarioRow

KIND = {
    "component": pb.ENTITY_KIND_COMPONENT,
    "api": pb.ENTITY_KIND_API,
    "resource": pb.ENTITY_KIND_RESOURCE,
    "system": pb.ENTITY_KIND_SYSTEM,
}
KIND_NAME = {number: name for name, number in KIND.items()}
LIFECYCLE = {
    "experimental": pb.LIFECYCLE_EXPERIMENTAL,
    "production": pb.LIFECYCLE_PRODUCTION,
    "deprecated": pb.LIFECYCLE_DEPRECATED,
}
LIFECYCLE_NAME = {number: name for name, number in LIFECYCLE.items()}
_METHOD = {OCCURRENCES: pb.BUDGETING_METHOD_OCCURRENCES, TIMESLICES: pb.BUDGETING_METHOD_TIMESLICES}
_METHOD_NAME = {number: name for name, number in _METHOD.items()}
_CALENDAR = {
    "week": pb.CALENDAR_PERIOD_WEEK,
    "month": pb.CALENDAR_PERIOD_MONTH,
    "quarter": pb.CALENDAR_PERIOD_QUARTER,
}
_CALENDAR_NAME = {number: name for name, number in _CALENDAR.items()}
SOURCE = {
    "observed": pb.AVAILABILITY_SOURCE_OBSERVED,
    "declared": pb.AVAILABILITY_SOURCE_DECLARED,
    "objective": pb.AVAILABILITY_SOURCE_OBJECTIVE,
    "assumed": pb.AVAILABILITY_SOURCE_ASSUMED,
    "scenario": pb.AVAILABILITY_SOURCE_SCENARIO,
}


# Requests to domain values


def window_of(message: pb.TimeWindow, present: bool) -> WindowSpec:
    """The window a message describes (a rolling 30 days when absent)."""
    if not present or message.WhichOneof("kind") is None:
        return WindowSpec()
    if message.WhichOneof("kind") == "calendar":
        # An unspecified period is refused by specs.check_window.
        return WindowSpec(calendar=_CALENDAR_NAME.get(message.calendar, "unspecified"))
    return WindowSpec(rolling_days=message.rolling_days)


def slo_of(message: pb.Slo) -> SloSpec:
    """The SLO a message describes (checked later by `specs.check_slo`)."""
    return SloSpec(
        name=message.name,
        description=message.description,
        objective=message.objective,
        window=window_of(message.window, message.HasField("window")),
        budgeting_method=_METHOD_NAME.get(message.budgeting_method, OCCURRENCES),
        timeslice_target=message.timeslice_target,
        timeslice_minutes=message.timeslice_minutes or 1,
        indicator=IndicatorSpec(
            description=message.indicator.description,
            good_query=message.indicator.good_query,
            bad_query=message.indicator.bad_query,
            total_query=message.indicator.total_query,
        ),
    )


def dependency_of(message: pb.Dependency) -> DependencySpec:
    """The dependency a message describes."""
    return DependencySpec(tuple(message.targets), message.required or 1, message.group)


def entity_of(message: pb.Entity) -> EntitySpec:
    """The entity a message describes (checked later by `specs.check_entity`).

    An unspecified kind stays "" (an update keeps the stored one; a create
    refuses it); an unspecified lifecycle is production.
    """
    return EntitySpec(
        kind=KIND_NAME.get(message.kind, ""),
        name=message.name,
        title=message.title,
        description=message.description,
        owner=message.owner,
        lifecycle=LIFECYCLE_NAME.get(message.lifecycle, "production"),
        tags=tuple(message.tags),
        links=tuple(LinkSpec(link.url, link.title) for link in message.links),
        system=message.system,
        dependencies=tuple(dependency_of(d) for d in message.dependencies),
        slos=tuple(slo_of(slo) for slo in message.slos),
        expected_availability=(
            message.expected_availability if message.HasField("expected_availability") else None
        ),
        requests_per_second=message.requests_per_second,
    )


def override_of(message: pb.EntityOverride) -> Override:
    """The override a message describes."""
    return Override(
        entity=message.entity,
        availability=message.availability if message.HasField("availability") else None,
        objective=message.objective if message.HasField("objective") else None,
        requests_per_second=(
            message.requests_per_second if message.HasField("requests_per_second") else None
        ),
        add_dependencies=tuple(dependency_of(d) for d in message.add_dependencies),
        remove_targets=tuple(message.remove_targets),
    )


# Domain values to responses


def _window(window: WindowSpec) -> pb.TimeWindow:
    if window.calendar:
        return pb.TimeWindow(calendar=_CALENDAR[window.calendar])
    return pb.TimeWindow(rolling_days=window.rolling_days)


def slo(spec: SloSpec) -> pb.Slo:
    """The message of an SLO."""
    return pb.Slo(
        name=spec.name,
        description=spec.description,
        objective=spec.objective,
        window=_window(spec.window),
        budgeting_method=_METHOD[spec.budgeting_method],
        timeslice_target=spec.timeslice_target,
        timeslice_minutes=spec.timeslice_minutes,
        indicator=pb.Indicator(
            description=spec.indicator.description,
            good_query=spec.indicator.good_query,
            bad_query=spec.indicator.bad_query,
            total_query=spec.indicator.total_query,
        ),
    )


def _dependency(spec: DependencySpec) -> pb.Dependency:
    return pb.Dependency(targets=list(spec.targets), required=spec.required, group=spec.group)


def _money(minor_units: int | None, currency: str) -> Money | None:
    if minor_units is None:
        return None
    return Money(minor_units=minor_units, currency_code=currency)


def budget_link(
    budget_id: str, linked_at: datetime | None, cost: CostBudget | None
) -> pb.BudgetLink | None:
    """The message of a budget link, with Billing's figures when they could be read."""
    if not budget_id:
        return None
    link = pb.BudgetLink(budget_id=budget_id, linked_at=to_timestamp(linked_at))
    if cost is not None:
        link.name = cost.name
        link.monthly_amount.CopyFrom(
            Money(minor_units=cost.monthly_amount, currency_code=cost.currency)
        )
        link.spent.CopyFrom(Money(minor_units=cost.spent, currency_code=cost.currency))
    return link


def entity_message(spec: EntitySpec) -> pb.Entity:
    """The message of an entity as declared (no id, etag or times)."""
    return pb.Entity(
        kind=KIND.get(spec.kind, pb.ENTITY_KIND_UNSPECIFIED),
        name=spec.name,
        title=spec.title,
        description=spec.description,
        owner=spec.owner,
        lifecycle=LIFECYCLE.get(spec.lifecycle, pb.LIFECYCLE_UNSPECIFIED),
        tags=list(spec.tags),
        links=[pb.Link(url=link.url, title=link.title) for link in spec.links],
        system=spec.system,
        dependencies=[_dependency(d) for d in spec.dependencies],
        slos=[slo(objective) for objective in spec.slos],
        expected_availability=spec.expected_availability,
        requests_per_second=spec.requests_per_second,
    )


def check_file_bounds(file: CatalogFile) -> None:
    """Refuse a file declaring what the contract's field bounds would refuse over gRPC.

    The same checks as every request's (lengths, item counts, finite numbers
    within range, no control characters), so an entity imported from YAML is
    one that UpdateEntity accepts back.

    Raises:
        InvalidArgument: DOCUMENT_INVALID, naming the document and the field.
    """
    entity_bounds, slo_bounds = (
        within_bounds(pb.Entity.DESCRIPTOR),
        within_bounds(pb.Slo.DESCRIPTOR),
    )
    for declared in file.entities:
        try:
            entity_bounds(entity_message(declared))
        except InvalidArgument as error:
            raise document_invalid(
                file.positions[declared.name], error.field, error.message
            ) from None
    for service, objective in file.slos:
        try:
            slo_bounds(slo(objective))
        except InvalidArgument as error:
            position = file.positions[f"{service}/{objective.name}"]
            raise document_invalid(position, error.field, error.message) from None


def entity(row: EntityRow, cost: CostBudget | None = None) -> pb.Entity:
    """The message of a stored entity (with its budget's figures, when given)."""
    spec = spec_of(row)
    return pb.Entity(
        id=str(row.id),
        kind=KIND[spec.kind],
        name=spec.name,
        title=spec.title,
        description=spec.description,
        owner=spec.owner,
        lifecycle=LIFECYCLE[spec.lifecycle],
        tags=list(spec.tags),
        links=[pb.Link(url=link.url, title=link.title) for link in spec.links],
        system=spec.system,
        dependencies=[_dependency(d) for d in spec.dependencies],
        slos=[slo(objective) for objective in spec.slos],
        expected_availability=spec.expected_availability,
        requests_per_second=spec.requests_per_second,
        etag=row.etag,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        budget=budget_link(row.budget_id, row.budget_linked_at, cost),
    )


def error_budget(report: BudgetReport) -> pb.ErrorBudget:
    """The message of an error-budget report."""
    return pb.ErrorBudget(
        objective=report.objective,
        error_budget=report.error_budget,
        window_seconds=int(report.window_seconds),
        elapsed_seconds=int(report.elapsed_seconds),
        total_events=int(report.total_events),
        bad_events=int(report.bad_events),
        attainment=report.attainment,
        error_ratio=report.error_ratio,
        allowed_bad_events=report.allowed_bad_events,
        consumed=report.consumed,
        remaining=report.remaining,
        time_budget_seconds=report.time_budget_seconds,
        consumed_seconds=report.consumed_seconds,
        remaining_seconds=report.remaining_seconds,
        burn_rate=report.burn_rate,
        exhaustion_seconds=report.exhaustion_seconds,
    )


def burn_alert(alert: BurnAlert) -> pb.BurnAlert:
    """The message of one multi-window alert's state."""
    policy = alert.policy
    return pb.BurnAlert(
        severity=policy.severity,
        long_window_seconds=policy.long_window_seconds,
        short_window_seconds=policy.short_window_seconds,
        budget_fraction=policy.budget_fraction,
        threshold=alert.threshold,
        long_burn_rate=alert.long_burn_rate,
        short_burn_rate=alert.short_burn_rate,
        firing=alert.firing,
    )


def slo_status(status: SloStatus) -> pb.SloStatus:
    """The message of an SLO's status."""
    return pb.SloStatus(
        entity=status.entity,
        slo=status.slo.name,
        budgeting_method=_METHOD[status.slo.budgeting_method],
        window_start=to_timestamp(status.window_start),
        window_end=to_timestamp(status.window_end),
        budget=error_budget(status.budget),
        burn_rates=[
            pb.BurnRate(
                window_seconds=rate.window_seconds,
                error_ratio=rate.error_ratio,
                burn_rate=rate.burn_rate,
                total_events=rate.total,
            )
            for rate in status.rates
        ],
        alerts=[burn_alert(alert) for alert in status.alerts],
        daily_consumed=list(status.daily_consumed),
    )


def _availability(report: EntityAvailability) -> pb.Availability:
    return pb.Availability(
        entity=report.entity,
        own=report.own,
        source=SOURCE[report.source],
        composite=report.composite,
        weakest_links=[
            pb.WeakLink(entity=link.entity, gain=link.gain, group=link.group)
            for link in report.weakest_links
        ],
    )


def availability(report: AvailabilityReport) -> pb.GetAvailabilityResponse:
    """The response of GetAvailability."""
    return pb.GetAvailabilityResponse(
        availability=_availability(report.entity),
        dependencies=[_availability(below) for below in report.dependencies],
        edges=[
            pb.DependencyEdge(
                source=edge.source,
                target=edge.target,
                required=edge.required,
                of=edge.of,
                group=edge.group,
            )
            for edge in report.edges
        ],
    )


def _reliability(figures: Figures) -> pb.Reliability:
    message = pb.Reliability(
        availability=figures.availability,
        source=SOURCE[figures.source],
        objective=figures.objective,
        error_budget=figures.error_budget,
        burn_rate=figures.burn_rate,
        time_budget_seconds=figures.time_budget_seconds,
        allowed_bad_events=figures.allowed_bad_events,
        expected_bad_events=figures.expected_bad_events,
        requests_per_second=figures.requests_per_second,
        meets_objective=figures.meets_objective,
        monthly_cost=_money(figures.monthly_cost, figures.currency),
    )
    if figures.weakest_link is not None:
        message.weakest_link.CopyFrom(
            pb.WeakLink(
                entity=figures.weakest_link.entity,
                gain=figures.weakest_link.gain,
                group=figures.weakest_link.group,
            )
        )
    return message


def impact(result: Impact) -> pb.EntityImpact:
    """The message of one entity's before and after."""
    return pb.EntityImpact(
        entity=result.entity, before=_reliability(result.before), after=_reliability(result.after)
    )


def _override(override: Override) -> pb.EntityOverride:
    message = pb.EntityOverride(
        entity=override.entity,
        add_dependencies=[_dependency(d) for d in override.add_dependencies],
        remove_targets=list(override.remove_targets),
    )
    if override.availability is not None:
        message.availability = override.availability
    if override.objective is not None:
        message.objective = override.objective
    if override.requests_per_second is not None:
        message.requests_per_second = override.requests_per_second
    return message


def scenario(
    row: ScenarioRow, catalog_changed: bool = False, cost: CostBudget | None = None
) -> pb.Scenario:
    """The message of a saved scenario (with its budget's figures, when given)."""
    return pb.Scenario(
        id=row.id,
        name=row.name,
        overrides=[_override(Override.from_json(data)) for data in row.overrides],
        created_by=row.created_by,
        created_at=to_timestamp(row.created_at),
        catalog_changed=catalog_changed,
        budget=budget_link(row.budget_id, row.budget_linked_at, cost),
    )


def saved(
    result: SavedScenario, cost: CostBudget | None = None
) -> tuple[pb.Scenario, list[pb.EntityImpact]]:
    """A saved scenario's message and its impacts."""
    return scenario(result.row, result.catalog_changed, cost), [impact(i) for i in result.impacts]
