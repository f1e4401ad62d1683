"""The console's catalog pages: the list, an entity, the what-if editor, saved scenarios, CSV.

Everything is read and written through the Catalog's API with the signed-in
token: a page can only show what that token may read, and a refusal is shown
as the platform gave it (a missing entity or another tenant's scenario is a
404, a missing scope a 403).

Routes under the console's prefix:

- `GET /catalog`: search (words, owner, tag, kind, lifecycle) and a page of entities;
- `GET /catalog/export/entities.csv`, `/catalog/export/slos.csv`: CSV downloads;
- `GET /catalog/{name}` (and `/catalog/entities/{name}`, which always works,
  even for an entity named like a page): its fields, dependency graph, composite
  availability, weakest path, SLOs with their error budgets, burn rates,
  alerts and burn chart;
- `GET|POST /catalog/what-if`: the editor; "Run" shows before and after,
  "Save and share" saves and leads to the scenario's page;
- `GET /catalog/scenarios`, `POST /catalog/scenarios/{id}/rename|delete`;
- `GET /catalog/scenarios/{id}`: a saved scenario, its results, its share link;
  `GET /catalog/scenarios/{id}/results.csv`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from intelgraph.sdk import ConductorError
from intelgraph.sdk import catalog as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncCatalogClient
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from servers.console import formats, graphs
from servers.console.session import calling_as, request_token
from servers.console.shell import SECURITY_HEADERS, Refusal, Shell, form_text, refusal_of

#: Entities a list page shows at once.
ENTITIES_PER_PAGE = 50
#: Saved scenarios a list page shows at once.
SCENARIOS_PER_PAGE = 50
#: Empty override rows the what-if editor offers (console.js adds more; so does ?rows=).
EDITOR_ROWS = 4
MAX_EDITOR_ROWS = 100
#: Entity names the editor suggests.
SUGGESTED_NAMES = 500
#: Paths under /catalog that are pages, not entities (an entity so named is reached
#: at /catalog/entities/{name}).
RESERVED = frozenset({"what-if", "scenarios", "export", "entities"})

KINDS = {
    "component": pb.ENTITY_KIND_COMPONENT,
    "api": pb.ENTITY_KIND_API,
    "resource": pb.ENTITY_KIND_RESOURCE,
    "system": pb.ENTITY_KIND_SYSTEM,
}
KIND_NAMES = {number: name for name, number in KINDS.items()}
LIFECYCLES = {
    "experimental": pb.LIFECYCLE_EXPERIMENTAL,
    "production": pb.LIFECYCLE_PRODUCTION,
    "deprecated": pb.LIFECYCLE_DEPRECATED,
}
LIFECYCLE_NAMES = {number: name for name, number in LIFECYCLES.items()}
SOURCES = {
    pb.AVAILABILITY_SOURCE_OBSERVED: "observed: the first SLO's attainment over its window",
    pb.AVAILABILITY_SOURCE_DECLARED: "declared: the entity's expected availability",
    pb.AVAILABILITY_SOURCE_OBJECTIVE: "the first SLO's objective (nothing observed or declared)",
    pb.AVAILABILITY_SOURCE_ASSUMED: "assumed always available (nothing known)",
    pb.AVAILABILITY_SOURCE_SCENARIO: "set by the scenario",
}
METHODS = {
    pb.BUDGETING_METHOD_OCCURRENCES: "occurrences (good events over total)",
    pb.BUDGETING_METHOD_TIMESLICES: "time slices",
}
CALENDARS = {
    pb.CALENDAR_PERIOD_WEEK: "calendar week",
    pb.CALENDAR_PERIOD_MONTH: "calendar month",
    pb.CALENDAR_PERIOD_QUARTER: "calendar quarter",
}
CSV_KINDS = {"entities": pb.CSV_EXPORT_KIND_ENTITIES, "slos": pb.CSV_EXPORT_KIND_SLOS}
#: Fixed notices a redirect may ask a page to show (never text from the query itself).
NOTICES = {
    "renamed": "Renamed.",
    "deleted": "Deleted.",
    "saved": "Saved. Anyone of your tenant who may read the catalog can open the link below.",
    "saved-before": "This scenario was saved before, on the same catalog figures: here it is.",
}


def entity_path(name: str) -> str:
    """The console path of an entity's page (under the prefix).

    >>> entity_path("billing-api"), entity_path("what-if")
    ('/catalog/billing-api', '/catalog/entities/what-if')
    """
    quoted = quote(name, safe="")
    return f"/catalog/entities/{quoted}" if name in RESERVED else f"/catalog/{quoted}"


def web_link(url: str) -> bool:
    """Whether a stored link may be rendered as a link: http or https only.

    >>> web_link("https://runbooks.example/a"), web_link("javascript:alert(1)")
    (True, False)
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def window_label(slo: pb.Slo) -> str:
    """An SLO's window in words: "rolling 30 days", "calendar month"."""
    if slo.window.WhichOneof("kind") == "calendar":
        return CALENDARS.get(slo.window.calendar, "calendar period")
    days = slo.window.rolling_days or 30
    return f"rolling {days} day{'s' if days != 1 else ''}"


