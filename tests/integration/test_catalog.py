"""The Catalog through the SDK: entities, dependencies, SLOs and budgets, availability, what-if."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import (
    AbortedError,
    AlreadyExistsError,
    ErrorReason,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from intelgraph.sdk import catalog as pb
from intelgraph.sdk.billing import Budget, SetBudgetRequest
from intelgraph.sdk.money import Money
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncBillingClient, AsyncCatalogClient

from servers.app import Platform
from servers.catalog import exports
from servers.facade import DEFAULT_OPERATIONS_DIR
from servers.facade.operations import operation_id
from tests.support.clients import SdkClients
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

WRITER = ["catalog.read", "catalog.write"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("catalog"),
        database_url=module_database_url,
        services="catalog,billing",
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def clients(platform: Platform) -> AsyncIterator[SdkClients]:
    async with contextlib.AsyncExitStack() as closing:
        yield SdkClients(platform.grpc_target, closing)


@dataclass
class Tenant:
    id: uuid.UUID
    catalog: AsyncCatalogClient
    billing: AsyncBillingClient


def tenant_of(
    platform: Platform,
    clients: SdkClients,
    scopes: list[str] = WRITER,
    tenant: uuid.UUID | None = None,
) -> Tenant:
    tenant = tenant or uuid.uuid4()
    client = clients.bearing(Minter(platform.settings)(scopes, tenant=tenant))
    return Tenant(tenant, client.catalog, client.billing)


@pytest.fixture
def tenant(platform: Platform, clients: SdkClients) -> Tenant:
    return tenant_of(platform, clients)


def component(name: str, *depends: str, **fields: object) -> pb.Entity:
    values: dict[str, object] = {
        "kind": pb.ENTITY_KIND_COMPONENT,
        "name": name,
        "owner": "team-a",
        "dependencies": [pb.Dependency(targets=[target]) for target in depends],
        **fields,
    }
    return pb.Entity(**values)  # type: ignore[arg-type]


def availability_slo(objective: float = 0.999, **fields: object) -> pb.Slo:
    return pb.Slo(name="availability", objective=objective, **fields)  # type: ignore[arg-type]


async def create(tenant: Tenant, *entities: pb.Entity) -> list[pb.Entity]:
    return [(await tenant.catalog.create_entity(entity=e)).entity for e in entities]


def minute_stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.replace(second=0, microsecond=0))
    return stamp


# Entities


async def test_an_entity_round_trips_with_its_fields(tenant: Tenant) -> None:
    await create(
        tenant,
        pb.Entity(kind=pb.ENTITY_KIND_SYSTEM, name="payments"),
        component("db", kind=pb.ENTITY_KIND_RESOURCE),
    )
    sent = component(
        "billing-api",
        "db",
        title="Billing API",
        description="Invoices and credit notes",
        lifecycle=pb.LIFECYCLE_PRODUCTION,
        tags=["tier-1", "java"],
        links=[pb.Link(url="https://runbooks.example/billing", title="Runbook")],
        system="payments",
        slos=[availability_slo(window=pb.TimeWindow(rolling_days=28))],
        expected_availability=0.9995,
        requests_per_second=120.0,
    )
    created = (await create(tenant, sent))[0]
    read = (await tenant.catalog.get_entity(name="billing-api")).entity
    assert read == created
    assert read.tags == ["java", "tier-1"]  # kept sorted
    assert read.dependencies[0].required == 1
    assert read.slos[0].window.rolling_days == 28
    assert read.slos[0].budgeting_method == pb.BUDGETING_METHOD_OCCURRENCES
    assert read.etag
    assert read.id
    assert read.created_at.seconds


async def test_names_are_unique_within_a_tenant_not_across(
    platform: Platform, clients: SdkClients
) -> None:
    first, second = tenant_of(platform, clients), tenant_of(platform, clients)
    await create(first, component("api"))
    with pytest.raises(AlreadyExistsError):
        await create(first, component("api"))
    await create(second, component("api"))  # the other tenant's name is not seen
    with pytest.raises(NotFoundError):
        await second.catalog.get_entity(name="missing")
    names = [e.name for e in (await first.catalog.list_entities()).entities]
    assert names == ["api"]


@pytest.mark.parametrize(
    ("entity", "field"),
    [
        (component("Bad_Name"), "name"),
        (component("ok", tags=["Upper"]), "tags[0]"),
        (component("ok", links=[pb.Link(url="javascript:alert(1)")]), "links[0].url"),
        (component("ok", slos=[availability_slo(1.0)]), "slos[0].objective"),
        (component("ok", slos=[availability_slo(0.0)]), "slos[0].objective"),
        (
            component("ok", slos=[availability_slo(window=pb.TimeWindow(rolling_days=0))]),
            "slos[0].window",
        ),
        (
            component("ok", slos=[availability_slo(), availability_slo()]),
            "slos",
        ),
        (
            component(
                "ok",
                slos=[availability_slo(indicator=pb.Indicator(bad_query="x", total_query="y"))],
            ),
            "slos[0].indicator.bad_query",
        ),
        (
            component("ok", dependencies=[pb.Dependency(targets=["a", "b"], required=3)]),
            "dependencies[0].required",
        ),
        (component("ok", "ok"), "dependencies[0].targets"),
        (pb.Entity(name="no-kind"), "kind"),
    ],
)
async def test_bad_entities_are_refused_naming_the_field(
    tenant: Tenant, entity: pb.Entity, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await create(tenant, entity)
    assert refused.value.metadata["field"].startswith(f"entity.{field}"), refused.value.metadata


async def test_unknown_dependencies_and_systems_are_refused(tenant: Tenant) -> None:
    with pytest.raises(FailedPreconditionError) as refused:
        await create(tenant, component("api", "ghost"))
    assert refused.value.reason == ErrorReason.ERROR_REASON_UNKNOWN_ENTITY
    assert refused.value.metadata["entity"] == "ghost"
    await create(tenant, component("db"))
    with pytest.raises(InvalidArgumentError):
        await create(tenant, component("api", system="db"))  # not a system


async def test_updates_need_the_current_etag(tenant: Tenant) -> None:
    (created,) = await create(tenant, component("api", owner="team-a"))
    changed = pb.Entity()
    changed.CopyFrom(created)
    changed.owner = "team-b"
    updated = (await tenant.catalog.update_entity(entity=changed)).entity
    assert updated.owner == "team-b"
    assert updated.etag != created.etag
    stale = pb.Entity()
    stale.CopyFrom(created)
    stale.owner = "team-c"
    with pytest.raises(AbortedError) as refused:
        await tenant.catalog.update_entity(entity=stale)
    assert refused.value.reason == ErrorReason.ERROR_REASON_ETAG_MISMATCH
    assert refused.value.metadata["etag"] == updated.etag
    assert (await tenant.catalog.get_entity(name="api")).entity.owner == "team-b"
    with pytest.raises(AbortedError):
        await tenant.catalog.delete_entity(name="api", etag=created.etag)
    kind_changed = pb.Entity()
    kind_changed.CopyFrom(updated)
    kind_changed.kind = pb.ENTITY_KIND_API
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.update_entity(entity=kind_changed)


async def test_a_cycle_is_refused_and_named(tenant: Tenant) -> None:
    await create(tenant, component("c"), component("b", "c"), component("a", "b"))
    current = (await tenant.catalog.get_entity(name="c")).entity
    closing = pb.Entity()
    closing.CopyFrom(current)
    closing.dependencies.append(pb.Dependency(targets=["a"]))
    with pytest.raises(FailedPreconditionError) as refused:
        await tenant.catalog.update_entity(entity=closing)
    assert refused.value.reason == ErrorReason.ERROR_REASON_DEPENDENCY_CYCLE
    cycle = refused.value.metadata["cycle"].split(" → ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}
    assert not (await tenant.catalog.get_entity(name="c")).entity.dependencies


async def test_an_entity_in_use_cannot_be_deleted(tenant: Tenant) -> None:
    db, _ = await create(tenant, component("db"), component("api", "db"))
    with pytest.raises(FailedPreconditionError) as refused:
        await tenant.catalog.delete_entity(name="db", etag=db.etag)
    assert refused.value.reason == ErrorReason.ERROR_REASON_ENTITY_IN_USE
    assert refused.value.metadata["dependents"] == "api"
    api = (await tenant.catalog.get_entity(name="api")).entity
    await tenant.catalog.delete_entity(name="api", etag=api.etag)
    await tenant.catalog.delete_entity(name="db", etag=db.etag)
    assert not (await tenant.catalog.list_entities()).entities


async def test_search_filters_and_pages(tenant: Tenant) -> None:
    for index in range(7):
        await create(
            tenant,
            component(
                f"svc-{index}",
                owner="team-a" if index % 2 else "team-b",
                tags=["gold"] if index < 3 else [],
                description="Handles 100% of checkout_flow" if index == 5 else "",
            ),
        )
    by_owner = await tenant.catalog.list_entities(owner="team-a")
    assert [e.name for e in by_owner.entities] == ["svc-1", "svc-3", "svc-5"]
    by_tag = await tenant.catalog.list_entities(tag="gold")
    assert [e.name for e in by_tag.entities] == ["svc-0", "svc-1", "svc-2"]
    searched = await tenant.catalog.list_entities(search="CHECKOUT_flow 100%")
    assert [e.name for e in searched.entities] == ["svc-5"]
    assert not (await tenant.catalog.list_entities(search="100_")).entities  # no wildcards
    seen, token = [], ""
    while True:
        page = await tenant.catalog.list_entities(page=PageRequest(page_size=3, page_token=token))
        seen += [e.name for e in page.entities]
        token = page.page.next_page_token
        if not token:
            break
    assert seen == [f"svc-{i}" for i in range(7)]
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.list_entities(
            owner="team-a", page=PageRequest(page_size=3, page_token=token or "bm90LW91cnM=")
        )


async def test_reading_needs_the_scope(platform: Platform, clients: SdkClients) -> None:
    reader = tenant_of(platform, clients, ["catalog.read"])
    with pytest.raises(PermissionDeniedError):
        await create(reader, component("api"))


# SLOs and error budgets


async def test_the_calculator_gives_the_workbook_figures(tenant: Tenant) -> None:
    answer = await tenant.catalog.calculate_error_budget(
        objective=0.999,
        window=pb.TimeWindow(rolling_days=30),
        total_events=1_000_000,
        bad_events=500,
    )
    budget = answer.budget
    assert math.isclose(budget.time_budget_seconds, 43.2 * 60, rel_tol=1e-12)
    assert math.isclose(budget.error_budget, 0.001, rel_tol=1e-12)
    assert math.isclose(budget.allowed_bad_events, 1000, rel_tol=1e-12)
    assert math.isclose(budget.consumed, 0.5, rel_tol=1e-12)
    assert math.isclose(budget.remaining, 0.5, rel_tol=1e-12)
    assert math.isclose(budget.burn_rate, 0.5, rel_tol=1e-12)
    # Half the budget left at half speed: a whole window to go.
    assert math.isclose(budget.exhaustion_seconds, 30 * 86400, rel_tol=1e-12)
    thresholds = [round(alert.threshold, 9) for alert in answer.alerts]
    assert thresholds == [14.4, 6.0, 1.0]
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.calculate_error_budget(objective=0.999, total_events=1, bad_events=2)
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.calculate_error_budget(objective=1.0, total_events=1)


async def test_status_follows_recorded_events_and_incidents_age_out(tenant: Tenant) -> None:
    await create(tenant, component("api", slos=[availability_slo(0.99)]))
    now = datetime.now(UTC)
    old = now - timedelta(days=40)  # outside the 30-day window
    await tenant.catalog.record_slo_events(
        entity="api",
        slo="availability",
        minutes=[pb.MinuteEvents(minute=minute_stamp(old), good_events=0, total_events=1000)],
    )
    status = (await tenant.catalog.get_slo_status(entity="api")).status
    assert status.budget.attainment == 1.0
    assert status.budget.total_events == 0
    assert not any(alert.firing for alert in status.alerts)
    recent = [now - timedelta(minutes=m) for m in range(1, 11)]
    minutes = [
        pb.MinuteEvents(minute=minute_stamp(t), good_events=800, total_events=1000) for t in recent
    ]
    await tenant.catalog.record_slo_events(entity="api", slo="availability", minutes=minutes)
    # Sent again: the same minutes replace themselves, nothing doubles.
    await tenant.catalog.record_slo_events(entity="api", slo="availability", minutes=minutes)
    status = (await tenant.catalog.get_slo_status(entity="api")).status
    assert status.budget.total_events == 10_000
    assert status.budget.bad_events == 2_000
    assert math.isclose(status.budget.attainment, 0.8)
    rates = {rate.window_seconds: rate for rate in status.burn_rates}
    assert math.isclose(rates[3600].burn_rate, 20.0)  # 20% errors on a 1% budget
    fast = next(alert for alert in status.alerts if alert.long_window_seconds == 3600)
    assert fast.firing
    assert fast.severity == "page"
    assert sum(status.daily_consumed) == pytest.approx(status.budget.consumed)


async def test_bad_minutes_are_refused(tenant: Tenant) -> None:
    await create(tenant, component("api", slos=[availability_slo()]))
    now = datetime.now(UTC)
    stamp = minute_stamp(now)
    odd = Timestamp(seconds=stamp.seconds + 7)
    for minutes, field in [
        ([pb.MinuteEvents(minute=odd, good_events=1, total_events=1)], "minutes[0].minute"),
        ([pb.MinuteEvents(minute=stamp, good_events=2, total_events=1)], "minutes[0].good_events"),
        ([pb.MinuteEvents(minute=stamp, total_events=1)] * 2, "minutes[1].minute"),
        (
            [pb.MinuteEvents(minute=minute_stamp(now + timedelta(days=1)), total_events=1)],
            "minutes[0].minute",
        ),
    ]:
        with pytest.raises(InvalidArgumentError) as refused:
            await tenant.catalog.record_slo_events(
                entity="api", slo="availability", minutes=minutes
            )
        assert refused.value.metadata["field"] == field
    with pytest.raises(NotFoundError):
        await tenant.catalog.record_slo_events(
            entity="api", slo="latency", minutes=[pb.MinuteEvents(minute=stamp, total_events=1)]
        )
    nanos = Timestamp(seconds=stamp.seconds, nanos=5)
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.record_slo_events(
            entity="api",
            slo="availability",
            minutes=[pb.MinuteEvents(minute=nanos, total_events=1)],
        )


async def test_alert_rules_are_a_prometheus_rule_file(tenant: Tenant) -> None:
    indicator = pb.Indicator(
        bad_query='sum(rate(http_requests_total{job="api",code=~"5.."}[{{window}}]))',
        total_query='sum(rate(http_requests_total{job="api"}[{{window}}]))',
    )
    await create(tenant, component("api", slos=[availability_slo(indicator=indicator)]))
    answer = await tenant.catalog.get_alert_rules(
        entity="api", runbook_url="https://runbooks.example/api"
    )
    document = yaml.safe_load(answer.rules_yaml)
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    assert "slo:sli_error:ratio_rate5m" in recorded
    assert "slo:sli_error:ratio_rate3d" in recorded
    alerts = [rule for rule in rules if "alert" in rule]
    assert len(alerts) == 3
    assert all("{{window}}" not in rule["expr"] for rule in rules)
    assert "14.4" in alerts[0]["expr"]
    assert alerts[0]["annotations"]["runbook_url"] == "https://runbooks.example/api"
    await create(tenant, component("bare", slos=[availability_slo()]))
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.get_alert_rules(entity="bare")
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.get_alert_rules(entity="api", runbook_url="javascript:alert(1)")


# Composite availability and what-if


async def build_shop(tenant: Tenant) -> None:
    await create(
        tenant,
        component("db", expected_availability=0.995),
        component("cache-a", expected_availability=0.99),
        component("cache-b", expected_availability=0.99),
        component(
            "api",
            "db",
            expected_availability=0.999,
            dependencies=[
                pb.Dependency(targets=["db"]),
                pb.Dependency(targets=["cache-a", "cache-b"], required=1, group="caches"),
            ],
            slos=[availability_slo(0.99)],
            requests_per_second=10.0,
        ),
        component("web", "api", expected_availability=0.9999, slos=[availability_slo(0.99)]),
    )


async def test_composite_availability_names_the_weakest_link(tenant: Tenant) -> None:
    await build_shop(tenant)
    answer = await tenant.catalog.get_availability(entity="web")
    api = 0.999 * 0.995 * (1 - 0.01**2)
    assert answer.availability.composite == pytest.approx(0.9999 * api, abs=1e-12)
    assert answer.availability.source == pb.AVAILABILITY_SOURCE_DECLARED
    assert [link.entity for link in answer.availability.weakest_links][:2] == ["db", "api"]
    assert {d.entity for d in answer.dependencies} == {"api", "db", "cache-a", "cache-b"}
    edges = {(e.source, e.target, e.required, e.of) for e in answer.edges}
    assert ("api", "cache-a", 1, 2) in edges
    assert ("web", "api", 1, 1) in edges


async def test_what_if_shows_before_and_after_and_saves_a_share_id(
    platform: Platform, clients: SdkClients, tenant: Tenant
) -> None:
    await build_shop(tenant)
    scenario = pb.Scenario(
        name="db upgrade",
        overrides=[pb.EntityOverride(entity="db", availability=0.9999)],
    )
    ran = await tenant.catalog.run_what_if(scenario=scenario)
    impacts = {impact.entity: impact for impact in ran.impacts}
    assert set(impacts) == {"db", "api", "web"}  # the caches are not touched
    assert impacts["web"].after.availability > impacts["web"].before.availability
    assert impacts["db"].after.source == pb.AVAILABILITY_SOURCE_SCENARIO
    api = impacts["api"]
    assert api.before.burn_rate == pytest.approx((1 - api.before.availability) / 0.01)
    assert api.before.allowed_bad_events == pytest.approx(0.01 * 10.0 * 30 * 86400)
    saved = await tenant.catalog.save_scenario(scenario=scenario)
    assert saved.created
    assert len(saved.scenario.id) == 64
    again = await tenant.catalog.save_scenario(scenario=scenario)
    assert not again.created
    assert again.scenario.id == saved.scenario.id
    opened = await tenant.catalog.get_scenario(id=saved.scenario.id)
    assert list(opened.impacts) == list(ran.impacts)
    assert not opened.scenario.catalog_changed
    # The catalog moves on; the saved scenario still shows what it showed.
    db = (await tenant.catalog.get_entity(name="db")).entity
    db.expected_availability = 0.9
    await tenant.catalog.update_entity(entity=db)
    reopened = await tenant.catalog.get_scenario(id=saved.scenario.id)
    assert list(reopened.impacts) == list(ran.impacts)
    assert reopened.scenario.catalog_changed
    renamed = await tenant.catalog.rename_scenario(id=saved.scenario.id, name="db v2")
    assert renamed.scenario.name == "db v2"
    listed = await tenant.catalog.list_scenarios()
    assert [s.id for s in listed.scenarios] == [saved.scenario.id]
    other = tenant_of(platform, clients)
    with pytest.raises(NotFoundError):
        await other.catalog.get_scenario(id=saved.scenario.id)
    await tenant.catalog.delete_scenario(id=saved.scenario.id)
    with pytest.raises(NotFoundError):
        await tenant.catalog.get_scenario(id=saved.scenario.id)


async def test_what_if_refusals(tenant: Tenant) -> None:
    await build_shop(tenant)
    cases = [
        (pb.EntityOverride(entity="ghost"), FailedPreconditionError),
        (
            pb.EntityOverride(
                entity="web", add_dependencies=[pb.Dependency(targets=["db"], required=3)]
            ),
            InvalidArgumentError,
        ),
        (
            pb.EntityOverride(entity="web", add_dependencies=[pb.Dependency(targets=["db", "db"])]),
            InvalidArgumentError,
        ),
        (
            pb.EntityOverride(
                entity="web", add_dependencies=[pb.Dependency(targets=["db"], group="<x y>")]
            ),
            InvalidArgumentError,
        ),
        (pb.EntityOverride(entity="db", remove_targets=["api"]), InvalidArgumentError),
        (pb.EntityOverride(entity="web", objective=1.0), InvalidArgumentError),
        (
            pb.EntityOverride(entity="db", add_dependencies=[pb.Dependency(targets=["web"])]),
            FailedPreconditionError,
        ),
    ]
    for override, error in cases:
        with pytest.raises(error):
            await tenant.catalog.run_what_if(scenario=pb.Scenario(overrides=[override]))
    twice = [pb.EntityOverride(entity="db", availability=0.9), pb.EntityOverride(entity="db")]
    for overrides in (twice, []):
        with pytest.raises(InvalidArgumentError) as refused:
            await tenant.catalog.run_what_if(scenario=pb.Scenario(overrides=overrides))
        assert refused.value.metadata["field"].startswith("scenario.overrides")
    removed = await tenant.catalog.run_what_if(
        scenario=pb.Scenario(
            overrides=[pb.EntityOverride(entity="api", remove_targets=["cache-a"])]
        )
    )
    api = next(impact for impact in removed.impacts if impact.entity == "api")
    assert api.after.availability == pytest.approx(0.999 * 0.995 * 0.99, abs=1e-12)


async def test_a_short_window_keeps_the_alerts_it_can_observe(tenant: Tenant) -> None:
    daily = availability_slo(window=pb.TimeWindow(rolling_days=1))
    await create(tenant, component("api", slos=[daily]))
    status = (await tenant.catalog.get_slo_status(entity="api")).status
    assert [alert.long_window_seconds for alert in status.alerts] == [3600, 21600]
    assert status.budget.window_seconds == 86400
    monthly = await tenant.catalog.calculate_error_budget(
        objective=0.999, window=pb.TimeWindow(calendar=pb.CALENDAR_PERIOD_MONTH)
    )
    assert monthly.budget.window_seconds == 31 * 86400


# CSV


async def read_csv(
    tenant: Tenant, kind: pb.CsvExportKind.ValueType, scenario_id: str = ""
) -> list[list[str]]:
    data = b"".join(
        [
            chunk.data
            async for chunk in tenant.catalog.export_csv(kind=kind, scenario_id=scenario_id)
        ]
    )
    assert not data.startswith(b"\xef\xbb\xbf")  # no byte-order mark
    assert data.endswith(b"\r\n")
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


HOSTILE = {
    "title": '=HYPERLINK("http://evil.example","click")',
    "owner": '+team, "quoted"',
    "description": '-2+3\r\nline two, with commas\n"and quotes" and naïve ünïcode ✓',
}


async def test_entities_csv_round_trips_and_neutralises_formulas(tenant: Tenant) -> None:
    await create(
        tenant,
        component("db", kind=pb.ENTITY_KIND_RESOURCE, expected_availability=0.995),
        component("cache-a"),
        component("cache-b"),
        component(
            "api",
            tags=["tier-1"],
            dependencies=[
                pb.Dependency(targets=["db"]),
                pb.Dependency(targets=["cache-a", "cache-b"], required=1, group="caches"),
            ],
            requests_per_second=12.5,
            **HOSTILE,
        ),
    )
    rows = await read_csv(tenant, pb.CSV_EXPORT_KIND_ENTITIES)
    header, body = rows[0], rows[1:]
    assert header == list(exports.ENTITY_COLUMNS)
    assert [row[0] for row in body] == ["api", "cache-a", "cache-b", "db"]
    api = dict(zip(header, body[0], strict=True))
    assert api["title"] == "'" + HOSTILE["title"]
    assert api["owner"] == "'" + HOSTILE["owner"]
    assert api["description"] == "'" + HOSTILE["description"]
    assert api["dependencies"] == "db; cache-a|cache-b (1 of 2, caches)"
    assert float(api["requests_per_second"]) == 12.5
    assert api["tags"] == "tier-1"
    db = dict(zip(header, body[3], strict=True))
    assert float(db["expected_availability"]) == 0.995
    assert db["kind"] == "resource"
    entity = (await tenant.catalog.get_entity(name="api")).entity
    assert api["etag"] == entity.etag
    await create(tenant, component("web", title="'=1+1"))  # already begins with the escape
    rows = await read_csv(tenant, pb.CSV_EXPORT_KIND_ENTITIES)
    web = dict(zip(header, rows[-1], strict=True))
    assert web["name"] == "web"
    assert web["title"] == "''=1+1"  # a reader strips one apostrophe: exactly the title


async def test_slo_and_scenario_csv(tenant: Tenant) -> None:
    await build_shop(tenant)
    now = datetime.now(UTC)
    await tenant.catalog.record_slo_events(
        entity="api",
        slo="availability",
        minutes=[pb.MinuteEvents(minute=minute_stamp(now), good_events=900, total_events=1000)],
    )
    rows = await read_csv(tenant, pb.CSV_EXPORT_KIND_SLOS)
    assert rows[0] == list(exports.SLO_COLUMNS)
    by_entity = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(by_entity) == {"api", "web"}
    api = by_entity["api"]
    status = (await tenant.catalog.get_slo_status(entity="api")).status
    assert float(api["consumed"]) == status.budget.consumed
    assert float(api["remaining"]) == status.budget.remaining < 0  # a number, not neutralised
    assert float(api["time_budget_minutes"]) == pytest.approx(0.01 * 30 * 1440)
    # 10% errors on a 1% budget burn at 10: above 6 (6 h page) and 1 (3 d ticket), below 14.4.
    assert api["firing_alerts"] == "page:21600s/1800s;ticket:259200s/21600s"
    saved = await tenant.catalog.save_scenario(
        scenario=pb.Scenario(overrides=[pb.EntityOverride(entity="db", availability=0.9999)])
    )
    rows = await read_csv(tenant, pb.CSV_EXPORT_KIND_SCENARIO, saved.scenario.id)
    assert rows[0] == list(exports.SCENARIO_COLUMNS)
    results = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(results) == {impact.entity for impact in saved.impacts}
    for impact in saved.impacts:
        row = results[impact.entity]
        assert float(row["availability_before"]) == impact.before.availability
        assert float(row["availability_after"]) == impact.after.availability
    with pytest.raises(NotFoundError):
        await read_csv(tenant, pb.CSV_EXPORT_KIND_SCENARIO, "0" * 64)
    with pytest.raises(InvalidArgumentError):
        await read_csv(tenant, pb.CSV_EXPORT_KIND_SCENARIO)
    with pytest.raises(InvalidArgumentError):
        await read_csv(tenant, pb.CSV_EXPORT_KIND_UNSPECIFIED)


# YAML descriptor files

CATALOG_YAML = """\
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: shop
spec:
  owner: team-shop
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata:
  name: db
  annotations:
    conductor.intelgraph.io/expected-availability: "0.995"
