"""CSV exports of the catalog: entities, SLOs with their budgets, a saved scenario's results.

RFC 4180: comma-separated, fields quoted when they hold a comma, quote or line
break (quotes doubled), records ended by CRLF, the header first; UTF-8 without
a byte-order mark. Columns come in the fixed order of `ENTITY_COLUMNS`,
`SLO_COLUMNS` and `SCENARIO_COLUMNS` (documented in docs/catalog.md) and new
ones are only ever appended. Numbers are written in Python's shortest
round-trip form, so they read back to the same value; empty means none.

Text cells that a spreadsheet would run as a formula — starting with `=`, `+`,
`-`, `@`, a tab or a carriage return — get a leading apostrophe (OWASP's CSV
injection advice), so opening an export never runs what a user typed into a
title. Numbers are ours and never neutralised: a negative remaining budget
stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from interceptors.tokens import Principal
from servers.catalog.entities import Entities, spec_of
from servers.catalog.objectives import Objectives, SloStatus
from servers.catalog.reliability import Figures, Impact
from servers.catalog.scenarios import Scenarios
from servers.catalog.specs import EntitySpec
from servers.catalog.store import EntityRow

#: Bytes per streamed chunk, about.
CHUNK_BYTES = 64 * 1024

ENTITY_COLUMNS = (
    "name",
    "kind",
    "title",
    "description",
    "owner",
    "lifecycle",
    "system",
    "tags",
    "dependencies",
    "slos",
    "expected_availability",
    "requests_per_second",
    "budget_id",
    "budget_linked_at",
    "etag",
    "created_at",
    "updated_at",
)
SLO_COLUMNS = (
    "entity",
    "slo",
    "objective",
    "window",
    "budgeting_method",
    "window_start",
    "window_end",
    "total_events",
    "bad_events",
    "attainment",
    "error_budget",
    "allowed_bad_events",
    "consumed",
    "remaining",
    "time_budget_minutes",
    "remaining_minutes",
    "burn_rate",
    "burn_rate_1h",
    "exhaustion_hours",
    "firing_alerts",
)
_FIGURES = (
    "availability",
    "source",
    "objective",
    "burn_rate",
    "time_budget_minutes",
    "allowed_bad_events",
    "expected_bad_events",
    "requests_per_second",
    "meets_objective",
    "weakest_link",
    "monthly_cost",
)
SCENARIO_COLUMNS = (
    "scenario_id",
    "entity",
    *(f"{figure}_{side}" for figure in _FIGURES for side in ("before", "after")),
    "currency",
)
#: A text cell starting with one of these gets a leading apostrophe. The apostrophe itself is
#: among them, so a reader strips exactly one and gets the value back (`'=1` and `=1` differ).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def text(value: str) -> str:
    """A text cell, neutralised if a spreadsheet would take it for a formula.

    >>> text("=1+1"), text("'=1+1"), text("plain")
    ("'=1+1", "''=1+1", 'plain')
    """
    return "'" + value if value.startswith(_FORMULA_START) else value


def number(value: float | int | None) -> str:
    """A number cell: the shortest form that reads back to the same value; empty for None."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def flag(value: bool) -> str:
    """A yes/no cell."""
    return "true" if value else "false"


def dependencies_cell(spec: EntitySpec) -> str:
    """Dependencies as "db; cache-a|cache-b (1 of 2, caches)"."""
    parts = []
    for dependency in spec.dependencies:
        part = "|".join(dependency.targets)
        if len(dependency.targets) > 1 or dependency.group:
            detail = f"{dependency.required} of {len(dependency.targets)}"
            part += f" ({detail}, {dependency.group})" if dependency.group else f" ({detail})"
        parts.append(part)
    return "; ".join(parts)


def entity_row(row: EntityRow, spec: EntitySpec) -> list[str]:
    """An entity's cells, in `ENTITY_COLUMNS` order."""
    return [
        spec.name,
        spec.kind,
        text(spec.title),
        text(spec.description),
        text(spec.owner),
        spec.lifecycle,
        spec.system,
        ";".join(spec.tags),
        dependencies_cell(spec),
        ";".join(slo.name for slo in spec.slos),
        number(spec.expected_availability),
        number(spec.requests_per_second),
        row.budget_id,
        row.budget_linked_at.isoformat() if row.budget_linked_at else "",
        row.etag,
        row.created_at.isoformat(),
        row.updated_at.isoformat(),
    ]