class FormProblem(ValueError):
    """A what-if form field that cannot be read; its message says which and why."""


def parse_share(text: str, what: str) -> float | None:
    """A share typed as a fraction or a percentage ("0.9995", "99.95%", "99.95"); None if empty.

    >>> parse_share("99.95%", "x"), parse_share("0.9995", "x"), parse_share("", "x")
    (0.9995, 0.9995, None)
    """
    text = text.strip().replace(",", ".")
    if not text:
        return None
    percent = text.endswith("%")
    try:
        value = float(text.removesuffix("%").strip())
    except ValueError:
        raise FormProblem(f"{what} {text!r} is not a number (write 0.9995 or 99.95%)") from None
    if percent or value > 1:
        value /= 100
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise FormProblem(f"{what} {text!r} must lie between 0 and 100%")
    return round(value, 12)


def parse_names(text: str) -> list[str]:
    """Entity names separated by commas or spaces.

    >>> parse_names("cache-a, cache-b  db")
    ['cache-a', 'cache-b', 'db']
    """
    return [name for name in text.replace(",", " ").split() if name]


@dataclass
class OverrideRow:
    """One row of the what-if editor, as typed."""

    entity: str = ""
    availability: str = ""
    objective: str = ""
    rps: str = ""
    add: str = ""
    remove: str = ""
    problem: str = ""

    @property
    def empty(self) -> bool:
        """Whether nothing was typed in the row."""
        return not any(
            (self.entity, self.availability, self.objective, self.rps, self.add, self.remove)
        )

    def override(self, number: int) -> pb.EntityOverride:
        """The row as an override.

        Raises:
            FormProblem: A field cannot be read (the message names the row).
        """
        where = f"Row {number}:"
        if not self.entity:
            raise FormProblem(f"{where} name the entity the row changes")
        override = pb.EntityOverride(entity=self.entity)
        availability = parse_share(self.availability, f"{where} availability")
        if availability is not None:
            override.availability = availability
        objective = parse_share(self.objective, f"{where} objective")
        if objective is not None:
            override.objective = objective
        if self.rps:
            try:
                rps = float(self.rps.replace(",", "."))
            except ValueError:
                raise FormProblem(f"{where} requests/s {self.rps!r} is not a number") from None
            if not math.isfinite(rps) or rps < 0:
                raise FormProblem(f"{where} requests/s must be zero or more")
            override.requests_per_second = rps
        added = parse_names(self.add)
        if added:
            override.add_dependencies.append(pb.Dependency(targets=added, required=1))
        override.remove_targets.extend(parse_names(self.remove))
        return override

    @classmethod
    def of(cls, override: pb.EntityOverride) -> OverrideRow:
        """The editor row showing a saved override."""
        return cls(
            entity=override.entity,
            availability=_typed(override, "availability"),
            objective=_typed(override, "objective"),
            rps=_typed(override, "requests_per_second"),
            add=" ".join(t for d in override.add_dependencies for t in d.targets),
            remove=" ".join(override.remove_targets),
        )


def _typed(
    message: pb.EntityOverride,
    name: Literal["availability", "objective", "requests_per_second"],
) -> str:
    if not message.HasField(name):
        return ""
    return f"{getattr(message, name):.12g}"


def rows_of(form: Mapping[str, Sequence[str]]) -> list[OverrideRow]:
    """The editor's rows from its form fields (each field repeated once per row)."""
    columns = ("entity", "availability", "objective", "rps", "add", "remove")
    values = {name: list(form.get(name, ())) for name in columns}
    count = min(max((len(v) for v in values.values()), default=0), MAX_EDITOR_ROWS)
    return [
        OverrideRow(
            **{
                name: (values[name][index] if index < len(values[name]) else "").strip()[:500]
                for name in columns
            }
        )
        for index in range(count)
    ]


