"""Creating, reading, listing, updating and deleting the catalog's entities.

Every write checks the entity against the catalog's rules (`specs.check_entity`)
and against the catalog itself in the same transaction: its dependencies and
system name entities that exist (UNKNOWN_ENTITY), and the dependency graph
stays acyclic (DEPENDENCY_CYCLE, naming the cycle) under a per-tenant lock, so
two concurrent updates cannot close a cycle between them. Updates and deletes
are conditional on the etag the caller read (ETAG_MISMATCH otherwise).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    ErrorReason,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    quoted,
)
from core.pagination import Page
from interceptors.tokens import Principal
from servers.catalog import store
from servers.catalog.composite import DependencyCycle, Node, Requirement, composite_availability
from servers.catalog.descriptor_files import CatalogFile, with_slos
from servers.catalog.specs import (
    EntitySpec,
    LinkSpec,
    check_entity,
    check_name,
    dependencies_from_json,
    dependencies_to_json,
    slo_from_json,
    slo_to_json,
)
from servers.catalog.store import EntityFilter, EntityRow
from servers.runtime import Runtime


def new_etag() -> str:
    """An opaque etag, new at every change."""
    return secrets.token_hex(16)


def spec_of(row: EntityRow) -> EntitySpec:
    """The entity a row holds."""
    return EntitySpec(
        kind=row.kind,
        name=row.name,
        title=row.title,
        description=row.description,
        owner=row.owner,
        lifecycle=row.lifecycle,
        tags=tuple(row.tags),
        links=tuple(LinkSpec(link["url"], link.get("title", "")) for link in row.links),
        system=row.system,
        dependencies=dependencies_from_json(row.dependencies),
        slos=tuple(slo_from_json(slo) for slo in row.slos),
        expected_availability=row.expected_availability,
        requests_per_second=row.requests_per_second,
    )


def _fill(row: EntityRow, spec: EntitySpec) -> None:
    row.title = spec.title
    row.description = spec.description
    row.owner = spec.owner
    row.lifecycle = spec.lifecycle
    row.tags = list(spec.tags)
    row.links = [{"url": link.url, "title": link.title} for link in spec.links]
    row.system = spec.system
    row.dependencies = dependencies_to_json(spec.dependencies)
    row.slos = [slo_to_json(slo) for slo in spec.slos]
    row.expected_availability = spec.expected_availability
    row.requests_per_second = spec.requests_per_second
    row.search_text = "\n".join((spec.name, spec.title, spec.description)).lower()


def _new_row(tenant: uuid.UUID, spec: EntitySpec, now: datetime) -> EntityRow:
    row = EntityRow(
        id=uuid.uuid4(),
        tenant_id=tenant,
        name=spec.name,
        kind=spec.kind,
        etag=new_etag(),
        created_at=now,
        updated_at=now,
        budget_id="",
        budget_linked_at=None,
    )
    _fill(row, spec)
    return row


def graph_nodes(specs: Iterable[EntitySpec]) -> dict[str, Node]:
    """The dependency graph of `specs`, every entity taken as always available."""
    return {
        spec.name: Node(
            1.0,
            tuple(Requirement(d.targets, d.required) for d in spec.dependencies),
        )
        for spec in specs
    }


def cycle_refused(
    cycle: DependencyCycle, what: str = "the dependencies would form"
) -> FailedPrecondition:
    """The refusal of a dependency cycle, naming it ("a → b → a")."""
    named = " → ".join(cycle.cycle)
    return FailedPrecondition(
        f"{what} a cycle: {named}",
        reason=ErrorReason.ERROR_REASON_DEPENDENCY_CYCLE,
        metadata={"cycle": named},
    )


def refuse_cycles(nodes: Mapping[str, Node]) -> None:
    """Refuse a graph with a cycle, naming it.

    Raises:
        FailedPrecondition: The graph has a cycle (DEPENDENCY_CYCLE, metadata "cycle").
    """
    try:
        composite_availability(nodes)
    except DependencyCycle as cycle:
        raise cycle_refused(cycle) from None


def unknown_entity(name: str, field_path: str) -> FailedPrecondition:
    """The refusal of a reference to an entity that does not exist."""
    return FailedPrecondition(
        f"{field_path} names {quoted(name)}, which is not in the catalog",
        reason=ErrorReason.ERROR_REASON_UNKNOWN_ENTITY,
        metadata={"entity": name, "field": field_path},
    )


def _etag_mismatch(name: str, current: str) -> Conflict:
    return Conflict(
        f"entity {quoted(name)} changed since it was read; read it again and retry",
        reason=ErrorReason.ERROR_REASON_ETAG_MISMATCH,
        metadata={"etag": current},
    )


def check_references(spec: EntitySpec, kinds: Mapping[str, str]) -> None:
    """Refuse references of `spec` to entities not in `kinds` (name → kind), or to a non-system.

    Raises:
        FailedPrecondition: A dependency or the system names no entity (UNKNOWN_ENTITY).
        InvalidArgument: The system is not a system.
    """
    for index, dependency in enumerate(spec.dependencies):
        for position, target in enumerate(dependency.targets):
            if target not in kinds:
                raise unknown_entity(target, f"dependencies[{index}].targets[{position}]")
    if spec.system:
        kind = kinds.get(spec.system)
        if kind is None:
            raise unknown_entity(spec.system, "system")
        if kind != "system":
            raise InvalidArgument(
                f"system {quoted(spec.system)} is a {kind}, not a system", field="system"
            )


@dataclass(frozen=True)
class ImportCounts:
    """What an import did (or, dry, would do)."""

    created: int
    updated: int
    unchanged: int
    slos: int


def _in_document(error: DomainError, position: int) -> DomainError:
    """`error`, found in an imported entity, said of its document."""
    field = error.metadata.get("field", "")
    if isinstance(error, InvalidArgument):
        return InvalidArgument(
            f"document {position}: {error.message}",
            field="yaml",
            reason=ErrorReason.ERROR_REASON_DOCUMENT_INVALID,
            metadata={"document": str(position), "field": field},
        )
    error.metadata["document"] = str(position)
    error.message = f"document {position}: {error.message}"
    error.args = (error.message,)
    return error


def _checked_import(
    file: CatalogFile, rows: list[EntityRow]
) -> tuple[dict[str, EntitySpec], list[str], list[str]]:
    """The file's entities checked against the catalog `rows`: (checked, created, changed).

    CPU work over the whole catalog, run off the event loop.

    Raises:
        As `Entities.import_file`.
    """
    kinds_now = {row.name: row.kind for row in rows}
    current = {row.name: spec_of(row) for row in rows}
    merged = with_slos(file, current)
    checked: dict[str, EntitySpec] = {}
    for name, spec in merged.items():
        position = file.positions.get(name) or next(
            file.positions[f"{name}/{slo.name}"]
            for slo in spec.slos
            if f"{name}/{slo.name}" in file.positions
        )
        try:
            checked[name] = check_entity(spec)
            if name in kinds_now and kinds_now[name] != spec.kind:
                raise InvalidArgument(
                    f"an entity's kind never changes ({name} is a {kinds_now[name]})",
                    field="kind",
                )
        except DomainError as error:
            raise _in_document(error, position) from None
    kinds = {name: spec.kind for name, spec in (current | checked).items()}
    for name, spec in checked.items():
        try:
            check_references(spec, kinds)
        except DomainError as error:
            raise _in_document(error, file.positions.get(name, 0)) from None
    refuse_cycles(graph_nodes((current | checked).values()))
    created = [name for name in checked if name not in current]
    changed = [name for name in checked if name in current and checked[name] != current[name]]
    return checked, created, changed


def _of_request(error: DomainError) -> DomainError:
    """`error`, found in the request's entity, naming its field as the request does."""
    field = error.metadata.get("field")
    if field and not field.startswith("entity."):
        error.metadata["field"] = f"entity.{field}"
        if isinstance(error, InvalidArgument):
            error.field = error.metadata["field"]
    return error


