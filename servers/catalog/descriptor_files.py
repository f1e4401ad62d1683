"""The catalog as YAML descriptor files: Backstage-style entities and OpenSLO-style SLOs.

One file holds any number of documents. Entities are Backstage's
`backstage.io/v1alpha1` kinds Component, API, Resource and System: `metadata`
(name, title, description, tags, links, and two annotations of ours for the
expected availability and traffic) and `spec` (owner, lifecycle, system,
`dependsOn` as entity references such as `resource:db` or
`component:default/api`). Redundancy groups are our extension,
`spec.dependencyGroups: [{name, required, targets}]`. SLOs are `openslo/v1`
kind SLO documents naming their entity in `spec.service`, with one objective
(target, and for timeslices timeSliceTarget and timeSliceWindow), a time
window (rolling `28d`/`4w`, or a calendar `1w`/`1M`/`1Q` with `isRolling:
false`), a budgeting method and a ratio-metric indicator of Prometheus queries.

Reading refuses anchors and aliases (a few lines of aliases can expand into
gigabytes), more than `MAX_DOCUMENTS` documents or `MAX_EVENTS` YAML nodes (so
a file costs well under a second to read, whatever it holds), and any document
it does not understand, naming the document (from 1) and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

from core.errors import ErrorReason, InvalidArgument
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

BACKSTAGE = "backstage.io/v1alpha1"
OPENSLO = "openslo/v1"
MAX_DOCUMENTS = 5000
#: YAML events (scalars, starts and ends of mappings and sequences) a file may hold: some
#: fifty per entity at most, so a full file of entities fits, and reading stays well under a
#: second of CPU whatever is sent.
MAX_EVENTS = 250_000
AVAILABILITY_ANNOTATION = "conductor.intelgraph.io/expected-availability"
TRAFFIC_ANNOTATION = "conductor.intelgraph.io/requests-per-second"

_KINDS = {"Component": "component", "API": "api", "Resource": "resource", "System": "system"}
_KIND_NAMES = {kind: name for name, kind in _KINDS.items()}
#: What Backstage wants in spec.type, where we keep none.
_DEFAULT_TYPE = {"component": "service", "api": "openapi", "resource": "database"}
_REF = re.compile(r"(?:(?P<kind>[A-Za-z]+):)?(?:(?P<namespace>[a-z0-9-]+)/)?(?P<name>.+)")
_END = object()
_ROLLING = re.compile(r"(?P<count>[1-9][0-9]{0,2})(?P<unit>[dw])")
_CALENDAR = {"1w": "week", "1M": "month", "1Q": "quarter"}
_CALENDAR_DURATION = {period: duration for duration, period in _CALENDAR.items()}
_SLICE = re.compile(r"(?P<count>[1-9][0-9]?)m")

try:  # libyaml's parser when the wheel has it: much faster on large files
    _Parser: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - wheels without libyaml
    _Parser = yaml.SafeLoader


class _Loader(_Parser):  # type: ignore[misc,valid-type]
    """The safe loader (plain data only; any other tag refused), refusing duplicate keys.

    YAML says keys are unique; PyYAML would keep the last silently, so
    `{name: a, name: b}` would create `b`.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


@dataclass(frozen=True)
class CatalogFile:
    """What a file declares: entities, and SLOs by entity (in file order)."""

    entities: tuple[EntitySpec, ...]
    slos: tuple[tuple[str, SloSpec], ...]
    #: Where each entity and SLO came from, for errors found later: (name or
    #: "entity/slo") → document position (from 1).
    positions: Mapping[str, int]


def document_invalid(document: int, field: str, problem: str) -> InvalidArgument:
    """A refusal naming the document (from 1; 0: the file as a whole) and the field."""
    where = {"document": str(document)} if document else {}
    return InvalidArgument(
        f"document {document}: {field}: {problem}" if document else f"{field}: {problem}",
        field="yaml",
        reason=ErrorReason.ERROR_REASON_DOCUMENT_INVALID,
        metadata={**where, "field": field},
    )


