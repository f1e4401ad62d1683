"""The CatalogService servicer: translates messages and calls the use cases, nothing else."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import grpc
from intelgraph.catalog.v1 import catalog_service_pb2 as pb
from intelgraph.catalog.v1 import catalog_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageResponse

from core.errors import FailedPrecondition, InvalidArgument
from core.interfaces import CostBudgets
from core.pagination import NAME, TIME_AND_KEY, Page
from core.times import from_timestamp
from interceptors import current_principal
from interceptors.base import invocation_metadata
from servers.catalog import messages
from servers.catalog.availability import Reliability
from servers.catalog.budgets import budget_report
from servers.catalog.costs import Costs
from servers.catalog.descriptor_files import read_catalog, write_catalog
from servers.catalog.entities import Entities, spec_of
from servers.catalog.exports import CsvExports
from servers.catalog.objectives import Objectives, RecordedMinute, thresholds
from servers.catalog.scenarios import Scenarios
from servers.catalog.specs import check_window
from servers.catalog.store import EntityFilter
from servers.jobs import every_under_lease
from servers.runtime import Job, PlatformServicer, Runtime, ServiceDefinition
from servers.switches import WHATIF_SHARING


class CatalogService(PlatformServicer, catalog_service_pb2_grpc.CatalogServiceServicer):
    """Entities and dependencies, SLOs and error budgets, composite availability, what-if."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.entities = Entities(runtime)
        self.objectives = Objectives(runtime, self.entities)
        self.costs = Costs(runtime)
        self.reliability = Reliability(runtime, self.costs)
        self.scenarios = Scenarios(runtime, self.reliability)
        self.csv = CsvExports(self.entities, self.objectives, self.scenarios)

    def _sharing(self) -> None:
        """Refuse saving and opening shared scenarios while the backout switch hides them.

        Raises:
            FailedPrecondition: The switch catalog.whatif_sharing is off.
        """
        switches = self.runtime.switches
        if switches is not None and not switches.is_on(WHATIF_SHARING):
            raise FailedPrecondition(
                "what-if sharing is switched off (backout switch catalog.whatif_sharing); "
                "RunWhatIf still answers, unsaved",
                metadata={"switch": WHATIF_SHARING},
            )

    def background_jobs(self) -> list[Job]:
        """SLO events older than any window can reach forgotten (one replica at a time)."""
        return [
            functools.partial(
                every_under_lease,
                self.runtime.database,
                "catalog.slo_events.retention",
                3600.0,
                self.objectives.forget_old_events,
            )
        ]

    async def CreateEntity(
        self,
        request: pb.CreateEntityRequest,
        context: grpc.aio.ServicerContext[pb.CreateEntityRequest, pb.CreateEntityResponse],
    ) -> pb.CreateEntityResponse:
        """Add an entity."""
        row = await self.entities.create(current_principal(), messages.entity_of(request.entity))
        return pb.CreateEntityResponse(entity=messages.entity(row))

    async def GetEntity(
        self,
        request: pb.GetEntityRequest,
        context: grpc.aio.ServicerContext[pb.GetEntityRequest, pb.GetEntityResponse],
    ) -> pb.GetEntityResponse:
        """One entity by name."""
        row = await self.entities.get(current_principal(), request.name)
        cost = await self.costs.one(_authorization(context), row.budget_id)
        return pb.GetEntityResponse(entity=messages.entity(row, cost))

    async def ListEntities(
        self,
        request: pb.ListEntitiesRequest,
        context: grpc.aio.ServicerContext[pb.ListEntitiesRequest, pb.ListEntitiesResponse],
    ) -> pb.ListEntitiesResponse:
        """Entities by name, filtered."""
        filters = {
            "kind": messages.KIND_NAME.get(request.kind, ""),
            "owner": request.owner,
            "tag": request.tag,
            "lifecycle": messages.LIFECYCLE_NAME.get(request.lifecycle, ""),
            "system": request.system,
            "search": request.search,
        }
        page = Page.of(request, NAME, **filters)
        narrowed = EntityFilter(
            **{key: value for key, value in filters.items() if key != "search"},
            words=tuple(request.search.lower().split()[:16]),
        )
        rows = await self.entities.page(current_principal(), page, narrowed)
        return pb.ListEntitiesResponse(
            entities=[messages.entity(row) for row in rows[: page.size]],
            page=PageResponse(next_page_token=page.next_token(rows, lambda row: (row.name,))),
        )

    async def UpdateEntity(
        self,
        request: pb.UpdateEntityRequest,
        context: grpc.aio.ServicerContext[pb.UpdateEntityRequest, pb.UpdateEntityResponse],
    ) -> pb.UpdateEntityResponse:
        """Replace an entity's fields if its etag still matches."""
        row = await self.entities.update(
            current_principal(), messages.entity_of(request.entity), request.entity.etag
        )
        return pb.UpdateEntityResponse(entity=messages.entity(row))

    async def DeleteEntity(
        self,
        request: pb.DeleteEntityRequest,
        context: grpc.aio.ServicerContext[pb.DeleteEntityRequest, pb.DeleteEntityResponse],
    ) -> pb.DeleteEntityResponse:
        """Delete an entity nothing depends on, if its etag still matches."""
        await self.entities.delete(current_principal(), request.name, request.etag)
        return pb.DeleteEntityResponse()

    async def RecordSloEvents(
        self,
        request: pb.RecordSloEventsRequest,
        context: grpc.aio.ServicerContext[pb.RecordSloEventsRequest, pb.RecordSloEventsResponse],
    ) -> pb.RecordSloEventsResponse:
        """Set an SLO's counts per minute."""
        for index, minute in enumerate(request.minutes):
            if minute.minute.nanos:
                raise InvalidArgument(
                    f"minutes[{index}].minute must be the start of a minute",
                    field=f"minutes[{index}].minute",
                )
        recorded = await self.objectives.record(
            current_principal(),
            request.entity,
            request.slo,
            [
                RecordedMinute(
                    from_timestamp(minute.minute), minute.good_events, minute.total_events
                )
                for minute in request.minutes
            ],
        )
        return pb.RecordSloEventsResponse(recorded=recorded)

    async def GetSloStatus(
        self,
        request: pb.GetSloStatusRequest,
        context: grpc.aio.ServicerContext[pb.GetSloStatusRequest, pb.GetSloStatusResponse],
    ) -> pb.GetSloStatusResponse:
        """An SLO's attainment, budget, burn rates and alerts now."""
        status = await self.objectives.status(current_principal(), request.entity, request.slo)
        return pb.GetSloStatusResponse(status=messages.slo_status(status))

    async def CalculateErrorBudget(
        self,
        request: pb.CalculateErrorBudgetRequest,
        context: grpc.aio.ServicerContext[
            pb.CalculateErrorBudgetRequest, pb.CalculateErrorBudgetResponse
        ],
    ) -> pb.CalculateErrorBudgetResponse:
        """The error-budget math for the figures given."""
        current_principal()
        if not 0.0 < request.objective < 1.0:
            raise InvalidArgument("objective must lie strictly between 0 and 1", field="objective")
        if request.bad_events > request.total_events:
            raise InvalidArgument("bad_events must not exceed total_events", field="bad_events")
        window = check_window(
            messages.window_of(request.window, request.HasField("window")), "window"
        ).seconds()
        if request.elapsed_seconds > window:
            raise InvalidArgument(
                "elapsed_seconds must not exceed the window", field="elapsed_seconds"
            )
        report = budget_report(
            request.objective,
            window,
            request.total_events,
            request.bad_events,
            elapsed_seconds=request.elapsed_seconds or None,
            current_burn_rate=request.current_burn_rate or None,
        )
        return pb.CalculateErrorBudgetResponse(
            budget=messages.error_budget(report),
            alerts=[messages.burn_alert(alert) for alert in thresholds(request.objective, window)],
        )

    async def GetAlertRules(
        self,
        request: pb.GetAlertRulesRequest,
        context: grpc.aio.ServicerContext[pb.GetAlertRulesRequest, pb.GetAlertRulesResponse],
    ) -> pb.GetAlertRulesResponse:
        """A Prometheus rule file for an entity's SLOs."""
        rules, alerts = await self.objectives.alert_rules(
            current_principal(), request.entity, request.slo, request.runbook_url
        )
        return pb.GetAlertRulesResponse(
            rules_yaml=rules, alerts=[messages.burn_alert(alert) for alert in alerts]
        )

    async def GetAvailability(
        self,
        request: pb.GetAvailabilityRequest,
        context: grpc.aio.ServicerContext[pb.GetAvailabilityRequest, pb.GetAvailabilityResponse],
    ) -> pb.GetAvailabilityResponse:
        """An entity's composite availability over its dependencies."""
        report = await self.reliability.availability(current_principal(), request.entity)
        return messages.availability(report)

    async def RunWhatIf(
        self,
        request: pb.RunWhatIfRequest,
        context: grpc.aio.ServicerContext[pb.RunWhatIfRequest, pb.RunWhatIfResponse],
    ) -> pb.RunWhatIfResponse:
        """A scenario's impacts, unsaved."""
        overrides = [messages.override_of(o) for o in request.scenario.overrides]
        impacts = await self.scenarios.run(current_principal(), overrides, _authorization(context))
        return pb.RunWhatIfResponse(impacts=[messages.impact(i) for i in impacts])

    async def SaveScenario(
        self,
        request: pb.SaveScenarioRequest,
        context: grpc.aio.ServicerContext[pb.SaveScenarioRequest, pb.SaveScenarioResponse],
    ) -> pb.SaveScenarioResponse:
        """Save a scenario under its content-addressed id."""
        self._sharing()
        overrides = [messages.override_of(o) for o in request.scenario.overrides]
        authorization = _authorization(context)
        result, created = await self.scenarios.save(
            current_principal(), request.scenario.name, overrides, authorization
        )
        cost = await self.costs.one(authorization, result.row.budget_id)
        scenario, impacts = messages.saved(result, cost)
        return pb.SaveScenarioResponse(scenario=scenario, impacts=impacts, created=created)

    async def GetScenario(
        self,
        request: pb.GetScenarioRequest,
        context: grpc.aio.ServicerContext[pb.GetScenarioRequest, pb.GetScenarioResponse],
    ) -> pb.GetScenarioResponse:
        """A saved scenario and its results, as when it was saved."""
        self._sharing()
        authorization = _authorization(context)
        result = await self.scenarios.get(
            current_principal(), request.id, authorization=authorization
        )
        cost = await self.costs.one(authorization, result.row.budget_id)
        scenario, impacts = messages.saved(result, cost)
        return pb.GetScenarioResponse(scenario=scenario, impacts=impacts)

    async def ListScenarios(
        self,
        request: pb.ListScenariosRequest,
        context: grpc.aio.ServicerContext[pb.ListScenariosRequest, pb.ListScenariosResponse],
    ) -> pb.ListScenariosResponse:
        """Saved scenarios, newest first."""
        self._sharing()
        page = Page.of(request, TIME_AND_KEY)
        rows = await self.scenarios.page(current_principal(), page)
        return pb.ListScenariosResponse(
            scenarios=[messages.scenario(row) for row in rows[: page.size]],
            page=PageResponse(
                next_page_token=page.next_token(rows, lambda row: (row.created_at, row.id))
            ),
        )

    async def RenameScenario(
        self,
        request: pb.RenameScenarioRequest,
        context: grpc.aio.ServicerContext[pb.RenameScenarioRequest, pb.RenameScenarioResponse],
    ) -> pb.RenameScenarioResponse:
        """Rename a saved scenario."""
        row = await self.scenarios.rename(current_principal(), request.id, request.name)
        return pb.RenameScenarioResponse(scenario=messages.scenario(row))

    async def DeleteScenario(
        self,
        request: pb.DeleteScenarioRequest,
        context: grpc.aio.ServicerContext[pb.DeleteScenarioRequest, pb.DeleteScenarioResponse],
    ) -> pb.DeleteScenarioResponse:
        """Delete a saved scenario."""
        await self.scenarios.delete(current_principal(), request.id)
        return pb.DeleteScenarioResponse()

    async def ImportCatalog(
        self,
        request: pb.ImportCatalogRequest,
        context: grpc.aio.ServicerContext[pb.ImportCatalogRequest, pb.ImportCatalogResponse],
    ) -> pb.ImportCatalogResponse:
        """Create or update entities and SLOs from YAML, all or nothing."""
        principal = current_principal()
        file = await asyncio.to_thread(read_catalog, request.yaml)
        await asyncio.to_thread(messages.check_file_bounds, file)
        counts = await self.entities.import_file(principal, file, dry_run=request.dry_run)
        return pb.ImportCatalogResponse(
            created=counts.created,
            updated=counts.updated,
            unchanged=counts.unchanged,
            slos=counts.slos,
        )

    async def ExportCatalog(
        self,
        request: pb.ExportCatalogRequest,
        context: grpc.aio.ServicerContext[pb.ExportCatalogRequest, pb.ExportCatalogResponse],
    ) -> pb.ExportCatalogResponse:
        """The catalog as the YAML ImportCatalog reads."""
        rows = await self.entities.all(current_principal())
        specs = [spec_of(row) for row in rows]
        return pb.ExportCatalogResponse(yaml=await asyncio.to_thread(write_catalog, specs))

    async def LinkBudget(
        self,
        request: pb.LinkBudgetRequest,
        context: grpc.aio.ServicerContext[pb.LinkBudgetRequest, pb.LinkBudgetResponse],
    ) -> pb.LinkBudgetResponse:
        """Link an entity or a saved scenario to a Billing budget (or unlink it)."""
        principal, authorization = current_principal(), _authorization(context)
        target = request.WhichOneof("target")
        if target == "entity":
            row, cost = await self.costs.link_entity(
                principal, authorization, request.entity, request.budget_id
            )
            return pb.LinkBudgetResponse(entity=messages.entity(row, cost))
        if target == "scenario_id":
            scenario, cost = await self.costs.link_scenario(
                principal, authorization, request.scenario_id, request.budget_id
            )
            return pb.LinkBudgetResponse(scenario=messages.scenario(scenario, cost=cost))
        raise InvalidArgument("name the entity or the scenario_id to link", field="target")

    async def ExportCsv(
        self,
        request: pb.ExportCsvRequest,
        context: grpc.aio.ServicerContext[pb.ExportCsvRequest, pb.ExportCsvResponse],
    ) -> AsyncIterator[pb.ExportCsvResponse]:
        """Entities, SLOs or a saved scenario's results as CSV, in chunks."""
        principal = current_principal()
        if request.kind == pb.CSV_EXPORT_KIND_SCENARIO:
            if not request.scenario_id:
                raise InvalidArgument(
                    "scenario_id names the saved scenario to export", field="scenario_id"
                )
            chunks = await self.csv.scenario(principal, request.scenario_id)
        elif request.kind == pb.CSV_EXPORT_KIND_SLOS:
            chunks = await self.csv.slos(principal)
        elif request.kind == pb.CSV_EXPORT_KIND_ENTITIES:
            chunks = await self.csv.entities(principal)
        else:
            raise InvalidArgument("kind says what to export", field="kind")
        async for data in chunks:
            yield pb.ExportCsvResponse(data=data)


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The call's authorization metadata, to read other services as the caller."""
    for key, value in invocation_metadata(context):
        if key == "authorization" and isinstance(value, str):
            return value
    return ""


SERVICE = ServiceDefinition(
    name="catalog",
    descriptor=pb.DESCRIPTOR.services_by_name["CatalogService"],
    servicer_class=CatalogService,
    add_to_server=catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server,
    capability="the service catalog",
    needs=(CostBudgets,),
)