class Entities:
    """The catalog's entities, for every tenant."""

    def __init__(self, runtime: Runtime) -> None:
        self._db = runtime.database
        self._clock = runtime.clock

    async def _check_references(
        self, session: AsyncSession, tenant: uuid.UUID, spec: EntitySpec
    ) -> dict[str, uuid.UUID]:
        """The ids of the entity's targets, once the references and the graph are checked.

        The caller holds the graph's lock (`store.lock_graph`).
        """
        rows = await store.entities(session)
        by_name = {row.name: row for row in rows}
        check_references(spec, {row.name: row.kind for row in rows} | {spec.name: spec.kind})

        def check_graph() -> None:
            specs = {row.name: spec_of(row) for row in rows} | {spec.name: spec}
            refuse_cycles(graph_nodes(specs.values()))

        await asyncio.to_thread(check_graph)  # the whole graph: CPU work
        return {name: by_name[name].id for name in spec.targets}

    async def create(self, principal: Principal, spec: EntitySpec) -> EntityRow:
        """Add an entity (see `_create`); refusals name the request's fields ("entity.name")."""
        try:
            return await self._create(principal, spec)
        except (InvalidArgument, FailedPrecondition) as error:
            raise _of_request(error) from None

    async def _create(self, principal: Principal, spec: EntitySpec) -> EntityRow:
        """Add an entity.

        Raises:
            InvalidArgument: It breaks a rule of the catalog.
            AlreadyExists: The name is taken.
            FailedPrecondition: A reference names no entity (UNKNOWN_ENTITY).
        """
        spec = check_entity(spec)
        now = self._clock()
        async with self._db.tenant_session(principal.tenant) as session:
            await store.lock_graph(session, principal.tenant)
            targets = await self._check_references(session, principal.tenant, spec)
            row = _new_row(principal.tenant, spec, now)
            if not await store.add_entity(session, row):
                raise AlreadyExists(
                    f"an entity called {quoted(spec.name)} exists", metadata={"name": spec.name}
                )
            await store.set_links(session, principal.tenant, row.id, spec.tags, targets.values())
        return row

    async def get(self, principal: Principal, name: str) -> EntityRow:
        """The entity called `name`.

        Raises:
            NotFound: There is none.
        """
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            row = await store.entity(session, name)
        if row is None:
            raise NotFound(f"no entity is called {quoted(name)}", metadata={"name": name})
        return row

    async def all(self, principal: Principal) -> list[EntityRow]:
        """Every entity of the tenant, by name."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            return await store.entities(session)

    async def page(
        self, principal: Principal, page: Page, narrowed: EntityFilter
    ) -> list[EntityRow]:
        """A page of entities by name (size + 1 rows), narrowed by `narrowed`."""
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            return await store.page_of_entities(session, page, narrowed)

    async def update(self, principal: Principal, spec: EntitySpec, etag: str) -> EntityRow:
        """Replace an entity's fields (see `_update`); refusals name the request's fields."""
        try:
            return await self._update(principal, spec, etag)
        except (InvalidArgument, FailedPrecondition) as error:
            raise _of_request(error) from None

    async def _update(self, principal: Principal, spec: EntitySpec, etag: str) -> EntityRow:
        """Replace an entity's fields (not its name or kind) if it still has `etag`.

        SLOs no longer named lose their recorded events.

        Raises:
            InvalidArgument: It breaks a rule of the catalog, or changes the kind.
            NotFound: There is no such entity.
            Conflict: Its etag is not `etag` (ETAG_MISMATCH).
            FailedPrecondition: A reference names no entity, or a cycle would form.
        """
        if not etag:
            raise InvalidArgument(
                "entity.etag is required to update an entity", field="entity.etag"
            )
        check_name(spec.name)
        async with self._db.tenant_session(principal.tenant) as session:
            await store.lock_graph(session, principal.tenant)
            row = await store.entity(session, spec.name)
            if row is None:
                raise NotFound(
                    f"no entity is called {quoted(spec.name)}", metadata={"name": spec.name}
                )
            spec = check_entity(replace(spec, kind=spec.kind or row.kind))
            if spec.kind != row.kind:
                raise InvalidArgument(
                    f"an entity's kind never changes (it is a {row.kind})", field="kind"
                )
            if row.etag != etag:
                raise _etag_mismatch(spec.name, row.etag)
            targets = await self._check_references(session, principal.tenant, spec)
            _fill(row, spec)  # written at commit: the lock keeps the etag checked
            row.etag = new_etag()
            row.updated_at = self._clock()
            await store.set_links(session, principal.tenant, row.id, spec.tags, targets.values())
            await store.drop_minutes_except(session, row.id, [slo.name for slo in spec.slos])
        return row

    async def import_file(
        self, principal: Principal, file: CatalogFile, *, dry_run: bool = False
    ) -> ImportCounts:
        """Create or update the file's entities and SLOs, all or nothing.

        Entities of the catalog the file does not mention stay as they are.
        Every entity is checked as by `create` and `update`, and the whole graph
        after the import must be acyclic; errors name the document (from 1).

        Raises:
            InvalidArgument: A document breaks a rule (DOCUMENT_INVALID), or
                changes an entity's kind.
            FailedPrecondition: A reference names no entity (UNKNOWN_ENTITY), or a
                cycle would form (DEPENDENCY_CYCLE).
        """
        async with self._db.tenant_session(principal.tenant) as session:
            await store.lock_graph(session, principal.tenant)
            rows = {row.name: row for row in await store.entities(session)}
            checked, created, changed = await asyncio.to_thread(
                _checked_import, file, list(rows.values())
            )
            if not dry_run:
                await self._write_imported(
                    session,
                    principal.tenant,
                    specs=checked,
                    rows=rows,
                    created=created,
                    changed=changed,
                )
        return ImportCounts(
            created=len(created),
            updated=len(changed),
            unchanged=len(checked) - len(created) - len(changed),
            slos=len(file.slos),
        )

    async def _write_imported(
        self,
        session: AsyncSession,
        tenant: uuid.UUID,
        *,
        specs: Mapping[str, EntitySpec],
        rows: dict[str, EntityRow],
        created: list[str],
        changed: list[str],
    ) -> None:
        now = self._clock()
        new_rows = await asyncio.to_thread(  # a thousand rows take a while to build
            lambda: [_new_row(tenant, specs[name], now) for name in created]
        )
        await store.add_entities(session, new_rows)  # all first: new entities depend on new ones
        rows.update((row.name, row) for row in new_rows)
        for name in changed:
            row = rows[name]
            _fill(row, specs[name])
            row.etag = new_etag()
            row.updated_at = now
            await store.drop_minutes_except(session, row.id, [slo.name for slo in specs[name].slos])
        links = {
            rows[name].id: (specs[name].tags, [rows[t].id for t in specs[name].targets])
            for name in (*created, *changed)
        }
        await store.replace_links(session, tenant, links)

    async def delete(self, principal: Principal, name: str, etag: str) -> None:
        """Delete an entity and its events if it still has `etag` and nothing depends on it.

        Raises:
            NotFound: There is no such entity.
            Conflict: Its etag is not `etag` (ETAG_MISMATCH).
            FailedPrecondition: Others depend on it or are part of it (ENTITY_IN_USE,
                metadata "dependents").
        """
        async with self._db.tenant_session(principal.tenant) as session:
            await store.lock_graph(session, principal.tenant)
            row = await store.entity(session, name)
            if row is None:
                raise NotFound(f"no entity is called {quoted(name)}", metadata={"name": name})
            if row.etag != etag:
                raise _etag_mismatch(name, row.etag)
            dependents = await store.dependents(session, row.id, row.name)
            if dependents:
                listed = ", ".join(dependents[:20])
                raise FailedPrecondition(
                    f"entity {quoted(name)} is a dependency of {listed}",
                    reason=ErrorReason.ERROR_REASON_ENTITY_IN_USE,
                    metadata={"dependents": listed},
                )
            await store.delete_entity(session, row.id)
