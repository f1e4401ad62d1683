"""Catalog acceptance: shareable scenarios reproduce, CSV round-trips, the budget link works.

The lane builds a small catalog in a tenant of its own, through the SDK as a
client would: a database, two caches in a 1-of-2 group, an API whose title,
owner and description are hostile to spreadsheets and CSV parsers, and a web
front end, with SLOs and a minute of recorded events. Then:

- **Scenarios.** A what-if is run, saved (a content-addressed share id; saving
  again changes nothing) and opened by another user of the tenant who may only
  read the catalog (over the SDK and through the registered GraphQL `Scenario`
  operation, as the console's share link does); it is re-run from the
  overrides it was read back with, and opened again after the catalog moved on.
  Every figure of every entity must be identical each time. Another tenant must
  not find the share (ids are per tenant: NOT_FOUND).
- **CSV.** The entities, SLOs and scenario exports are parsed with Python's csv
  module and compared, cell by cell, with what the API says (a text cell a
  spreadsheet would run keeps its leading apostrophe, which is taken off before
  comparing; numbers must read back to the same float). There is no CSV import:
  the catalog goes back in through its YAML export (`ExportCatalog` into a new
  tenant's `ImportCatalog`), whose entities CSV must then equal the first one
  but for the per-tenant columns (etag and times).
- **Budget link.** A Billing cost budget is set and spent on (usage on its
  meter); an entity and the saved scenario are linked to budgets; the figures the
  catalog shows (SDK, what-if results, GraphQL) must be Billing's own
  (`GetBudget`), a reader without billing.read sees the link but no figures, and
  linking an unknown budget is NOT_FOUND.

Raw results: `scenario.json`, `csv.json` (the exported texts and every
difference), `budget.json`.
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import AsyncClient, ConductorError, NotFoundError, PermissionDeniedError
from intelgraph.sdk import catalog as pb
from intelgraph.sdk.billing import Budget, SetBudgetRequest
from intelgraph.sdk.money import Money

from servers.acceptance.checks import Context, Criterion, persisted_operations, refusal

LANE = "catalog"

WRITER_SCOPES = (
    "catalog.read",
    "catalog.write",
    "billing.read",
    "billing.write",
    "billing.usage.write",
)
VIEWER_SCOPES = ("catalog.read",)
WRITER = "acceptance-catalog"
VIEWER = "acceptance-viewer"


SCENARIOS = Criterion(
    "shareable scenarios reproduce",
    "identical results when saved, re-saved, opened by another user, re-run, opened after the "
    "catalog changed; another tenant cannot open it",
)
CSV_ROUND_TRIP = Criterion(
    "CSV round-trips",
    "every cell reads back to the API's value; export, import, export: equal",
)
BUDGET_LINK = Criterion(
    "budget link works",
    "the catalog shows Billing's figures for linked entities and scenarios",
)

#: The documented CSV columns (docs/catalog.md), in order; new ones are only appended.
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
#: Columns that differ between tenants holding the same catalog.
PER_TENANT_COLUMNS = frozenset({"etag", "created_at", "updated_at"})
#: A text cell starting with one of these is exported with a leading apostrophe.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: Text a spreadsheet would run, and a CSV parser could trip on.
HOSTILE = {
    "title": '=HYPERLINK("http://evil.example","open me")',
    "owner": '+team-shop, "quoted"',
    "description": '-2+3\r\nline two, with commas\n"and quotes", naïve ünïcode ✓',
}
#: The scenario shared: a more available database and twice the web traffic.
OVERRIDES = (
    pb.EntityOverride(entity="db", availability=0.9999),
    pb.EntityOverride(entity="web", requests_per_second=50.0),
)
ENTITY_BUDGET = "acceptance-api"
SCENARIO_BUDGET = "acceptance-db-ha"
BUDGET_METER = "api.call"
BUDGET_USAGE = 1234

# -- helpers ---------------------------------------------------------------------------------


def as_json(message: Message) -> dict[str, Any]:
    """A message as JSON data (field names as in the contract, defaults included)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def graphql_overrides(overrides: Iterable[pb.EntityOverride]) -> list[dict[str, Any]]:
    """Scenario overrides as GraphQL `EntityOverrideInput` values."""
    return [json_format.MessageToDict(override) for override in overrides]