spec:
  type: database
  owner: team-data
  system: shop
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: api
  title: Shop API
  description: "Carts, orders — and naïve ünïcode"
  tags: [tier-1, python]
  links:
    - url: https://runbooks.example/api
      title: Runbook
  annotations:
    conductor.intelgraph.io/requests-per-second: "25"
spec:
  type: service
  owner: team-shop
  lifecycle: production
  system: shop
  dependsOn: [resource:db]
  dependencyGroups:
    - name: regions
      required: 2
      targets: [api-eu, component:default/api-us, api-ap]
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: api-eu, annotations: {conductor.intelgraph.io/expected-availability: "0.99"}}
spec: {type: service, owner: team-shop, lifecycle: production}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: api-us}
spec: {type: service, owner: team-shop, lifecycle: experimental}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: api-ap}
spec: {type: service, owner: team-shop, lifecycle: deprecated}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: availability
spec:
  service: api
  description: Requests answered without a server error
  indicator:
    metadata: {name: api-errors, displayName: Error ratio}
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: Prometheus
            spec: {query: 'sum(rate(http_requests_total{job="api",code=~"5.."}[{{window}}]))'}
        total:
          metricSource:
            type: Prometheus
            spec: {query: 'sum(rate(http_requests_total{job="api"}[{{window}}]))'}
  timeWindow:
    - duration: 4w
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: latency}
spec:
  service: api
  timeWindow: [{duration: 1M, isRolling: false}]
  budgetingMethod: Timeslices
  objectives: [{target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 5m}]
