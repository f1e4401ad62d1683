"""The store side of keyset pagination: a query continued after a page token's position.

`core.pagination.Page` decodes the position; this turns it into SQL, the same
way for every list: rows strictly after the position in the list's order,
fetched one beyond the page so `Page.next_token` can tell whether more follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

RowT = TypeVar("RowT")
#: A keyset column: a mapped attribute or any column expression.
KeyColumn = ColumnElement[Any] | InstrumentedAttribute[Any]


def after_position(
    query: Select[RowT],
    columns: Sequence[KeyColumn],
    after: Sequence[Any] | None,
    limit: int,
    *,
    descending: bool = True,
) -> Select[RowT]:
    """`query` ordered by `columns` (newest first by default), after `after`, at most `limit` rows.

    Args:
        query: The list's query, already filtered.
        columns: The keyset's columns, in the order the page token carries them.
        after: The decoded position (`Page.after`); None on the first page.
        limit: Rows to fetch (the page's size plus one).
        descending: Order from the largest key down (the lists' default), or up.
    """
    if after is not None:
        key = tuple_(*columns)
        position = tuple_(*after)
        query = query.where(key < position if descending else key > position)
    order = [column.desc() if descending else column.asc() for column in columns]
    return query.order_by(*order).limit(limit)