def minute(moment: datetime) -> Timestamp:
    """The whole minute `moment` falls in."""
    stamp = Timestamp()
    stamp.FromDatetime(moment.replace(second=0, microsecond=0))
    return stamp


@dataclass
class Differences:
    """What was compared, and every difference found (one sentence each)."""

    compared: int = 0
    found: list[str] = field(default_factory=list)

    def add(self, compared: int, found: Iterable[str]) -> None:
        """Count `compared` comparisons and the differences they found."""
        self.compared += compared
        self.found.extend(found)

    def same(self, what: str, actual: object, expected: object) -> None:
        """Compare one value."""
        self.add(1, [] if actual == expected else [f"{what}: {actual!r}, expected {expected!r}"])

    def refused(self, what: str, error: ConductorError | None, expected: type[Exception]) -> None:
        """Expect a call to have been refused with `expected`."""
        problem = (
            []
            if isinstance(error, expected)
            else [f"{what}: {error!r}, expected {expected.__name__}"]
        )
        self.add(1, problem)

    def detail(self, done: str) -> str:
        """What was done, then the first differences."""
        if not self.found:
            return done
        return f"{done} Differences: " + "; ".join(self.found[:5])


# -- judgments (pure: the tests feed them bad data) ------------------------------------------


def impact_differences(
    what: str, actual: Sequence[pb.EntityImpact], expected: Sequence[pb.EntityImpact]
) -> tuple[int, list[str]]:
    """Compare two scenario results figure by figure: (figures compared, differences)."""
    found: list[str] = []
    if [i.entity for i in actual] != [i.entity for i in expected]:
        found.append(
            f"{what}: entities {[i.entity for i in actual]}, expected "
            f"{[i.entity for i in expected]}"
        )
    compared = 0
    for mine, theirs in zip(actual, expected, strict=False):
        for side in ("before", "after"):
            left, right = getattr(mine, side), getattr(theirs, side)
            for descriptor in pb.Reliability.DESCRIPTOR.fields:
                compared += 1
                if getattr(left, descriptor.name) != getattr(right, descriptor.name):
                    found.append(
                        f"{what}: {mine.entity} {side} {descriptor.name} is "
                        f"{getattr(left, descriptor.name)!r}, expected "
                        f"{getattr(right, descriptor.name)!r}"
                    )
    return compared, found


def neutralised(value: str) -> str:
    """A text value as the export writes it: a leading apostrophe if it looks like a formula.

    >>> neutralised("=SUM(A1)"), neutralised("plain")
    ("'=SUM(A1)", 'plain')
    """
    return "'" + value if value.startswith(FORMULA_START) else value


def plain(cell: str) -> str:
    """A text cell as it was before the export neutralised it ("'=x" -> "=x").

    >>> plain("'=SUM(A1)"), plain("'quoted"), plain("x")
    ('=SUM(A1)', "'quoted", 'x')
    """
    return cell[1:] if cell.startswith("'") and cell[1:2].startswith(FORMULA_START) else cell


def enum_cell(name: str, prefix: str) -> str:
    """How the CSV writes an enum value: "ENTITY_KIND_RESOURCE" -> "resource"."""
    return name.removeprefix(prefix).lower()


def dependencies_cell(entity: pb.Entity) -> str:
    """The documented dependencies cell: "db; cache-a|cache-b (1 of 2, caches)"."""
    parts = []
    for dependency in entity.dependencies:
        part = "|".join(dependency.targets)
        if len(dependency.targets) > 1 or dependency.group:
            detail = f"{dependency.required or 1} of {len(dependency.targets)}"
            part += f" ({detail}, {dependency.group})" if dependency.group else f" ({detail})"
        parts.append(part)
    return "; ".join(parts)


def number_matches(cell: str, value: float | None) -> bool:
    """Whether a number cell reads back to exactly `value` (empty for None)."""
    if value is None:
        return cell == ""
    try:
        return float(cell) == value
    except ValueError:
        return False