"""


def comparable(entity: pb.Entity) -> pb.Entity:
    copy = pb.Entity()
    copy.CopyFrom(entity)
    for field in ("id", "etag", "created_at", "updated_at"):
        copy.ClearField(field)
    return copy


async def test_yaml_imports_and_round_trips_across_tenants(
    platform: Platform, clients: SdkClients, tenant: Tenant
) -> None:
    dry = await tenant.catalog.import_catalog(yaml=CATALOG_YAML.encode(), dry_run=True)
    assert (dry.created, dry.updated, dry.slos) == (6, 0, 2)
    assert not (await tenant.catalog.list_entities()).entities  # a dry run changes nothing
    done = await tenant.catalog.import_catalog(yaml=CATALOG_YAML.encode())
    assert (done.created, done.updated, done.unchanged) == (6, 0, 0)
    api = (await tenant.catalog.get_entity(name="api")).entity
    assert api.system == "shop"
    assert api.requests_per_second == 25.0
    assert [list(d.targets) for d in api.dependencies] == [["db"], ["api-eu", "api-us", "api-ap"]]
    assert api.dependencies[1].required == 2
    assert api.dependencies[1].group == "regions"
    assert [slo.name for slo in api.slos] == ["availability", "latency"]
    assert api.slos[0].window.rolling_days == 28
    assert api.slos[1].window.calendar == pb.CALENDAR_PERIOD_MONTH
    assert api.slos[1].budgeting_method == pb.BUDGETING_METHOD_TIMESLICES
    assert api.slos[1].timeslice_minutes == 5
    again = await tenant.catalog.import_catalog(yaml=CATALOG_YAML.encode())
    assert (again.created, again.updated, again.unchanged) == (0, 0, 6)
    assert (await tenant.catalog.get_entity(name="api")).entity.etag == api.etag
    exported = (await tenant.catalog.export_catalog()).yaml
    other = tenant_of(platform, clients)
    await other.catalog.import_catalog(yaml=exported)
    mine = [comparable(e) for e in (await tenant.catalog.list_entities()).entities]
    theirs = [comparable(e) for e in (await other.catalog.list_entities()).entities]
    assert mine == theirs
    assert (await other.catalog.export_catalog()).yaml == exported


@pytest.mark.parametrize(
    ("text", "field", "document"),
    [
        ("a: &a [1]\nb: *a\n", "yaml", "0"),
        ("apiVersion: v1\nkind: Pod\n", "kind", "1"),
        ("- just\n- a list\n", "document", "1"),
        ("\n".join(f"k{i}: v" for i in range(130_000)), "yaml", "0"),
        ("a: !!python/object/apply:os.system ['true']\n", "yaml", "1"),
        ("apiVersion: v1\napiVersion: v2\n", "yaml", "1"),
        (
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: a, title: '"
            + "x" * 201
            + "'}\n",
            "title",
            "1",
        ),
        (
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: a, "
            "annotations: {conductor.intelgraph.io/requests-per-second: 'nan'}}\n",
            "requests_per_second",
            "1",
        ),
        (
            "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
            'metadata: {name: a, title: "a\\x01"}\n',
            "title",
            "1",
        ),
        (
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: Bad}\n",
            "name",
            "1",
        ),
        (
            "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec: {service: ghost, "
            "objectives: [{target: 0.9}]}\n",
            "spec.service",
            "1",
        ),
        (
            "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec: {service: x, "
            "objectives: [{target: 2}]}\n",
            "spec.objectives[0].target",
            "1",
        ),
    ],
)
async def test_bad_yaml_is_refused_naming_document_and_field(
    tenant: Tenant, text: str, field: str, document: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await tenant.catalog.import_catalog(yaml=text.encode())
    assert refused.value.reason == ErrorReason.ERROR_REASON_DOCUMENT_INVALID
    assert refused.value.metadata["field"] == field
    assert refused.value.metadata.get("document", "0") == document


async def test_an_import_is_all_or_nothing(tenant: Tenant) -> None:
    await create(tenant, component("c"), component("b", "c"))
    cyclic = (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: new}\n"
        "spec: {owner: x}\n---\n"
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: c}\n"
        "spec: {owner: x, dependsOn: [b]}\n"
    )
    with pytest.raises(FailedPreconditionError) as refused:
        await tenant.catalog.import_catalog(yaml=cyclic.encode())
    assert refused.value.reason == ErrorReason.ERROR_REASON_DEPENDENCY_CYCLE
    unknown = cyclic.replace("dependsOn: [b]", "dependsOn: [ghost]")
    with pytest.raises(FailedPreconditionError) as refused:
        await tenant.catalog.import_catalog(yaml=unknown.encode())
    assert refused.value.reason == ErrorReason.ERROR_REASON_UNKNOWN_ENTITY
    assert refused.value.metadata["document"] == "2"
    names = [e.name for e in (await tenant.catalog.list_entities()).entities]
    assert names == ["b", "c"]  # "new" was not kept
    kind_changed = "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata: {name: c}\n"
    with pytest.raises(InvalidArgumentError):
        await tenant.catalog.import_catalog(yaml=kind_changed.encode())


# Budget links


async def test_budget_links_show_billing_figures_to_who_may_read_them(
    platform: Platform, clients: SdkClients
) -> None:
    scopes = [*WRITER, "billing.read", "billing.write", "billing.usage.write"]
    finance = tenant_of(platform, clients, scopes)
    await build_shop(finance)
    await finance.billing.set_budget(
        SetBudgetRequest(
            budget=Budget(
                id="shop-api",
                name="Shop API hosting",
                monthly_amount=Money(minor_units=120_000, currency_code="USD"),
                meters=["api.call"],
            )
        )
    )
    await finance.billing.record_usage(event_id=str(uuid.uuid4()), meter="api.call", quantity=1000)
    linked = await finance.catalog.link_budget(entity="api", budget_id="shop-api")
    budget = linked.entity.budget
    assert budget.budget_id == "shop-api"
    assert budget.name == "Shop API hosting"
    assert budget.monthly_amount.minor_units == 120_000
    assert budget.spent.minor_units > 0
    read = (await finance.catalog.get_entity(name="api")).entity
    assert read.budget == budget
    assert read.etag == linked.entity.etag
    ran = await finance.catalog.run_what_if(
        scenario=pb.Scenario(overrides=[pb.EntityOverride(entity="db", availability=0.9999)])
    )
    api = next(impact for impact in ran.impacts if impact.entity == "api")
    assert api.before.monthly_cost.minor_units == 120_000
    assert api.after.monthly_cost.currency_code == "USD"
    # A catalog user without billing.read sees the link, not the figures, and cannot link.
    reader = tenant_of(platform, clients, WRITER, tenant=finance.id)
    shown = (await reader.catalog.get_entity(name="api")).entity.budget
    assert shown.budget_id == "shop-api"
    assert not shown.HasField("monthly_amount")
    with pytest.raises(PermissionDeniedError):
        await reader.catalog.link_budget(entity="web", budget_id="shop-api")
    with pytest.raises(NotFoundError):
        await finance.catalog.link_budget(entity="web", budget_id="no-such-budget")
    with pytest.raises(NotFoundError):
        await finance.catalog.link_budget(entity="ghost", budget_id="shop-api")
    saved = await finance.catalog.save_scenario(
        scenario=pb.Scenario(overrides=[pb.EntityOverride(entity="db", availability=0.9999)])
    )
    await finance.billing.set_budget(
        SetBudgetRequest(
            budget=Budget(
                id="db-ha",
                monthly_amount=Money(minor_units=50_000, currency_code="USD"),
            )
        )
    )
    scenario = (
        await finance.catalog.link_budget(scenario_id=saved.scenario.id, budget_id="db-ha")
    ).scenario
    assert scenario.budget.monthly_amount.minor_units == 50_000
    opened = await finance.catalog.get_scenario(id=saved.scenario.id)
    assert opened.scenario.budget.budget_id == "db-ha"
    unlinked = await finance.catalog.link_budget(entity="api", budget_id="")
    assert not unlinked.entity.HasField("budget")
    other = tenant_of(platform, clients, scopes)
    await build_shop(other)
    with pytest.raises(NotFoundError):  # budgets are per tenant too
        await other.catalog.link_budget(entity="api", budget_id="shop-api")


async def test_budgets_are_checked(tenant: Tenant, platform: Platform, clients: SdkClients) -> None:
    finance = tenant_of(platform, clients, ["billing.read", "billing.write"])
    for budget, field in [
        (
            Budget(id="Bad Id", monthly_amount=Money(minor_units=1, currency_code="USD")),
            "budget.id",
        ),
        (
            Budget(id="b", monthly_amount=Money(minor_units=1, currency_code="EUR")),
            "budget.monthly_amount.currency_code",
        ),
        (
            Budget(id="b", monthly_amount=Money(minor_units=-1, currency_code="USD")),
            "budget.monthly_amount.minor_units",
        ),
        (
            Budget(id="b", monthly_amount=Money(minor_units=1, currency_code="USD"), meters=["x"]),
            "budget.meters[0]",
        ),
    ]:
        with pytest.raises(InvalidArgumentError) as refused:
            await finance.billing.set_budget(SetBudgetRequest(budget=budget))
        assert refused.value.metadata["field"] == field
    listed = await finance.billing.list_budgets()
    assert not listed.budgets


# GraphQL


def persisted(name: str) -> str:
    return operation_id((DEFAULT_OPERATIONS_DIR / f"{name}.graphql").read_text())


async def test_the_catalog_through_graphql_persisted_operations(
    platform: Platform, clients: SdkClients
) -> None:
    tenant = uuid.uuid4()
    token = Minter(platform.settings)(WRITER, tenant=tenant)
    await build_shop(tenant_of(platform, clients, tenant=tenant))

    async def graphql(name: str, variables: dict[str, object]) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
            response = await http.post(
                "/graphql",
                json={"id": persisted(name), "variables": variables},
                headers={"authorization": f"Bearer {token}"},
            )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    listed = await graphql("CatalogEntities", {"search": "", "pageSize": 2})
    page = listed["entities"]
    assert [e["name"] for e in page["entities"]] == ["api", "cache-a"]
    assert page["page"]["nextPageToken"]
    status = await graphql("SloStatus", {"entity": "api"})
    assert status["sloStatus"]["status"]["budget"]["timeBudgetSeconds"] == pytest.approx(25920)
    overrides = [{"entity": "db", "availability": 0.9999}]
    ran = await graphql("WhatIf", {"overrides": overrides})
    impacts = {i["entity"]: i for i in ran["runWhatIf"]["impacts"]}
    assert impacts["web"]["after"]["availability"] > impacts["web"]["before"]["availability"]
    saved = await graphql("SaveScenario", {"name": "db ha", "overrides": overrides})
    share = saved["saveScenario"]["scenario"]["id"]
    opened = await graphql("Scenario", {"id": share})
    reopened = {i["entity"]: i for i in opened["scenario"]["impacts"]}
    assert reopened["web"]["after"]["availability"] == impacts["web"]["after"]["availability"]
    assert opened["scenario"]["scenario"]["name"] == "db ha"


# Scale


def large_catalog(services: int = 1000, edges: int = 5000, seed: int = 16) -> bytes:
    """A DAG of `services` entities with `edges` dependencies, every 7th a 2-of-3 group."""
    rng = random.Random(seed)
    per = edges // services
    documents = []
    for index in range(services):
        name = f"svc-{index:04d}"
        targets = sorted({f"svc-{rng.randrange(index):04d}" for _ in range(per)}) if index else []
        spec: dict[str, Any] = {"owner": f"team-{index % 13}"}
        if len(targets) >= 3 and index % 7 == 0:
            spec["dependencyGroups"] = [{"name": "replicas", "required": 2, "targets": targets[:3]}]
            targets = targets[3:]
        if targets:
            spec["dependsOn"] = targets
        documents.append(
            {
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Component",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "conductor.intelgraph.io/expected-availability": str(
                            round(0.99 + rng.random() * 0.0099, 6)
                        )
                    },
                },
                "spec": spec,
            }
        )
    return yaml.safe_dump_all(documents).encode()


async def test_a_thousand_services_import_and_compose(tenant: Tenant) -> None:
    data = large_catalog()
    imported = await tenant.catalog.import_catalog(yaml=data, timeout=120)
    assert imported.created == 1000
    top = await tenant.catalog.get_availability(entity="svc-0999")
    assert 0.0 < top.availability.composite < 1.0
    assert top.availability.weakest_links
    ran = await tenant.catalog.run_what_if(
        scenario=pb.Scenario(overrides=[pb.EntityOverride(entity="svc-0000", availability=1.0)])
    )
    assert len(ran.impacts) > 100  # everything built on the first service
    assert all(i.after.availability >= i.before.availability for i in ran.impacts)
    listed = await tenant.catalog.list_entities(owner="team-3", page=PageRequest(page_size=500))
    assert len(listed.entities) == len([i for i in range(1000) if i % 13 == 3])


async def test_what_if_usage_is_counted_on_metrics(platform: Platform, tenant: Tenant) -> None:
    await build_shop(tenant)

    async def counted() -> dict[str, float]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
            text = (await http.get("/metrics")).text
        found = {}
        for line in text.splitlines():
            if line.startswith("catalog_whatif_total{"):
                labels, value = line.rsplit(" ", 1)
                found[labels.split('"')[1]] = float(value)
        return found

    before = await counted()
    scenario = pb.Scenario(overrides=[pb.EntityOverride(entity="db", availability=0.9991)])
    await tenant.catalog.run_what_if(scenario=scenario)
    saved = await tenant.catalog.save_scenario(scenario=scenario)
    await tenant.catalog.save_scenario(scenario=scenario)  # the same: not a new share
    await tenant.catalog.get_scenario(id=saved.scenario.id)
    after = await counted()
    assert after["run"] - before.get("run", 0) == 1
    assert after["save"] - before.get("save", 0) == 1
    assert after["open"] - before.get("open", 0) == 1
