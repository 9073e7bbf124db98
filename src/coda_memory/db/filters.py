"""The search and list filters as one SQL WHERE clause."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from ..models import SearchFilters

#: A memory whose ``expires_at`` has passed is invisible everywhere (alias ``m``) until the
#: retention purge erases it.
NOT_EXPIRED = "(m.expires_at IS NULL OR m.expires_at > now())"


def where_clause(filters: SearchFilters, *, include_archived: bool = False) -> tuple[str, dict[str, Any]]:
    """WHERE clause over alias ``m`` (fixed fragments; every value is a bound parameter): the
    user's visible memories (not deleted, not expired, not archived unless asked) matching
    ``filters``. Used by search and by listing."""
    clauses = ["m.user_id = %(user_id)s", "NOT m.deleted", NOT_EXPIRED]
    if not include_archived:
        clauses.append("NOT m.archived")
    params: dict[str, Any] = {}
    if filters.content_types:
        clauses.append("m.content_type = ANY(%(f_types)s)")
        params["f_types"] = filters.content_types
    if filters.tags:
        clauses.append("m.tags && %(f_tags)s::text[]")
        params["f_tags"] = filters.tags
    if filters.min_importance is not None:
        clauses.append("m.importance >= %(f_min_importance)s::real")  # column is real
        params["f_min_importance"] = filters.min_importance
    if filters.context_id is not None:
        clauses.append("m.context_id = %(f_context_id)s")
        params["f_context_id"] = filters.context_id
    if filters.created_after is not None:
        clauses.append("m.created_at >= %(f_after)s")
        params["f_after"] = filters.created_after
    if filters.created_before is not None:
        clauses.append("m.created_at <= %(f_before)s")
        params["f_before"] = filters.created_before
    if filters.metadata:
        clauses.append("m.metadata @> %(f_metadata)s::jsonb")
        params["f_metadata"] = Jsonb(filters.metadata)
    if filters.source_types:
        clauses.append("m.source_type = ANY(%(f_sources)s::text[])")
        params["f_sources"] = filters.source_types
    return " AND ".join(clauses), params