def time_matches(cell: str, stamp: Timestamp) -> bool:
    """Whether an ISO 8601 cell is the same instant as `stamp`."""
    try:
        return datetime.fromisoformat(cell) == stamp.ToDatetime(tzinfo=UTC)
    except ValueError:
        return False


def entity_row_differences(
    row: Mapping[str, str], entity: pb.Entity, *, per_tenant: bool = True
) -> tuple[int, list[str]]:
    """Compare an entities CSV row with the entity as the API returns it.

    A text cell must be exactly the documented encoding of the value (neutralised
    when it looks like a formula) and must read back to the value.
    """
    texts = {
        "name": entity.name,
        "kind": enum_cell(pb.EntityKind.Name(entity.kind), "ENTITY_KIND_"),
        "title": entity.title,
        "description": entity.description,
        "owner": entity.owner,
        "lifecycle": enum_cell(pb.Lifecycle.Name(entity.lifecycle), "LIFECYCLE_"),
        "system": entity.system,
        "tags": ";".join(entity.tags),
        "dependencies": dependencies_cell(entity),
        "slos": ";".join(slo.name for slo in entity.slos),
        "budget_id": entity.budget.budget_id,
    }
    if per_tenant:
        texts["etag"] = entity.etag
    found = []
    for column, value in texts.items():
        cell = row.get(column, "")
        if cell != neutralised(value):
            found.append(f"{entity.name} {column}: {cell!r}, expected {neutralised(value)!r}")
        elif plain(cell) != value:
            found.append(f"{entity.name} {column}: {cell!r} reads back as {plain(cell)!r}")
    expected = entity.expected_availability if entity.HasField("expected_availability") else None
    numbers = {
        "expected_availability": expected,
        "requests_per_second": entity.requests_per_second,
    }
    found += [
        f"{entity.name} {column}: {row.get(column)!r} does not read back as {value!r}"
        for column, value in numbers.items()
        if not number_matches(row.get(column, ""), value)
    ]
    compared = len(texts) + len(numbers)
    if per_tenant:
        compared += 2
        found += [
            f"{entity.name} {column}: {row.get(column)!r} is not the API's time"
            for column, stamp in (
                ("created_at", entity.created_at),
                ("updated_at", entity.updated_at),
            )
            if not time_matches(row.get(column, ""), stamp)
        ]
    return compared, found


def slo_row_differences(row: Mapping[str, str], status: pb.SloStatus) -> tuple[int, list[str]]:
    """Compare an SLOs CSV row with GetSloStatus (the figures that do not move with the clock)."""
    budget = status.budget
    numbers = {
        "objective": budget.objective,
        "total_events": float(budget.total_events),
        "bad_events": float(budget.bad_events),
        "attainment": budget.attainment,
        "error_budget": budget.error_budget,
        "burn_rate": budget.burn_rate,
        "time_budget_minutes": budget.time_budget_seconds / 60,
    }
    found = [
        f"{status.entity}/{status.slo} {column}: {row.get(column)!r} is not {value!r}"
        for column, value in numbers.items()
        if not number_matches(row.get(column, ""), value)
    ]
    for column, value in (("entity", status.entity), ("slo", status.slo)):
        if row.get(column) != value:
            found.append(f"{column}: {row.get(column)!r}, expected {value!r}")
    return len(numbers) + 2, found


def _figure_cells(figures: pb.Reliability) -> dict[str, Any]:
    """A Reliability's figures keyed as the scenario CSV's columns (before the side suffix)."""
    return {
        "availability": figures.availability,
        "source": enum_cell(pb.AvailabilitySource.Name(figures.source), "AVAILABILITY_SOURCE_"),
        "objective": figures.objective,
        "burn_rate": figures.burn_rate,
        "time_budget_minutes": figures.time_budget_seconds / 60,
        "allowed_bad_events": figures.allowed_bad_events,
        "expected_bad_events": figures.expected_bad_events,
        "requests_per_second": figures.requests_per_second,
        "meets_objective": "true" if figures.meets_objective else "false",
        "weakest_link": figures.weakest_link.entity,
        "monthly_cost": (
            float(figures.monthly_cost.minor_units) if figures.HasField("monthly_cost") else None
        ),
    }


