"""The memory service: every operation of the API contract, shared by the HTTP handlers, the
subscriber's direct invokes and the jobs. Handlers parse and map errors; this module decides.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import runtime, store
from .access import record_access
from .auth import Principal
from .config import get_settings
from .context import ESTIMATORS, AssembledContext, assemble
from .errors import BadRequest, Forbidden, MemoryServiceError, NotFound, QuotaExceeded, ValidationFailed
from .events import event_to_item
from .models import ContextRequest, IngestItem, SearchRequest, check_identifier
from .retrieval import Ranking
from .retrieval import search as run_search
from .text import content_hash, extract_tags, merge_tags, score_importance

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Caller:
    """Who asked, for authorisation and the audit log (never the key itself)."""

    principal: Principal
    ip: str | None = None
    request_id: str | None = None


@dataclass
class ItemResult:
    status: str  # created | duplicate | rejected
    memory_id: str | None = None
    error: dict[str, Any] | None = None
    event_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.memory_id is not None:
            out["memory_id"] = self.memory_id
        if self.error is not None:
            out["error"] = self.error
        if self.event_id is not None:
            out["event_id"] = self.event_id
        return out


@dataclass
class _Pending:
    index: int
    item: IngestItem
    event_id: str | None
    hash: str = ""
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5


def validation_message(exc: ValidationError) -> str:
    """A readable one-line summary of pydantic errors, without echoing input values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts[:10])