def slo_row(status: SloStatus) -> list[str]:
    """An SLO's cells with its budget now, in `SLO_COLUMNS` order."""
    budget = status.budget
    current = next((rate for rate in status.rates if rate.window_seconds == 3600), None)
    exhaustion = budget.exhaustion_seconds
    return [
        status.entity,
        status.slo.name,
        number(status.slo.objective),
        status.slo.window.describe(),
        status.slo.budgeting_method,
        status.window_start.isoformat(),
        status.window_end.isoformat(),
        number(budget.total_events),
        number(budget.bad_events),
        number(budget.attainment),
        number(budget.error_budget),
        number(budget.allowed_bad_events),
        number(budget.consumed),
        number(budget.remaining),
        number(budget.time_budget_seconds / 60),
        number(budget.remaining_seconds / 60),
        number(budget.burn_rate),
        number(current.burn_rate if current is not None else None),
        number(exhaustion / 3600 if exhaustion is not None else None),
        ";".join(
            f"{alert.policy.severity}:{alert.policy.long_window_seconds}s/"
            f"{alert.policy.short_window_seconds}s"
            for alert in status.alerts
            if alert.firing
        ),
    ]


def _figures(figures: Figures) -> list[str]:
    link = figures.weakest_link
    return [
        number(figures.availability),
        figures.source,
        number(figures.objective),
        number(figures.burn_rate),
        number(figures.time_budget_seconds / 60),
        number(figures.allowed_bad_events),
        number(figures.expected_bad_events),
        number(figures.requests_per_second),
        flag(figures.meets_objective),
        link.entity if link is not None else "",
        number(figures.monthly_cost),
    ]


def scenario_rows(scenario_id: str, impacts: Sequence[Impact]) -> Iterable[list[str]]:
    """A scenario's results, one row per entity, in `SCENARIO_COLUMNS` order."""
    for impact in impacts:
        before, after = _figures(impact.before), _figures(impact.after)
        paired = [cell for pair in zip(before, after, strict=True) for cell in pair]
        yield [scenario_id, impact.entity, *paired, impact.after.currency]


async def csv_chunks(
    header: Sequence[str], rows: AsyncIterator[list[str]] | Iterable[list[str]]
) -> AsyncIterator[bytes]:
    """The CSV text of `header` and `rows`, in chunks of about `CHUNK_BYTES` (UTF-8)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)

    def drained() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    source: Any = rows
    if hasattr(source, "__aiter__"):
        async for row in source:
            writer.writerow(row)
            if buffer.tell() >= CHUNK_BYTES:
                yield drained()
    else:
        for row in source:
            writer.writerow(row)
            if buffer.tell() >= CHUNK_BYTES:
                yield drained()
    rest = drained()
    if rest:
        yield rest


class CsvExports:
    """The catalog's CSV exports, for every tenant."""

    def __init__(self, entities: Entities, objectives: Objectives, scenarios: Scenarios) -> None:
        self._entities = entities
        self._objectives = objectives
        self._scenarios = scenarios

    async def entities(self, principal: Principal) -> AsyncIterator[bytes]:
        """Every entity, by name."""
        rows = await self._entities.all(principal)
        return csv_chunks(ENTITY_COLUMNS, (entity_row(row, spec_of(row)) for row in rows))

    async def slos(self, principal: Principal) -> AsyncIterator[bytes]:
        """Every SLO of every entity with its budget now, by entity and SLO."""
        rows = await self._entities.all(principal)

        async def statuses() -> AsyncIterator[list[str]]:
            for row in rows:
                for slo in spec_of(row).slos:
                    yield slo_row(await self._objectives.status(principal, row.name, slo.name))

        return csv_chunks(SLO_COLUMNS, statuses())

    async def scenario(self, principal: Principal, scenario_id: str) -> AsyncIterator[bytes]:
        """A saved scenario's results, as when it was saved.

        Raises:
            NotFound: No scenario has that id.
        """
        saved = await self._scenarios.get(principal, scenario_id, opened=False)
        return csv_chunks(SCENARIO_COLUMNS, scenario_rows(saved.row.id, saved.impacts))