def scenario_row_differences(
    row: Mapping[str, str], scenario_id: str, impact: pb.EntityImpact
) -> tuple[int, list[str]]:
    """Compare a scenario CSV row with the scenario's result for that entity."""
    found = []
    if (row.get("scenario_id"), row.get("entity")) != (scenario_id, impact.entity):
        found.append(f"row {row.get('entity')!r} is not {impact.entity} of {scenario_id}")
    compared = 1
    for side in ("before", "after"):
        for column, value in _figure_cells(getattr(impact, side)).items():
            compared += 1
            cell = row.get(f"{column}_{side}", "")
            same = cell == value if isinstance(value, str) else number_matches(cell, value)
            if not same:
                found.append(f"{impact.entity} {column}_{side}: {cell!r}, expected {value!r}")
    return compared, found


def rows_differences(
    what: str, actual: Sequence[Mapping[str, str]], expected: Sequence[Mapping[str, str]]
) -> tuple[int, list[str]]:
    """Compare two CSV exports cell by cell, the per-tenant columns aside."""
    found = []
    if len(actual) != len(expected):
        found.append(f"{what}: {len(actual)} rows, expected {len(expected)}")
    compared = 0
    for mine, theirs in zip(actual, expected, strict=False):
        for column in theirs:
            if column in PER_TENANT_COLUMNS:
                continue
            compared += 1
            if mine.get(column) != theirs[column]:
                found.append(
                    f"{what}: {theirs.get('name')} {column} {mine.get(column)!r}, "
                    f"expected {theirs[column]!r}"
                )
    return compared, found


def budget_differences(
    what: str, link: pb.BudgetLink, budget: Budget, *, figures: bool = True
) -> tuple[int, list[str]]:
    """Compare a catalog budget link with the budget as Billing gives it.

    With `figures`, the link must carry Billing's name, monthly amount and spent;
    without, it must carry the budget's id only (the caller may not read Billing).
    """
    if not figures:
        shown = (link.budget_id, link.HasField("monthly_amount"), link.HasField("spent"))
        expected_hidden = (budget.id, False, False)
        if shown == expected_hidden:
            return 1, []
        return 1, [f"{what}: (id, amount shown, spent shown) {shown}, expected {expected_hidden}"]
    said = (link.budget_id, link.name, link.monthly_amount, link.spent)
    billing = (budget.id, budget.name, budget.monthly_amount, budget.spent)
    found = [
        f"{what} {name}: {mine!r}, Billing says {theirs!r}"
        for name, mine, theirs in zip(
            ("id", "name", "monthly", "spent"), said, billing, strict=True
        )
        if mine != theirs
    ]
    return 4, found


def read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """Header, rows (by column) and format problems of a CSV export (RFC 4180, UTF-8, no BOM)."""
    problems = []
    if data.startswith(b"\xef\xbb\xbf"):
        problems.append("the export starts with a byte-order mark")
    if data and not data.endswith(b"\r\n"):
        problems.append("the export's records do not end with CRLF")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return [], [], [*problems, "the export is not UTF-8"]
    records = list(csv.reader(io.StringIO(text, newline="")))
    if not records:
        return [], [], [*problems, "the export is empty"]
    header = records[0]
    rows = []
    for record in records[1:]:
        if len(record) != len(header):
            problems.append(f"a record has {len(record)} cells, the header {len(header)}")
        rows.append(dict(zip(header, record, strict=False)))
    return header, rows, problems


# -- the catalog the lane builds -------------------------------------------------------------