def parse_model(model: type[M], raw: Any) -> M:
    """Validate ``raw`` into ``model`` or raise 422 with a readable message."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc)) from None


def parse_item(raw: Any) -> IngestItem:
    if not isinstance(raw, dict):
        raise ValidationFailed("each item must be a JSON object")
    return parse_model(IngestItem, raw)


def _rejected(exc: MemoryServiceError, event_id: str | None) -> ItemResult:
    return ItemResult("rejected", error={"code": exc.code, "message": exc.message}, event_id=event_id)


def ingest(
    caller: Caller, raw_items: Sequence[Any], event_ids: Sequence[str | None] | None = None,
    *, atomic_single: bool = False,
) -> list[ItemResult]:
    """Validate, enrich, embed and store items; one result per item, in order.

    Items of one user are stored in one transaction that holds the user's quota row, so
    dedup and quotas are exact under concurrency. An invalid item is rejected alone. With
    ``atomic_single`` (``POST /ingest``) errors raise instead of being reported per item.
    """
    settings = get_settings()
    event_ids = list(event_ids) if event_ids is not None else [None] * len(raw_items)
    results: list[ItemResult | None] = [None] * len(raw_items)
    pending: list[_Pending] = []
    for i, raw in enumerate(raw_items):
        try:
            item = parse_item(raw)
            caller.principal.authorize(item.user_id)
            if event_ids[i] is not None:
                check_identifier(event_ids[i], "event_id")
        except MemoryServiceError as exc:
            if atomic_single:
                raise
            if isinstance(exc, Forbidden):
                _audit_forbidden_item(caller, exc)
            results[i] = _rejected(exc, event_ids[i])
            continue
        p = _Pending(i, item, event_ids[i])
        p.hash = content_hash(item.content)
        p.tags = merge_tags(item.tags, extract_tags(item.content), settings.max_tags)
        p.importance = (
            item.importance if item.importance is not None
            else score_importance(item.content, item.content_type)
        )
        pending.append(p)

    if pending:
        vectors = runtime.embedder().embed([p.item.content for p in pending])
        by_user: dict[str, list[tuple[_Pending, Any]]] = {}
        for p, vec in zip(pending, vectors, strict=True):
            by_user.setdefault(p.item.user_id, []).append((p, vec))
        for user_id, group in by_user.items():
            for p, result in _store_user_items(caller, user_id, group, atomic_single):
                results[p.index] = result
    return [r for r in results if r is not None]


def _audit_forbidden_item(caller: Caller, exc: Forbidden) -> None:
    target = exc.details.get("user_id") if isinstance(exc.details, dict) else None
    with runtime.database().system_tx() as cur:
        store.audit_denied(
            cur, user_id=target, actor=caller.principal.key_id, action="ingest", resource=None,
            ip=caller.ip, result="denied:forbidden", request_id=caller.request_id,
        )


def _store_user_items(
    caller: Caller, user_id: str, group: list[tuple[_Pending, Any]], atomic_single: bool
) -> list[tuple[_Pending, ItemResult]]:
    settings = get_settings()
    out: list[tuple[_Pending, ItemResult]] = []
    with runtime.database().user_tx(user_id) as cur:
        quota = store.lock_quota(
            cur, user_id, settings.default_max_memories, settings.default_max_daily_ingestions
        )
        by_hash, by_event = store.find_existing(
            cur, user_id, [p.hash for p, _ in group], [p.event_id for p, _ in group if p.event_id]
        )
        rows: list[store.NewMemory] = []
        remaining = quota.remaining
        for p, vec in group:
            existing = (by_event.get(p.event_id) if p.event_id else None) or by_hash.get(p.hash)
            if existing is not None:
                out.append((p, ItemResult("duplicate", str(existing), event_id=p.event_id)))
                continue
            if remaining <= 0:
                exc = QuotaExceeded(_quota_message(quota), retry_after=_seconds_to_utc_midnight())
                if atomic_single:
                    raise exc
                out.append((p, _rejected(exc, p.event_id)))
                continue
            memory_id = uuid.uuid4()
            item = p.item
            rows.append(store.NewMemory(
                id=memory_id, user_id=user_id, content=item.content, content_type=item.content_type,
                embedding=vec, source_type=item.source_type, source_id=item.source_id,
                context_id=item.context_id, event_id=p.event_id, importance=p.importance,
                confidence=item.confidence, tags=p.tags, metadata=item.metadata,
                content_hash=p.hash, created_at=item.created_at,
            ))
            # Later items of the same batch with the same content are duplicates of this one.
            by_hash[p.hash] = memory_id
            if p.event_id:
                by_event[p.event_id] = memory_id
            remaining -= 1
            out.append((p, ItemResult("created", str(memory_id), event_id=p.event_id)))
        if rows:
            store.insert_memories(cur, rows)
            store.add_to_quota(cur, user_id, len(rows))
        store.audit(
            cur,
            [("ingest", r.memory_id, r.status, json.dumps({"source": p.item.source_type}))
             for p, r in out],
            user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id,
        )
    return out


def _quota_message(quota: store.Quota) -> str:
    if quota.memory_count >= quota.max_memories:
        return f"memory quota exceeded: this user already has {quota.max_memories} memories"
    return f"daily ingestion quota exceeded: at most {quota.max_daily_ingestions} per UTC day"


def _seconds_to_utc_midnight() -> float:
    now = datetime.now(UTC)
    return 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)


SUBSCRIBER = Caller(Principal(key_id="subscriber"))


def ingest_events(payload: dict[str, Any]) -> dict[str, Any]:
    """Direct invoke from the subscriber: ``{"kind": "ingest_events", "events": [{"event_id",
    "data"}]}``. Permanent problems come back per event as ``rejected``; transient ones
    (database down) raise, so the invocation fails and the subscriber retries."""
    events = payload.get("events")
    limit = get_settings().max_batch_items
    if not isinstance(events, list) or not events or len(events) > limit:
        raise BadRequest(f"events must be a list of 1..{limit} entries")
    items, event_ids = [], []
    for entry in events:
        entry = entry if isinstance(entry, dict) else {}
        items.append(event_to_item(entry.get("data")))
        event_id = entry.get("event_id")
        event_ids.append(str(event_id) if event_id not in (None, "") else None)
    results = ingest(SUBSCRIBER, items, event_ids)
    return {"results": [r.as_dict() for r in results]}


# --- reads and deletes ------------------------------------------------------------------------


def _memory_uuid(memory_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(memory_id)
    except ValueError:
        raise ValidationFailed("memory id must be a UUID") from None


def get_memory(caller: Caller, memory_id: str, user_id: str | None) -> dict[str, Any]:
    user_id = check_identifier(user_id, "user_id")
    caller.principal.authorize(user_id)
    mid = _memory_uuid(memory_id)
    with runtime.database().user_tx(user_id) as cur:
        row = store.get_memory(cur, user_id, mid)
    if row is None:
        raise NotFound("memory not found")
    return memory_json(row)


def delete_memory(caller: Caller, memory_id: str, user_id: str | None, hard: bool) -> dict[str, Any]:
    user_id = check_identifier(user_id, "user_id")
    caller.principal.authorize(user_id)
    mid = _memory_uuid(memory_id)
    with runtime.database().user_tx(user_id) as cur:
        if hard:
            found, was_live = store.hard_delete(cur, user_id, mid)
        else:
            found = was_live = store.soft_delete(cur, user_id, mid)
        if found:
            store.release_quota(cur, user_id, int(was_live))
            store.audit(
                cur, [("erase" if hard else "delete", str(mid), "ok", "{}")],
                user_id=user_id, actor=caller.principal.key_id, ip=caller.ip,
                request_id=caller.request_id,
            )
    if not found:
        raise NotFound("memory not found")
    return {"memory_id": str(mid), "status": "erased" if hard else "deleted"}


def erase_user(caller: Caller, user_id: str) -> dict[str, Any]:
    user_id = check_identifier(user_id, "user_id")
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        erased = store.erase_user(cur, user_id)
        store.audit(
            cur, [("erase_user", user_id, "ok", json.dumps({"erased": erased}))],
            user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id,
        )
    return {"user_id": user_id, "erased": erased, "status": "erased"}


# --- search and context -----------------------------------------------------------------------

_RESULT_FIELDS = (
    "id", "content", "content_type", "source_type", "source_id", "context_id", "tags",
    "importance", "created_at", "similarity", "relevance", "metadata",
)


def memory_json(row: dict[str, Any], fields: Sequence[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in fields or row.keys():
        value = row.get(key)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, float):
            value = round(value, 6)
        out[key] = value
    return out


def _search_rows(user_id: str, query: str, top_k: int, filters: Any) -> list[dict[str, Any]]:
    settings = get_settings()
    vector = runtime.embedder().embed_one(query)
    with runtime.database().user_tx(user_id) as cur:
        rows = run_search(
            cur, user_id, query, vector, top_k, filters, Ranking.from_settings(settings),
            settings.candidate_pool,
        )
    record_access(user_id, [r["id"] for r in rows])
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


def health() -> dict[str, Any]:
    """Liveness plus what the agent may want to know about the model and the database."""
    from . import __version__
    from .embedder import DIMENSION, MODEL_NAME

    out: dict[str, Any] = {"status": "ok", "version": __version__}
    try:
        emb = runtime.embedder()
        out["model"] = {"name": emb.model_name, "quantization": emb.quantization,
                        "dimension": emb.dimension}
    except Exception as exc:
        out["status"] = "degraded"
        out["model"] = {"name": MODEL_NAME, "dimension": DIMENSION, "error": type(exc).__name__}
    try:
        with runtime.database().system_tx() as cur:
            cur.execute(
                """SELECT current_setting('server_version') AS server_version,
                          (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector,
                          (SELECT max(version) FROM schema_migrations) AS schema_version"""
            )
            row = cur.fetchone() or {}
        out["database"] = {"status": "ok", **row}
    except Exception as exc:
        out["status"] = "degraded"
        out["database"] = {"status": "unavailable", "error": type(exc).__name__}
    return out
