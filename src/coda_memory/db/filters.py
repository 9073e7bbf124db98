"""The search and list filters as one SQL WHERE clause.

What each filter means is said once, in the SQL function ``memory_visible(m, f)``
(``db/functions/memory_visible.sql``), over a ``search_filters`` value (migration 0010) built
here from :class:`SearchFilters`' fields in order; bm25_candidates applies the same function.
A new filter: a ``search_filters`` attribute, the same-named SearchFilters field, one line in
the function.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from ..models import SearchFilters

#: A memory whose ``expires_at`` has passed is invisible everywhere (alias ``m``) until the
#: retention purge erases it (memory_visible says the same for searches and listings).
NOT_EXPIRED = "(m.expires_at IS NULL OR m.expires_at > now())"

#: The filters as one bound ``search_filters`` value (psycopg sends a tuple as a composite
#: literal). Planned as a constant, so the clauses of unset filters fold away.
FILTERS = "%(filters)s::search_filters"


def filters_param(filters: SearchFilters) -> tuple[Any, ...]:
    """``filters`` as the attributes of a ``search_filters`` value, in order (None = no filter;
    a test pins the order against the type)."""
    values = (getattr(filters, name) for name in SearchFilters.model_fields)
    return tuple(Jsonb(v) if isinstance(v, dict) else v for v in values)


def state_clause(*, include_archived: bool = False, include_superseded: bool = False) -> str:
    """Which memories (alias ``m``) a read shows by state (fixed fragments): the searchable ones
    (``memory_searchable``, the one definition the search structures follow), or with either
    flag also the archived and/or superseded ones (``memory_shown``). Deleted ones never."""
    if not include_archived and not include_superseded:
        return "memory_searchable(m)"
    return f"memory_shown(m, {str(include_archived).lower()}, {str(include_superseded).lower()})"


def where_clause(
    filters: SearchFilters, *, include_archived: bool = False, include_superseded: bool = False,
) -> tuple[str, dict[str, Any]]:
    """WHERE clause over alias ``m`` (fixed fragments; every value is a bound parameter): the
    user's memories in the state :func:`state_clause` names, matching ``filters``, and not
    expired. Used by search and by listing."""
    clauses = ["m.user_id = %(user_id)s",
               state_clause(include_archived=include_archived, include_superseded=include_superseded),
               f"memory_visible(m, {FILTERS})"]
    return " AND ".join(clauses), {"filters": filters_param(filters)}