def the_catalog() -> list[pb.Entity]:
    """The entities, dependencies first."""
    return [
        pb.Entity(
            kind=pb.ENTITY_KIND_RESOURCE,
            name="db",
            owner="team-data",
            expected_availability=0.995,
        ),
        pb.Entity(
            kind=pb.ENTITY_KIND_COMPONENT,
            name="cache-a",
            owner="team-a",
            expected_availability=0.99,
        ),
        pb.Entity(
            kind=pb.ENTITY_KIND_COMPONENT,
            name="cache-b",
            owner="team-a",
            expected_availability=0.99,
        ),
        pb.Entity(
            kind=pb.ENTITY_KIND_COMPONENT,
            name="api",
            tags=["tier-1", "python"],
            lifecycle=pb.LIFECYCLE_PRODUCTION,
            dependencies=[
                pb.Dependency(targets=["db"]),
                pb.Dependency(targets=["cache-a", "cache-b"], required=1, group="caches"),
            ],
            slos=[pb.Slo(name="availability", objective=0.99)],
            expected_availability=0.999,
            requests_per_second=12.345678901234567,
            title=HOSTILE["title"],
            owner=HOSTILE["owner"],
            description=HOSTILE["description"],
        ),
        pb.Entity(
            kind=pb.ENTITY_KIND_COMPONENT,
            name="web",
            owner="team-web",
            lifecycle=pb.LIFECYCLE_EXPERIMENTAL,
            dependencies=[pb.Dependency(targets=["api"])],
            slos=[
                pb.Slo(
                    name="availability",
                    objective=0.999,
                    window=pb.TimeWindow(calendar=pb.CALENDAR_PERIOD_MONTH),
                )
            ],
            expected_availability=0.9999,
            requests_per_second=25.0,
        ),
    ]


async def build(client: AsyncClient) -> None:
    """Create the catalog and record a minute of the API's events (1% errors)."""
    for entity in the_catalog():
        await client.catalog.create_entity(entity=entity)
    await client.catalog.record_slo_events(
        entity="api",
        slo="availability",
        minutes=[
            pb.MinuteEvents(
                minute=minute(datetime.now(UTC) - timedelta(minutes=2)),
                good_events=990,
                total_events=1000,
            )
        ],
    )


async def export(
    client: AsyncClient, kind: pb.CsvExportKind.ValueType, scenario: str = ""
) -> bytes:
    """One CSV export, whole."""
    chunks = [
        chunk.data async for chunk in client.catalog.export_csv(kind=kind, scenario_id=scenario)
    ]
    return b"".join(chunks)


