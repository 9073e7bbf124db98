"""The search and list filters as one SQL WHERE clause.

What each filter means is said once, in the SQL function ``memory_visible(m, f)``
(``db/functions/memory_visible.sql``), over a ``search_filters`` value (migration 0010) built
here from a :class:`Filters` value's attributes in order; bm25_candidates applies the same
function. A new filter: a ``search_filters`` attribute, the same-named attribute of
:class:`Filters` and field of the API's ``SearchFilters`` (a test pins all three), one line in
the function.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from psycopg.types.json import Jsonb


class Filters(Protocol):
    """What a search or a listing is narrowed by, as plain values (None = no filter). The API's
    validated ``SearchFilters`` has these attributes; the data layer needs nothing else of it."""

    @property
    def content_types(self) -> Sequence[str] | None: ...
    @property
    def tags(self) -> Sequence[str] | None: ...
    @property
    def min_importance(self) -> float | None: ...
    @property
    def context_id(self) -> str | None: ...
    @property
    def created_after(self) -> datetime | None: ...
    @property
    def created_before(self) -> datetime | None: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...
    @property
    def source_types(self) -> Sequence[str] | None: ...


#: The attributes of the ``search_filters`` SQL type, in order.
FILTER_ATTRIBUTES = ("content_types", "tags", "min_importance", "context_id", "created_after", "created_before",
                     "metadata", "source_types")

#: The filters as one bound ``search_filters`` value (psycopg sends a tuple as a composite
#: literal). Planned as a constant, so the clauses of unset filters fold away.
FILTERS = "%(filters)s::search_filters"


def filters_param(filters: Filters) -> tuple[Any, ...]:
    """``filters`` as the attributes of a ``search_filters`` value, in order (None = no filter;
    a test pins the order against the type)."""
    values = (getattr(filters, name) for name in FILTER_ATTRIBUTES)
    return tuple(Jsonb(v) if isinstance(v, dict) else v for v in values)


def state_clause(*, include_archived: bool = False, include_superseded: bool = False) -> str:
    """Which memories (alias ``m``) a read shows by state (fixed fragments): the searchable ones
    (``memory_searchable``, the one definition the search structures follow), or with either
    flag also the archived and/or superseded ones (``memory_shown``). Deleted ones never."""
    if not include_archived and not include_superseded:
        return "memory_searchable(m)"
    return f"memory_shown(m, {str(include_archived).lower()}, {str(include_superseded).lower()})"


def where_clause(
    filters: Filters, *, include_archived: bool = False, include_superseded: bool = False,
) -> tuple[str, dict[str, Any]]:
    """WHERE clause over alias ``m`` (fixed fragments; every value is a bound parameter): the
    user's memories in the state :func:`state_clause` names, matching ``filters``, and not
    expired. Used by search and by listing."""
    clauses = ["m.user_id = %(user_id)s",
               state_clause(include_archived=include_archived, include_superseded=include_superseded),
               f"memory_visible(m, {FILTERS})"]
    return " AND ".join(clauses), {"filters": filters_param(filters)}
