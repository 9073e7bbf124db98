"""``POST /search`` and ``POST /context``: embed the query while the database finds the lexical
candidates, rank the user's memories (:mod:`coda_memory.db.search`), record the access, shape
the answer."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from .. import runtime
from ..auth import Caller
from ..config import get_settings
from ..contract import SearchResult
from ..db import search as search_sql
from ..models import ContextRequest, SearchFilters, SearchRequest
from .access import record_access, record_access_after, search_writes_access
from .context import ESTIMATORS, AssembledContext, assemble
from .memories import memory_json

#: The fields every search result has: the contract's (``SearchResult``; an optional field is
#: added on request). The ranking computes the scores; the others are the memory's columns,
#: fetched for the returned rows.
_RESULT_FIELDS = tuple(name for name, field in SearchResult.model_fields.items() if field.is_required())
_SCORES = ("similarity", "relevance")
_COLUMNS = tuple(f for f in _RESULT_FIELDS if f not in _SCORES)


def _search_rows(
    user_id: str, query: str, top_k: int, filters: SearchFilters, min_relevance: float | None = None,
    hidden: search_sql.Hidden = search_sql.LIVE, expand: bool = False,
) -> list[dict[str, Any]]:
    """The ranked rows; with ``expand``, followed by the memories they extend or are derived
    from (similarity and relevance 0)."""
    settings = get_settings()
    ranking = search_sql.Ranking.from_settings(settings)
    n = max(settings.candidate_pool, top_k)
    # pipeline: BEGIN and the user setting travel with the lexical query, and the access
    # statistics with the commit (committed before the answer is sent; see access.py). When
    # they are counted in Redis instead, the search is read-only and may run on a reader.
    in_tx = search_writes_access()
    with runtime.search_database().user_tx(user_id, pipeline=True, read_only=not in_tx) as cur:
        lexical: Future[dict[Any, float]] | None = None
        if ranking.mode == "hybrid":
            # the lexical query and the embedding (onnxruntime and psycopg's waits both
            # release the GIL) overlap: two ~2-3 ms steps
            lexical = runtime.search_workers().submit(search_sql.lexical_candidates, cur, query, n, filters,
                                                      hidden, user_id)
        try:
            vector = runtime.embedder().embed_one(query)
        finally:
            # never leave the lexical query running on a connection that goes back to the pool
            lexed = lexical.result() if lexical is not None else {}
        rows = search_sql.rank(cur, user_id, query, vector, lexed, filters, ranking, top_k, n, min_relevance,
                               hidden, columns=_COLUMNS)
        if expand:
            rows += search_sql.expanded(cur, user_id, [r["id"] for r in rows], hidden, columns=_COLUMNS)
        if in_tx:
            record_access(cur, user_id, [r["id"] for r in rows])
    if not in_tx:
        record_access_after(user_id, [r["id"] for r in rows])
    return rows


def _hidden(request: SearchRequest | ContextRequest) -> search_sql.Hidden:
    return search_sql.Hidden(archived=request.include_archived, superseded=request.include_superseded)


def search(caller: Caller, request: SearchRequest) -> dict[str, Any]:
    caller.principal.authorize(request.user_id)
    started = time.perf_counter()
    rows = _search_rows(request.user_id, request.query, request.top_k, request.filters, request.min_relevance,
                        _hidden(request))
    fields = (*_RESULT_FIELDS, "explain") if request.explain else _RESULT_FIELDS
    return {
        "results": [memory_json(r, fields) for r in rows],
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def build_context(caller: Caller, request: ContextRequest) -> dict[str, Any]:
    caller.principal.authorize(request.user_id)
    min_relevance = (
        request.min_relevance if request.min_relevance is not None else get_settings().context_min_relevance
    )
    rows = _search_rows(request.user_id, request.query, request.top_k, request.filters, min_relevance,
                        _hidden(request), expand=request.expand_relations)
    assembled: AssembledContext = assemble(
        rows, request.max_tokens, ESTIMATORS[get_settings().token_estimator]
    )
    return {
        "context": assembled.context,
        "token_count": assembled.token_count,
        "memory_ids": assembled.memory_ids,
        "truncated": assembled.truncated,
    }