async def graphql_data(
    context: Context, token: str, query: str, variables: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """A GraphQL operation's data, and what went wrong (an HTTP status, errors)."""
    status, body, _ = await context.graphql(token, query, variables)
    if status != 200 or body.get("errors") or not body.get("data"):
        return {}, [f"GraphQL answered {status}: {body.get('errors')}"]
    data: dict[str, Any] = body["data"]
    return data, []


# -- the criteria ----------------------------------------------------------------------------


@dataclass
class Shared:
    """What one criterion leaves for the next: the saved scenario's share id, once saved."""

    share: str = ""


async def check_scenarios(
    context: Context, tenant: uuid.UUID, writer: AsyncClient, viewer: AsyncClient, shared: Shared
) -> None:
    """Record "shareable scenarios reproduce"; keep the share id in `shared`."""
    seen = Differences()
    scenario = pb.Scenario(name="acceptance: db upgrade, web doubled", overrides=OVERRIDES)
    ran = list((await writer.catalog.run_what_if(scenario=scenario)).impacts)
    saved = await writer.catalog.save_scenario(scenario=scenario)
    share = shared.share = saved.scenario.id
    seen.same("a new scenario is created", saved.created, True)
    seen.add(*impact_differences("saved", list(saved.impacts), ran))
    again = await writer.catalog.save_scenario(scenario=scenario)
    seen.same("saving it again: (id, created)", (again.scenario.id, again.created), (share, False))

    opened = await viewer.catalog.get_scenario(id=share)
    seen.add(*impact_differences("opened by a reader", list(opened.impacts), ran))
    seen.same("opened by a reader: catalog changed", opened.scenario.catalog_changed, False)
    rerun = await viewer.catalog.run_what_if(
        scenario=pb.Scenario(overrides=opened.scenario.overrides)
    )
    seen.add(*impact_differences("re-run from the shared overrides", list(rerun.impacts), ran))

    viewer_token = context.token(tenant, VIEWER_SCOPES, subject=VIEWER)
    data, problems = await graphql_data(
        context, viewer_token, persisted_operations()["Scenario"].document, {"id": share}
    )
    seen.add(1, problems)
    through_graphql = [
        (i["entity"], i["before"]["availability"], i["after"]["availability"])
        for i in (data.get("scenario") or {}).get("impacts", [])
    ]
    seen.same(
        "opened through GraphQL (entity, availability before, after)",
        through_graphql,
        [(i.entity, i.before.availability, i.after.availability) for i in ran],
    )

    async with context.client(context.tenant(), VIEWER_SCOPES, subject=VIEWER) as stranger:
        seen.refused(
            "another tenant opening the share",
            await refusal(stranger.catalog.get_scenario(id=share)),
            NotFoundError,
        )

    # The catalog moves on: the share still shows what it showed, and says so.
    db = (await writer.catalog.get_entity(name="db")).entity
    db.expected_availability = 0.9
    await writer.catalog.update_entity(entity=db)
    later = await viewer.catalog.get_scenario(id=share)
    seen.add(*impact_differences("opened after the catalog changed", list(later.impacts), ran))
    seen.same(
        "opened after the catalog changed: catalog changed", later.scenario.catalog_changed, True
    )

    context.raw(
        "scenario",
        {
            "share_id": share,
            "overrides": [as_json(override) for override in OVERRIDES],
            "run": [as_json(impact) for impact in ran],
            "opened_by_reader": as_json(opened),
            "rerun": [as_json(impact) for impact in rerun.impacts],
            "graphql": data,
            "after_catalog_change": as_json(later),
            "differences": seen.found,
        },
    )
    context.check(
        SCENARIOS.name,
        threshold=SCENARIOS.threshold,
        measured=f"{seen.compared} figures compared, {len(seen.found)} differences",
        passed=not seen.found,
        value=float(len(seen.found)),
        detail=seen.detail(
            f"Scenario {share[:12]}… over {len(ran)} entities, opened over the SDK and GraphQL."
        ),
    )


async def scenario_csv(writer: AsyncClient, share: str, seen: Differences) -> tuple[bytes, int]:
    """Compare the saved scenario's CSV with its results; the export and its row count."""
    data = await export(writer, pb.CSV_EXPORT_KIND_SCENARIO, share)
    header, rows, problems = read_csv(data)
    seen.add(1, problems)
    seen.same("scenario header", header, list(SCENARIO_COLUMNS))
    impacts = list((await writer.catalog.get_scenario(id=share)).impacts)
    seen.same("scenario rows", [r.get("entity") for r in rows], [i.entity for i in impacts])
    for row, impact in zip(rows, impacts, strict=False):
        seen.add(*scenario_row_differences(row, share, impact))
    return data, len(rows)


async def check_csv(context: Context, writer: AsyncClient, share: str) -> None:
    """Record "CSV round-trips"."""
    seen = Differences()
    entities = [entity async for entity in writer.catalog.iter_entities()]
    exported = await export(writer, pb.CSV_EXPORT_KIND_ENTITIES)
    header, rows, problems = read_csv(exported)
    seen.add(1, problems)
    seen.same("entities header", header, list(ENTITY_COLUMNS))
    by_name = {row.get("name", ""): row for row in rows}
    seen.same("entities exported", sorted(by_name), sorted(e.name for e in entities))
    for entity in entities:
        seen.add(*entity_row_differences(by_name.get(entity.name, {}), entity))

    slo_data = await export(writer, pb.CSV_EXPORT_KIND_SLOS)
    slo_header, slo_rows, problems = read_csv(slo_data)
    seen.add(1, problems)
    seen.same("SLOs header", slo_header, list(SLO_COLUMNS))
    for row in slo_rows:
        status = (
            await writer.catalog.get_slo_status(entity=row.get("entity", ""), slo=row.get("slo"))
        ).status
        seen.add(*slo_row_differences(row, status))

    scenario_data, scenario_rows = await scenario_csv(writer, share, seen) if share else (b"", 0)

    # Back in: the YAML export into a new tenant, whose entities CSV must be the same.
    async with context.client(context.tenant(), WRITER_SCOPES, subject=WRITER) as other:
        await other.catalog.import_catalog(yaml=(await writer.catalog.export_catalog()).yaml)
        imported = await export(other, pb.CSV_EXPORT_KIND_ENTITIES)
    _, imported_rows, problems = read_csv(imported)
    seen.add(1, problems)
    seen.add(*rows_differences("imported into another tenant", imported_rows, rows))

    context.raw(
        "csv",
        {
            "entities_csv": exported.decode(errors="replace"),
            "slos_csv": slo_data.decode(errors="replace"),
            "scenario_csv": scenario_data.decode(errors="replace"),
            "reimported_entities_csv": imported.decode(errors="replace"),
            "differences": seen.found,
        },
    )
    context.check(
        CSV_ROUND_TRIP.name,
        threshold=CSV_ROUND_TRIP.threshold,
        measured=f"{seen.compared} cells compared, {len(seen.found)} differences",
        passed=not seen.found,
        value=float(len(seen.found)),
        detail=seen.detail(
            f"Entities ({len(rows)} rows, formula-like text included), SLOs ({len(slo_rows)}) "
            + (
                f"and scenario ({scenario_rows}) exports"
                if share
                else "exports (no saved scenario to export)"
            )
            + " parsed with the csv module; the catalog re-imported (YAML) into a new tenant "
            "exports the same entities CSV."
        ),
    )


async def link_scenario(
    context: Context, token: str, writer: AsyncClient, share: str, seen: Differences
) -> dict[str, Any]:
    """Link the saved scenario to a budget; compare what the catalog shows (SDK, GraphQL)."""
    budget = (await writer.billing.get_budget(id=SCENARIO_BUDGET)).budget
    linked = (
        await writer.catalog.link_budget(scenario_id=share, budget_id=SCENARIO_BUDGET)
    ).scenario
    seen.add(*budget_differences("linked scenario", linked.budget, budget))
    opened, problems = await graphql_data(
        context, token, persisted_operations()["Scenario"].document, {"id": share}
    )
    seen.add(1, problems)
    shown = ((opened.get("scenario") or {}).get("scenario") or {}).get("budget") or {}
    seen.same(
        "the scenario's budget through GraphQL",
        shown,
        {
            "budgetId": SCENARIO_BUDGET,
            "monthlyAmount": {
                "minorUnits": str(budget.monthly_amount.minor_units),
                "currencyCode": budget.monthly_amount.currency_code,
            },
        },
    )
    return {"budget": as_json(budget), "linked": as_json(linked), "graphql": opened}


async def check_budget_link(
    context: Context, tenant: uuid.UUID, writer: AsyncClient, viewer: AsyncClient, share: str
) -> None:
    """Record "budget link works"."""
    seen = Differences()
    currency = (await writer.billing.get_billing_profile()).profile.currency_code or "USD"
    prices = {p.meter: p for p in (await writer.billing.get_price_book()).prices}
    price = prices[BUDGET_METER]
    for budget_id, name, amount, meters in (
        (ENTITY_BUDGET, "API hosting", 120_000, [BUDGET_METER]),
        (SCENARIO_BUDGET, "Database HA", 50_000, []),
    ):
        await writer.billing.set_budget(
            SetBudgetRequest(
                budget=Budget(
                    id=budget_id,
                    name=name,
                    monthly_amount=Money(minor_units=amount, currency_code=currency),
                    meters=meters,
                )
            )
        )
    await writer.billing.record_usage(
        event_id=f"acceptance-{uuid.uuid4()}", meter=BUDGET_METER, quantity=BUDGET_USAGE
    )
    budget = (await writer.billing.get_budget(id=ENTITY_BUDGET)).budget
    rated = Fraction(BUDGET_USAGE * price.unit_price.minor_units, price.per_quantity or 1)
    seen.same(
        "the budget's spent (usage rated, half up)",
        budget.spent.minor_units,
        math.floor(rated + Fraction(1, 2)),
    )

    linked = (await writer.catalog.link_budget(entity="api", budget_id=ENTITY_BUDGET)).entity
    seen.add(*budget_differences("linked entity", linked.budget, budget))
    read = (await writer.catalog.get_entity(name="api")).entity
    seen.add(*budget_differences("entity read back", read.budget, budget))
    hidden = (await viewer.catalog.get_entity(name="api")).entity
    seen.add(
        *budget_differences(
            "entity read without billing.read", hidden.budget, budget, figures=False
        )
    )
    seen.refused(
        "linking without billing.read",
        await refusal(viewer.catalog.link_budget(entity="web", budget_id=ENTITY_BUDGET)),
        PermissionDeniedError,
    )
    seen.refused(
        "linking a budget Billing does not have",
        await refusal(writer.catalog.link_budget(entity="web", budget_id="acceptance-none")),
        NotFoundError,
    )

    ran = (await writer.catalog.run_what_if(scenario=pb.Scenario(overrides=OVERRIDES))).impacts
    api = next((impact for impact in ran if impact.entity == "api"), None)
    seen.same(
        "what-if monthly cost of the api (before, after)",
        (api.before.monthly_cost, api.after.monthly_cost) if api else None,
        (budget.monthly_amount, budget.monthly_amount),
    )
    token = context.token(tenant, WRITER_SCOPES, subject=WRITER)
    what_if, problems = await graphql_data(
        context,
        token,
        persisted_operations()["WhatIf"].document,
        {"overrides": graphql_overrides(OVERRIDES)},
    )
    seen.add(1, problems)
    costs = {
        impact["entity"]: impact["before"]["monthlyCost"]
        for impact in (what_if.get("runWhatIf") or {}).get("impacts", [])
    }
    seen.same(
        "what-if monthly cost of the api through GraphQL",
        costs.get("api"),
        {"minorUnits": str(budget.monthly_amount.minor_units), "currencyCode": currency},
    )

    scenario_raw = await link_scenario(context, token, writer, share, seen) if share else {}
    unlinked = (await writer.catalog.link_budget(entity="api", budget_id="")).entity
    seen.same("a link left after unlinking", unlinked.HasField("budget"), False)

    context.raw(
        "budget",
        {
            "budget": as_json(budget),
            "linked_entity": as_json(linked),
            "entity_without_billing_read": as_json(hidden),
            "what_if": [as_json(impact) for impact in ran],
            "what_if_graphql": what_if,
            "scenario": scenario_raw,
            "differences": seen.found,
        },
    )
    context.check(
        BUDGET_LINK.name,
        threshold=BUDGET_LINK.threshold,
        measured=f"{seen.compared} figures compared, {len(seen.found)} differences",
        passed=not seen.found,
        value=float(len(seen.found)),
        detail=seen.detail(
            f"Budget {ENTITY_BUDGET} ({budget.spent.minor_units} of "
            f"{budget.monthly_amount.minor_units} {currency} spent) linked to the api and "
            + (f"{SCENARIO_BUDGET} to the shared scenario" if share else "no scenario saved")
            + "; read over the SDK, in what-if results "
            "and through GraphQL; hidden without billing.read."
        ),
    )


async def run(context: Context) -> None:
    """Build a catalog in a new tenant and check the Catalog criteria."""
    tenant = context.tenant()
    context.showcase["catalog"] = tenant  # the console page the evidence bundle shows
    shared = Shared()
    async with (
        context.client(tenant, WRITER_SCOPES, subject=WRITER) as writer,
        context.client(tenant, VIEWER_SCOPES, subject=VIEWER) as viewer,
    ):
        await build(writer)
        await context.guarded(SCENARIOS, check_scenarios(context, tenant, writer, viewer, shared))
        await context.guarded(CSV_ROUND_TRIP, check_csv(context, writer, shared.share))
        await context.guarded(
            BUDGET_LINK, check_budget_link(context, tenant, writer, viewer, shared.share)
        )
