"""Tenant confinement, enforced by the session rather than by each query.

In a tenant session every ORM SELECT, UPDATE and DELETE runs with the
session's tenant added as criteria on every `TenantScoped` entity in it
(SQLAlchemy's `with_loader_criteria`, which also reaches joins, subqueries,
relationship loads and bulk statements); ORM INSERT rows must carry the
session's tenant. Outside a tenant session, any statement that touches a
tenant-scoped table fails with `TenantScopeError` unless it opts in with
`execution_options(all_tenants=True)`, for platform jobs that work across
tenants by design. New and changed rows are stamped with, and checked
against, the session's tenant at flush.

Stores query tenant rows through ORM entities (`select(Model)`); the criteria
do not rewrite Core `Table` constructs. An INSERT of a SELECT (copying rows
between tables, for example from a staging table) cannot have its rows
checked one by one: it is built with `copy_rows`, which confines every
tenant table the SELECT reads to the session's tenant, and is refused in a
tenant session otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Executable, Insert, Select, Table, event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, with_loader_criteria
from sqlalchemy.sql import visitors
from sqlalchemy.sql.selectable import Alias

from servers.db.base import TenantScoped

#: Key of the tenant id in `Session.info`.
TENANT_KEY = "tenant_id"
#: Execution option that lets a platform job query across tenants.
ALL_TENANTS = "all_tenants"
#: Execution option marking an INSERT ... SELECT built by `copy_rows`, with its tenant.
_COPY_TENANT = "intelgraph_copy_tenant"


class TenantScopeError(RuntimeError):
    """A statement would read or write tenant rows without a tenant, or another tenant's."""


def session_tenant(session: Session) -> uuid.UUID | None:
    """The tenant a session is confined to, if any."""
    tenant: uuid.UUID | None = session.info.get(TENANT_KEY)
    return tenant


def tenant_tables(statement: Executable) -> list[str]:
    """Names of the tenant-scoped tables a statement touches.

    A table is tenant-scoped when it has a `tenant_id` column, the column
    `TenantScoped` adds; the convention is the enforcement, so Core tables
    and ORM models are caught alike.
    """
    return sorted(
        {
            element.name
            for element in visitors.iterate(cast(visitors.ExternallyTraversible, statement))
            if isinstance(element, Table) and "tenant_id" in element.c
        }
    )


@event.listens_for(Session, "do_orm_execute")
def _confine_statement(state: ORMExecuteState) -> None:
    if state.is_column_load or state.is_relationship_load:
        # Loader criteria added to the parent statement already propagate here.
        return
    if state.execution_options.get(ALL_TENANTS, False):
        return
    tenant = session_tenant(state.session)
    if tenant is None:
        touched = tenant_tables(state.statement)
        if touched:
            raise TenantScopeError(
                f"statement on tenant-scoped {', '.join(touched)} outside a tenant session"
            )
        return
    if state.is_insert:
        if state.execution_options.get(_COPY_TENANT) == tenant:
            return  # built by copy_rows: its SELECT reads this tenant's rows only
        if tenant_tables(state.statement):
            _check_insert_rows(state, tenant)
        return
    if state.is_select or state.is_update or state.is_delete:
        # Added to every statement: criteria reach entities however they got
        # into it (select_from, joins, subqueries), which no mapper list does.
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantScoped, lambda cls: cls.tenant_id == tenant, include_aliases=True
            )
        )


def _check_insert_rows(state: ORMExecuteState, tenant: uuid.UUID) -> None:
    rows: Any = state.parameters
    if not rows:
        raise TenantScopeError(
            "ORM INSERT into a tenant-scoped model must pass its rows as parameters "
            "(session.execute(insert(Model), [row, ...])) so their tenant can be checked"
        )
    for row in rows if isinstance(rows, list) else [rows]:
        if row.get("tenant_id") != tenant:
            raise TenantScopeError("INSERT row for another tenant (or without tenant_id)")


@event.listens_for(Session, "before_flush")
def _stamp_tenant(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    tenant = session_tenant(session)
    for row in (*session.new, *session.dirty):
        if not isinstance(row, TenantScoped):
            continue
        if tenant is None:
            raise TenantScopeError(
                f"writing tenant-scoped {type(row).__name__} outside a tenant session"
            )
        current: uuid.UUID | None = row.tenant_id
        if current is None:
            row.tenant_id = tenant
        elif current != tenant:
            raise TenantScopeError(f"writing {type(row).__name__} of another tenant")


InsertT = TypeVar("InsertT", bound=Insert)


def copy_rows(
    insert: InsertT,
    columns: Sequence[str],
    source: Select[*tuple[Any, ...]],
    tenant: uuid.UUID,
) -> InsertT:
    """`insert` of the rows `source` selects, confined to `tenant`'s rows.

    Every tenant-scoped table `source` reads is filtered to `tenant`, so the
    copy can only read (and, selecting their `tenant_id`, only write) that
    tenant's rows. Run it in a session of the same tenant.

    Raises:
        TenantScopeError: `source` reads a tenant table through an alias,
            which the filter cannot reach.
    """
    confined = source
    for element in visitors.iterate(cast(visitors.ExternallyTraversible, source)):
        if isinstance(element, Table) and "tenant_id" in element.c:
            confined = confined.where(element.c.tenant_id == tenant)
        elif isinstance(element, Alias):
            raise TenantScopeError("copy_rows cannot confine an aliased table")
    return insert.from_select(list(columns), confined).execution_options(**{_COPY_TENANT: tenant})