class _Reader:
    """Reads fields of one document, refusing what is not as expected."""

    def __init__(self, document: int) -> None:
        self.document = document

    def invalid(self, field: str, problem: str) -> InvalidArgument:
        return document_invalid(self.document, field, problem)

    def mapping(self, value: Any, field: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.invalid(field, "must be a mapping")
        return value

    def text(self, value: Any, field: str, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.invalid(field, "must be a string")
        return value

    def texts(self, value: Any, field: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.invalid(field, "must be a list of strings")
        return value

    def items(self, value: Any, field: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.invalid(field, "must be a list")
        return value

    def fraction(self, value: Any, field: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.invalid(field, "must be a number") from None
        if isinstance(value, bool) or not 0.0 <= number <= 1.0:
            raise self.invalid(field, "must be a number between 0 and 1")
        return number

    def reference(self, value: Any, field: str) -> str:
        ref = _REF.fullmatch(self.text(value, field))
        if ref is None or ref["namespace"] not in (None, "default"):
            raise self.invalid(field, "must name an entity of the default namespace")
        return ref["name"]


def _refuse_aliases(data: bytes) -> None:
    try:
        for count, event in enumerate(yaml.parse(data, Loader=_Loader)):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise document_invalid(0, "yaml", "anchors and aliases are not accepted")
            if count >= MAX_EVENTS:
                raise document_invalid(0, "yaml", f"more than {MAX_EVENTS} YAML nodes in one file")
    except yaml.YAMLError as error:
        raise InvalidArgument(
            f"the YAML does not parse: {str(error)[:200]}",
            field="yaml",
            reason=ErrorReason.ERROR_REASON_DOCUMENT_INVALID,
        ) from None


def _entity(reader: _Reader, document: Mapping[str, Any], kind: str) -> EntitySpec:
    metadata = reader.mapping(document.get("metadata"), "metadata")
    spec = reader.mapping(document.get("spec"), "spec")
    annotations = reader.mapping(metadata.get("annotations"), "metadata.annotations")
    links = []
    for index, link in enumerate(reader.items(metadata.get("links"), "metadata.links")):
        fields = reader.mapping(link, f"metadata.links[{index}]")
        links.append(
            LinkSpec(
                reader.text(fields.get("url"), f"metadata.links[{index}].url"),
                reader.text(fields.get("title"), f"metadata.links[{index}].title"),
            )
        )
    dependencies = [
        DependencySpec((reader.reference(ref, f"spec.dependsOn[{index}]"),))
        for index, ref in enumerate(reader.items(spec.get("dependsOn"), "spec.dependsOn"))
    ]
    groups = reader.items(spec.get("dependencyGroups"), "spec.dependencyGroups")
    for index, group in enumerate(groups):
        field = f"spec.dependencyGroups[{index}]"
        fields = reader.mapping(group, field)
        required = fields.get("required", 1)
        if not isinstance(required, int) or isinstance(required, bool):
            raise reader.invalid(f"{field}.required", "must be a whole number")
        targets = tuple(
            reader.reference(ref, f"{field}.targets[{at}]")
            for at, ref in enumerate(reader.items(fields.get("targets"), f"{field}.targets"))
        )
        dependencies.append(
            DependencySpec(targets, required, reader.text(fields.get("name"), f"{field}.name"))
        )
    availability = annotations.get(AVAILABILITY_ANNOTATION)
    traffic = annotations.get(TRAFFIC_ANNOTATION)
    try:
        requests_per_second = float(traffic) if traffic is not None else 0.0
    except (TypeError, ValueError):
        raise reader.invalid(f"metadata.annotations.{TRAFFIC_ANNOTATION}", "not a number") from None
    return EntitySpec(
        kind=kind,
        name=reader.text(metadata.get("name"), "metadata.name"),
        title=reader.text(metadata.get("title"), "metadata.title"),
        description=reader.text(metadata.get("description"), "metadata.description"),
        owner=reader.text(spec.get("owner"), "spec.owner"),
        lifecycle=reader.text(spec.get("lifecycle"), "spec.lifecycle", "production"),
        tags=tuple(reader.texts(metadata.get("tags"), "metadata.tags")),
        links=tuple(links),
        system=reader.text(spec.get("system"), "spec.system"),
        dependencies=tuple(dependencies),
        expected_availability=(
            reader.fraction(availability, f"metadata.annotations.{AVAILABILITY_ANNOTATION}")
            if availability is not None
            else None
        ),
        requests_per_second=requests_per_second,
    )


def _query(reader: _Reader, source: Any, field: str) -> str:
    if source is None:
        return ""
    metric = reader.mapping(reader.mapping(source, field).get("metricSource"), field)
    kind = reader.text(metric.get("type"), f"{field}.metricSource.type", "Prometheus")
    if kind.lower() != "prometheus":
        raise reader.invalid(f"{field}.metricSource.type", "only Prometheus queries are read")
    spec = reader.mapping(metric.get("spec"), f"{field}.metricSource.spec")
    return reader.text(spec.get("query"), f"{field}.metricSource.spec.query")


def _window(reader: _Reader, spec: Mapping[str, Any]) -> WindowSpec:
    windows = reader.items(spec.get("timeWindow"), "spec.timeWindow")
    if not windows:
        return WindowSpec()
    if len(windows) > 1:
        raise reader.invalid("spec.timeWindow", "one time window per SLO")
    window = reader.mapping(windows[0], "spec.timeWindow[0]")
    duration = reader.text(window.get("duration"), "spec.timeWindow[0].duration")
    if window.get("isRolling", True) is False:
        if duration not in _CALENDAR:
            raise reader.invalid("spec.timeWindow[0].duration", "a calendar window is 1w, 1M or 1Q")
        return WindowSpec(calendar=_CALENDAR[duration])
    rolling = _ROLLING.fullmatch(duration)
    if rolling is None:
        raise reader.invalid("spec.timeWindow[0].duration", "a rolling window is in days or weeks")
    days = int(rolling["count"]) * (7 if rolling["unit"] == "w" else 1)
    return WindowSpec(rolling_days=days)


def _slo(reader: _Reader, document: Mapping[str, Any]) -> tuple[str, SloSpec]:
    metadata = reader.mapping(document.get("metadata"), "metadata")
    spec = reader.mapping(document.get("spec"), "spec")
    service = reader.text(spec.get("service"), "spec.service")
    objectives = reader.items(spec.get("objectives"), "spec.objectives")
    if len(objectives) != 1:
        raise reader.invalid("spec.objectives", "one objective per SLO")
    objective = reader.mapping(objectives[0], "spec.objectives[0]")
    method = reader.text(spec.get("budgetingMethod"), "spec.budgetingMethod", "Occurrences")
    methods = {"occurrences": OCCURRENCES, "timeslices": TIMESLICES}
    if method.lower() not in methods:
        raise reader.invalid("spec.budgetingMethod", "must be Occurrences or Timeslices")
    slice_window = reader.text(
        objective.get("timeSliceWindow"), "spec.objectives[0].timeSliceWindow", "1m"
    )
    slice_minutes = _SLICE.fullmatch(slice_window)
    if slice_minutes is None:
        raise reader.invalid("spec.objectives[0].timeSliceWindow", "whole minutes, e.g. 1m")
    indicator = reader.mapping(spec.get("indicator"), "spec.indicator")
    indicator_spec = reader.mapping(indicator.get("spec"), "spec.indicator.spec")
    ratio = reader.mapping(indicator_spec.get("ratioMetric"), "spec.indicator.spec.ratioMetric")
    field = "spec.indicator.spec.ratioMetric"
    return service, SloSpec(
        name=reader.text(metadata.get("name"), "metadata.name"),
        description=reader.text(spec.get("description"), "spec.description"),
        objective=reader.fraction(objective.get("target"), "spec.objectives[0].target"),
        window=_window(reader, spec),
        budgeting_method=methods[method.lower()],
        timeslice_target=(
            reader.fraction(objective["timeSliceTarget"], "spec.objectives[0].timeSliceTarget")
            if objective.get("timeSliceTarget") is not None
            else 0.0
        ),
        timeslice_minutes=int(slice_minutes["count"]),
        indicator=IndicatorSpec(
            description=reader.text(
                reader.mapping(indicator.get("metadata"), "spec.indicator.metadata").get(
                    "displayName"
                ),
                "spec.indicator.metadata.displayName",
            ),
            good_query=_query(reader, ratio.get("good"), f"{field}.good"),
            bad_query=_query(reader, ratio.get("bad"), f"{field}.bad"),
            total_query=_query(reader, ratio.get("total"), f"{field}.total"),
        ),
    )


def read_catalog(data: bytes) -> CatalogFile:
    """The entities and SLOs a YAML file declares (not yet checked against the catalog).

    Raises:
        InvalidArgument: The file does not parse, holds aliases or too many
            documents, or a document is not one the catalog reads
            (DOCUMENT_INVALID, metadata "document" and "field").
    """
    _refuse_aliases(data)
    entities: list[EntitySpec] = []
    slos: list[tuple[str, SloSpec]] = []
    positions: dict[str, int] = {}
    documents = yaml.load_all(data, Loader=_Loader)
    position = 0
    while True:
        position += 1
        try:
            document = next(documents, _END)
        except yaml.YAMLError as error:  # an unknown tag, a duplicate key
            problem = " ".join(str(error).split())
            raise document_invalid(position, "yaml", problem[:200]) from None
        if document is _END:
            break
        if position > MAX_DOCUMENTS:
            raise document_invalid(position, "yaml", f"at most {MAX_DOCUMENTS} documents per file")
        if document is None:
            continue
        reader = _Reader(position)
        fields = reader.mapping(document, "document")
        api_version = fields.get("apiVersion")
        kind = fields.get("kind")
        if api_version == BACKSTAGE and kind in _KINDS:
            entity = _entity(reader, fields, _KINDS[kind])
            if entity.name in positions:
                raise reader.invalid("metadata.name", f"{entity.name!r} is declared twice")
            positions[entity.name] = position
            entities.append(entity)
        elif api_version == OPENSLO and kind == "SLO":
            service, slo = _slo(reader, fields)
            key = f"{service}/{slo.name}"
            if key in positions:
                raise reader.invalid("metadata.name", f"SLO {key!r} is declared twice")
            positions[key] = position
            slos.append((service, slo))
        else:
            raise reader.invalid(
                "kind",
                f"not a catalog document ({BACKSTAGE} Component, API, Resource or System; "
                f"{OPENSLO} SLO)",
            )
    return CatalogFile(tuple(entities), tuple(slos), positions)


def _reference(name: str, kinds: Mapping[str, str]) -> str:
    kind = kinds.get(name, "component")
    return name if kind == "component" else f"{kind}:{name}"


def _entity_document(entity: EntitySpec, kinds: Mapping[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": entity.name}
    for key, value in (("title", entity.title), ("description", entity.description)):
        if value:
            metadata[key] = value
    if entity.tags:
        metadata["tags"] = list(entity.tags)
    if entity.links:
        metadata["links"] = [
            {"url": link.url, **({"title": link.title} if link.title else {})}
            for link in entity.links
        ]
    annotations = {}
    if entity.expected_availability is not None:
        annotations[AVAILABILITY_ANNOTATION] = repr(entity.expected_availability)
    if entity.requests_per_second:
        annotations[TRAFFIC_ANNOTATION] = repr(entity.requests_per_second)
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {}
    if entity.kind in _DEFAULT_TYPE:
        spec["type"] = _DEFAULT_TYPE[entity.kind]
    spec["lifecycle"] = entity.lifecycle
    spec["owner"] = entity.owner
    if entity.system:
        spec["system"] = entity.system
    plain = [d for d in entity.dependencies if len(d.targets) == 1 and not d.group]
    groups = [d for d in entity.dependencies if len(d.targets) > 1 or d.group]
    if plain:
        spec["dependsOn"] = [_reference(d.targets[0], kinds) for d in plain]
    if groups:
        spec["dependencyGroups"] = [
            {
                **({"name": d.group} if d.group else {}),
                "required": d.required,
                "targets": [_reference(target, kinds) for target in d.targets],
            }
            for d in groups
        ]
    return {
        "apiVersion": BACKSTAGE,
        "kind": _KIND_NAMES[entity.kind],
        "metadata": metadata,
        "spec": spec,
    }


def _metric(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _slo_document(service: str, slo: SloSpec) -> dict[str, Any]:
    window = slo.window
    time_window = (
        {"duration": _CALENDAR_DURATION[window.calendar], "isRolling": False}
        if window.calendar
        else {"duration": f"{window.rolling_days}d", "isRolling": True}
    )
    objective: dict[str, Any] = {"target": slo.objective}
    if slo.budgeting_method == TIMESLICES:
        objective["timeSliceTarget"] = slo.slice_target
        objective["timeSliceWindow"] = f"{slo.timeslice_minutes}m"
    spec: dict[str, Any] = {"service": service}
    if slo.description:
        spec["description"] = slo.description
    indicator = slo.indicator
    if indicator.total_query:
        ratio: dict[str, Any] = {"counter": True}
        if indicator.good_query:
            ratio["good"] = _metric(indicator.good_query)
        if indicator.bad_query:
            ratio["bad"] = _metric(indicator.bad_query)
        ratio["total"] = _metric(indicator.total_query)
        spec["indicator"] = {
            "metadata": {"name": f"{service}-{slo.name}", "displayName": indicator.description},
            "spec": {"ratioMetric": ratio},
        }
    spec["timeWindow"] = [time_window]
    spec["budgetingMethod"] = "Timeslices" if slo.budgeting_method == TIMESLICES else "Occurrences"
    spec["objectives"] = [objective]
    return {"apiVersion": OPENSLO, "kind": "SLO", "metadata": {"name": slo.name}, "spec": spec}


def write_catalog(entities: Sequence[EntitySpec]) -> bytes:
    """The YAML `read_catalog` reads back to `entities` (entities first, then their SLOs)."""
    kinds = {entity.name: entity.kind for entity in entities}
    documents: list[dict[str, Any]] = [_entity_document(e, kinds) for e in entities]
    documents += [_slo_document(e.name, slo) for e in entities for slo in e.slos]
    text = yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True, width=1000)
    return text.encode()


def with_slos(file: CatalogFile, current: Mapping[str, EntitySpec]) -> dict[str, EntitySpec]:
    """The entities the file declares, merged with `current`, with the file's SLOs applied.

    An entity in the file replaces the current one but keeps the current SLOs
    the file does not redeclare; an SLO document replaces its entity's SLO of
    that name or adds one (to an entity of the file or of the catalog).

    Raises:
        InvalidArgument: An SLO names an entity neither the file nor the catalog has.
    """
    merged: dict[str, EntitySpec] = {}
    for entity in file.entities:
        kept = current.get(entity.name)
        merged[entity.name] = replace(entity, slos=kept.slos if kept is not None else ())
    for service, slo in file.slos:
        found = merged.get(service) or current.get(service)
        if found is None:
            raise document_invalid(
                file.positions[f"{service}/{slo.name}"],
                "spec.service",
                f"{service!r} is neither in the file nor in the catalog",
            )
        entity = found
        names = [existing.name for existing in entity.slos]
        slos = list(entity.slos)
        if slo.name in names:
            slos[names.index(slo.name)] = slo
        else:
            slos.append(slo)
        merged[service] = replace(entity, slos=tuple(slos))
    return merged
