"""``POST /search`` and ``POST /context``: embed the query, rank the user's memories
(:mod:`coda_memory.retrieval`), record the access, shape the answer."""

from __future__ import annotations

import time
from typing import Any

from . import runtime
from .access import record_access
from .auth import Caller
from .config import get_settings
from .context import ESTIMATORS, AssembledContext, assemble
from .memories import memory_json
from .models import ContextRequest, SearchRequest
from .retrieval import Ranking
from .retrieval import search as run_search

_RESULT_FIELDS = (
    "id", "content", "content_type", "source_type", "source_id", "context_id", "tags",
    "importance", "created_at", "similarity", "relevance", "metadata",
)


def _search_rows(user_id: str, query: str, top_k: int, filters: Any) -> list[dict[str, Any]]:
    settings = get_settings()
    # pipeline: BEGIN and the user setting travel with the lexical query, and the access
    # statistics with the commit (committed before the answer is sent; see access.py)
    with runtime.database().user_tx(user_id, pipeline=True) as cur:
        rows = run_search(
            cur, user_id, query, runtime.embedder().embed_one, top_k, filters,
            Ranking.from_settings(settings), settings.candidate_pool,
        )
        record_access(cur, user_id, [r["id"] for r in rows])
    return rows


def search(caller: Caller, request: SearchRequest) -> dict[str, Any]:
    caller.principal.authorize(request.user_id)
    started = time.perf_counter()
    rows = _search_rows(request.user_id, request.query, request.top_k, request.filters)
    return {
        "results": [memory_json(r, _RESULT_FIELDS) for r in rows],
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def build_context(caller: Caller, request: ContextRequest) -> dict[str, Any]:
    caller.principal.authorize(request.user_id)
    rows = _search_rows(request.user_id, request.query, request.top_k, request.filters)
    assembled: AssembledContext = assemble(
        rows, request.max_tokens, ESTIMATORS[get_settings().token_estimator]
    )
    return {
        "context": assembled.context,
        "token_count": assembled.token_count,
        "memory_ids": assembled.memory_ids,
        "truncated": assembled.truncated,
    }