def overrides_of(rows: Sequence[OverrideRow]) -> list[pb.EntityOverride]:
    """The overrides of the editor's filled-in rows.

    Raises:
        FormProblem: A row cannot be read, or every row is empty.
    """
    overrides = [row.override(number) for number, row in enumerate(rows, 1) if not row.empty]
    if not overrides:
        raise FormProblem("Fill in at least one row: the entity and what to change.")
    return overrides


@dataclass(frozen=True)
class Change:
    """One figure of an entity before and after a scenario, and which way it went."""

    label: str
    before: str
    after: str
    #: "better", "worse", "changed" (neither) or "same".
    verdict: str


@dataclass(frozen=True)
class ImpactView:
    """An entity's figures before and after, as the results table shows them."""

    entity: str
    changes: tuple[Change, ...]

    @property
    def verdict(self) -> str:
        """The row's verdict: worse if any figure got worse, else better if any got better."""
        verdicts = {change.verdict for change in self.changes}
        for verdict in ("worse", "better", "changed"):
            if verdict in verdicts:
                return verdict
        return "same"


def _direction(before: float, after: float, higher_is_better: bool | None) -> str:
    if math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-12):
        return "same"
    if higher_is_better is None:
        return "changed"
    return "better" if (after > before) == higher_is_better else "worse"


def _weak_link(figures: pb.Reliability) -> str:
    if not figures.HasField("weakest_link") or not figures.weakest_link.entity:
        return formats.BLANK
    link = figures.weakest_link
    return f"{link.entity} (+{graphs.percent(link.gain, 4)})"


def _times(rate: float) -> str:
    return f"{rate:.2f}\N{MULTIPLICATION SIGN}"


def _cost(figures: pb.Reliability) -> tuple[str, float]:
    if not figures.HasField("monthly_cost"):
        return formats.BLANK, 0.0
    return formats.money(figures.monthly_cost), float(figures.monthly_cost.minor_units)


def impact_view(impact: pb.EntityImpact) -> ImpactView:
    """What a scenario did to one entity, each figure marked better, worse or the same."""
    before, after = impact.before, impact.after
    weak_before, weak_after = _weak_link(before), _weak_link(after)
    (cost_before, minor_before), (cost_after, minor_after) = _cost(before), _cost(after)
    meets = {True: "yes", False: "no"}
    changes = (
        Change(
            "Availability",
            graphs.percent(before.availability, 4),
            graphs.percent(after.availability, 4),
            _direction(before.availability, after.availability, higher_is_better=True),
        ),
        Change(
            "Burn rate",
            _times(before.burn_rate) if before.objective else formats.BLANK,
            _times(after.burn_rate) if after.objective else formats.BLANK,
            _direction(before.burn_rate, after.burn_rate, higher_is_better=False),
        ),
        Change(
            "Budget (minutes)",
            formats.minutes(before.time_budget_seconds) if before.objective else formats.BLANK,
            formats.minutes(after.time_budget_seconds) if after.objective else formats.BLANK,
            _direction(before.time_budget_seconds, after.time_budget_seconds, None),
        ),
        Change(
            "Meets objective",
            meets[before.meets_objective] if before.objective else formats.BLANK,
            meets[after.meets_objective] if after.objective else formats.BLANK,
            _direction(float(before.meets_objective), float(after.meets_objective), True),
        ),
        Change(
            "Weakest link",
            weak_before,
            weak_after,
            "same" if weak_before == weak_after else "changed",
        ),
        Change(
            "Monthly cost",
            cost_before,
            cost_after,
            _direction(minor_before, minor_after, higher_is_better=False),
        ),
    )
    return ImpactView(impact.entity, changes)


@dataclass
class SloView:
    """An SLO and its status, as the entity page shows them."""

    slo: pb.Slo
    window: str
    method: str
    status: pb.SloStatus | None
    problem: str
    chart: Markup = field(default_factory=Markup)


@dataclass
class ListQuery:
    """The list page's search form, as given."""

    search: str = ""
    owner: str = ""
    tag: str = ""
    kind: str = ""
    lifecycle: str = ""

    def filters(self) -> dict[str, str]:
        """The filled-in fields, for links that keep them."""
        return {key: value for key, value in vars(self).items() if value}


class CatalogPages:
    """The catalog's pages (see the module's docstring for the routes).

    Args:
        shell: Renders the pages and calls as the signed-in caller.
        catalog: The Catalog client, calling with the request's caller's token.
    """

    def __init__(self, shell: Shell, catalog: AsyncCatalogClient) -> None:
        self._shell = shell
        self._catalog = catalog

    def routes(self) -> list[BaseRoute]:
        """The catalog's routes (the entity page last: its path takes any name)."""
        p = self._shell.prefix + "/catalog"
        return [
            Route(p, self._list, methods=["GET"]),
            Route(p + "/export/{kind}.csv", self._export, methods=["GET"]),
            Route(p + "/what-if", self._what_if, methods=["GET"]),
            Route(p + "/what-if", self._run, methods=["POST"]),
            Route(p + "/scenarios", self._scenarios, methods=["GET"]),
            Route(p + "/scenarios/{scenario_id}", self._scenario, methods=["GET"]),
            Route(p + "/scenarios/{scenario_id}/results.csv", self._export, methods=["GET"]),
            Route(p + "/scenarios/{scenario_id}/rename", self._rename, methods=["POST"]),
            Route(p + "/scenarios/{scenario_id}/delete", self._delete, methods=["POST"]),
            Route(p + "/entities/{name}", self._entity, methods=["GET"]),
            Route(p + "/{name}", self._entity, methods=["GET"]),
        ]

    def _page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        return self._shell.page(request, template, status, entity_path=entity_path, **values)

    # -- the list ------------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        params = request.query_params
        query = ListQuery(
            search=params.get("q", "").strip()[:200],
            owner=params.get("owner", "").strip()[:128],
            tag=params.get("tag", "").strip()[:63],
            kind=params.get("kind", ""),
            lifecycle=params.get("lifecycle", ""),
        )
        if (query.kind and query.kind not in KINDS) or (
            query.lifecycle and query.lifecycle not in LIFECYCLES
        ):
            return self._shell.refused(request, Refusal("There is no such kind or lifecycle.", 400))
        token = params.get("page", "")
        listed = await self._shell.call(
            request,
            lambda: self._catalog.list_entities(
                search=query.search,
                owner=query.owner,
                tag=query.tag,
                kind=KINDS.get(query.kind, pb.ENTITY_KIND_UNSPECIFIED),
                lifecycle=LIFECYCLES.get(query.lifecycle, pb.LIFECYCLE_UNSPECIFIED),
                page=PageRequest(page_size=ENTITIES_PER_PAGE, page_token=token),
            ),
            "read the catalog",
        )
        keep = {"q" if key == "search" else key: value for key, value in query.filters().items()}
        values: dict[str, Any] = {
            "section": "catalog",
            "query": query,
            "kinds": list(KINDS),
            "lifecycles": list(LIFECYCLES),
            "kind_names": KIND_NAMES,
            "lifecycle_names": LIFECYCLE_NAMES,
            "paged": bool(token),
            "first_url": "?" + urlencode(keep) if keep else "?",
        }
        if isinstance(listed, Refusal):
            return self._page(
                request,
                "catalog.html",
                listed.status,
                problem=listed.message,
                entities=[],
                next_url="",
                **values,
            )
        next_token = listed.page.next_page_token
        return self._page(
            request,
            "catalog.html",
            entities=list(listed.entities),
            next_url="?" + urlencode({**keep, "page": next_token}) if next_token else "",
            **values,
        )

    # -- one entity ----------------------------------------------------------------

    async def _entity(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        name = request.path_params["name"]
        found = await self._shell.call(
            request, lambda: self._catalog.get_entity(name=name), "read the catalog"
        )
        if isinstance(found, Refusal):
            return self._shell.refused(request, found, back="/catalog")
        entity = found.entity
        availability, statuses = await asyncio.gather(
            self._shell.call(request, lambda: self._catalog.get_availability(entity=name)),
            asyncio.gather(*(self._slo_status(request, name, slo.name) for slo in entity.slos)),
        )
        slos = []
        for slo, status in zip(entity.slos, statuses, strict=True):
            view = SloView(
                slo,
                window_label(slo),
                METHODS.get(slo.budgeting_method, METHODS[pb.BUDGETING_METHOD_OCCURRENCES]),
                None if isinstance(status, Refusal) else status.status,
                status.message if isinstance(status, Refusal) else "",
            )
            if view.status is not None:
                view.chart = graphs.burn_chart_svg(
                    list(view.status.daily_consumed),
                    view.status.budget.window_seconds / 86400,
                    title=f"Error budget burn of {name}/{slo.name}",
                )
            slos.append(view)
        graph, availability_problem = Markup(), ""
        if isinstance(availability, Refusal):
            availability_problem = availability.message
            figures, source = None, ""
        else:
            figures = availability.availability
            source = SOURCES.get(figures.source, "")
            graph = graphs.dependency_graph_svg(
                graphs.GraphNode(name, figures.composite),
                [graphs.GraphNode(d.entity, d.composite) for d in availability.dependencies],
                [
                    graphs.GraphEdge(e.source, e.target, e.required, e.of, e.group)
                    for e in availability.edges
                ],
                href=lambda target: self._shell.prefix + entity_path(target),
            )
        return self._page(
            request,
            "entity.html",
            section="catalog",
            entity=entity,
            kind=KIND_NAMES.get(entity.kind, "entity"),
            lifecycle=LIFECYCLE_NAMES.get(entity.lifecycle, ""),
            links=[(link, web_link(link.url)) for link in entity.links],
            availability=figures,
            source=source,
            availability_problem=availability_problem,
            graph=graph,
            slos=slos,
            budget=entity.budget if entity.HasField("budget") else None,
            group_label=graphs.group_label,
        )

    async def _slo_status(
        self, request: Request, entity: str, slo: str
    ) -> pb.GetSloStatusResponse | Refusal:
        return await self._shell.call(
            request, lambda: self._catalog.get_slo_status(entity=entity, slo=slo)
        )

    # -- what-if -------------------------------------------------------------------

    async def _suggestions(self, request: Request) -> list[str]:
        listed = await self._shell.call(
            request,
            lambda: self._catalog.list_entities(page=PageRequest(page_size=SUGGESTED_NAMES)),
        )
        return [] if isinstance(listed, Refusal) else [e.name for e in listed.entities]

    async def _what_if(self, request: Request) -> Response:
        return self._shell.signed_out(request) or await self._editor(request)

    async def _run(self, request: Request) -> Response:
        """Run the editor's scenario ("Run"), or save it and show it ("Save and share")."""
        if (away := self._shell.signed_out(request)) is not None:
            return away
        form = await self._shell.posted(request)
        if form is None:
            return self._shell.form_expired(request)
        rows = rows_of({key: [str(value) for value in form.getlist(key)] for key in form})
        name = form_text(form, "name", 200)
        try:
            overrides = overrides_of(rows)
        except FormProblem as unreadable:
            return await self._editor(request, rows, name, problem=str(unreadable), status=400)
        scenario = pb.Scenario(name=name, overrides=overrides)
        if form.get("action") == "save":
            return await self._save(request, rows, scenario)
        ran = await self._shell.call(
            request, lambda: self._catalog.run_what_if(scenario=scenario), "run scenarios"
        )
        if isinstance(ran, Refusal):
            return await self._editor(request, rows, name, problem=ran.message, status=ran.status)
        return await self._editor(request, rows, name, impacts=list(ran.impacts))

    async def _save(
        self, request: Request, rows: list[OverrideRow], scenario: pb.Scenario
    ) -> Response:
        saved = await self._shell.call(
            request, lambda: self._catalog.save_scenario(scenario=scenario), "save scenarios"
        )
        if isinstance(saved, Refusal):
            return await self._editor(
                request, rows, scenario.name, problem=saved.message, status=saved.status
            )
        notice = "saved" if saved.created else "saved-before"
        return self._shell.redirect(
            f"/catalog/scenarios/{quote(saved.scenario.id, safe='')}?notice={notice}"
        )

    async def _editor(
        self,
        request: Request,
        rows: list[OverrideRow] | None = None,
        name: str = "",
        *,
        impacts: list[pb.EntityImpact] | None = None,
        problem: str = "",
        status: int = 200,
    ) -> Response:
        if rows is None:
            rows, name, problem, status = await self._starting_rows(request)
        shown = [row for row in rows if not row.empty]
        try:
            wanted = int(request.query_params.get("rows", EDITOR_ROWS))
        except ValueError:
            wanted = EDITOR_ROWS
        blank = max(min(wanted, MAX_EDITOR_ROWS) - len(shown), 1)
        shown += [OverrideRow() for _ in range(blank)]
        return self._page(
            request,
            "what_if.html",
            status,
            section="what-if",
            rows=shown,
            name=name,
            names=await self._suggestions(request),
            impacts=[impact_view(impact) for impact in impacts or ()],
            ran=impacts is not None,
            problem=problem,
        )

    async def _starting_rows(self, request: Request) -> tuple[list[OverrideRow], str, str, int]:
        """(rows, name, problem, status) to start with: a saved scenario's, or one entity's."""
        params = request.query_params
        if params.get("from"):
            opened = await self._shell.call(
                request, lambda: self._catalog.get_scenario(id=params["from"][:64])
            )
            if isinstance(opened, Refusal):
                return [], "", opened.message, opened.status
            overrides = opened.scenario.overrides
            return [OverrideRow.of(o) for o in overrides], opened.scenario.name, "", 200
        entity = params.get("entity", "").strip()[:63]
        return ([OverrideRow(entity=entity)] if entity else []), "", "", 200

    # -- saved scenarios -------------------------------------------------------------

    async def _scenarios(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        token = request.query_params.get("page", "")
        listed = await self._shell.call(
            request,
            lambda: self._catalog.list_scenarios(
                page=PageRequest(page_size=SCENARIOS_PER_PAGE, page_token=token)
            ),
        )
        notice = NOTICES.get(request.query_params.get("notice", ""), "")
        if isinstance(listed, Refusal):
            return self._page(
                request,
                "scenarios.html",
                listed.status,
                section="scenarios",
                problem=listed.message,
                scenarios=[],
                next_url="",
                paged=bool(token),
            )
        next_token = listed.page.next_page_token
        return self._page(
            request,
            "scenarios.html",
            section="scenarios",
            notice=notice,
            scenarios=list(listed.scenarios),
            next_url="?" + urlencode({"page": next_token}) if next_token else "",
            paged=bool(token),
        )

    async def _scenario(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        scenario_id = request.path_params["scenario_id"][:64]
        opened = await self._shell.call(
            request, lambda: self._catalog.get_scenario(id=scenario_id), "read scenarios"
        )
        if isinstance(opened, Refusal):
            return self._shell.refused(request, opened, back="/catalog/scenarios")
        path = f"{self._shell.prefix}/catalog/scenarios/{quote(scenario_id, safe='')}"
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return self._page(
            request,
            "scenario.html",
            section="scenarios",
            notice=NOTICES.get(request.query_params.get("notice", ""), ""),
            scenario=opened.scenario,
            overrides=[(o, OverrideRow.of(o)) for o in opened.scenario.overrides],
            impacts=[impact_view(impact) for impact in opened.impacts],
            share_url=origin + path,
            path=path,
        )

    async def _rename(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        form = await self._shell.posted(request)
        if form is None:
            return self._shell.form_expired(request)
        scenario_id = request.path_params["scenario_id"][:64]
        name = form_text(form, "name", 200)
        renamed = await self._shell.call(
            request,
            lambda: self._catalog.rename_scenario(id=scenario_id, name=name),
            "rename scenarios",
        )
        if isinstance(renamed, Refusal):
            return self._shell.refused(request, renamed, back="/catalog/scenarios")
        return self._shell.redirect("/catalog/scenarios?notice=renamed")

    async def _delete(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        form = await self._shell.posted(request)
        if form is None:
            return self._shell.form_expired(request)
        scenario_id = request.path_params["scenario_id"][:64]
        deleted = await self._shell.call(
            request, lambda: self._catalog.delete_scenario(id=scenario_id), "delete scenarios"
        )
        if isinstance(deleted, Refusal):
            return self._shell.refused(request, deleted, back="/catalog/scenarios")
        return self._shell.redirect("/catalog/scenarios?notice=deleted")

    # -- CSV -------------------------------------------------------------------------

    async def _export(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        scenario_id = request.path_params.get("scenario_id", "")[:64]
        if scenario_id:
            kind, filename = pb.CSV_EXPORT_KIND_SCENARIO, f"scenario-{scenario_id[:12]}.csv"
        elif request.path_params.get("kind") in CSV_KINDS:
            kind = CSV_KINDS[request.path_params["kind"]]
            filename = f"{request.path_params['kind']}.csv"
        else:
            return self._shell.not_found(request)
        token = request_token(request)
        try:
            with calling_as(token):
                stream = aiter(self._catalog.export_csv(kind=kind, scenario_id=scenario_id))
                first = await anext(stream, None)
        except ConductorError as error:
            return self._shell.refused(request, refusal_of(error, "export the catalog"))

        async def body() -> AsyncIterator[bytes]:
            if first is None:
                return
            yield first.data
            with calling_as(token):
                async for piece in stream:
                    yield piece.data

        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f"attachment; filename={filename}",
            },
        )
