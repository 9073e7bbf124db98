"""The ingest path, shared by ``POST /ingest``, ``POST /ingest/batch``, MCP ``remember`` and
the subscriber's direct invokes: items validated (and sanitised) by their handlers come in as
``IngestItem``; here they are authorised, tagged, scored, hashed and embedded, then stored with
dedup, quotas and audit in one transaction per user."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import runtime
from ..auth import Caller, Principal
from ..config import get_settings
from ..contract import ErrorDetail, IngestResult, SimilarMemory
from ..db import audit, quotas
from ..db import memories as memory_sql
from ..db import relations as relation_sql
from ..db.pool import DictCursor, set_user
from ..errors import Forbidden, MemoryServiceError, QuotaExceeded
from ..models import IngestItem
from ..text import content_hash, extract_tags, merge_tags, score_importance
from .links import LinkPlan, links_of


def _result(status: str, memory_id: Any = None, *, error: MemoryServiceError | None = None,
            event_id: str | None = None, similar: list[SimilarMemory] | None = None) -> IngestResult:
    """The outcome of one item, with only the members that apply set (answers leave the rest out)."""
    given = {"memory_id": None if memory_id is None else str(memory_id),
             "error": None if error is None else ErrorDetail.of(error), "event_id": event_id, "similar": similar}
    return IngestResult(status=status, **{k: v for k, v in given.items() if v is not None})


@dataclass
class _Pending:
    index: int
    item: IngestItem
    event_id: str | None
    hash: str = ""
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5
    pieces: list[Any] = field(default_factory=list)


def ingest(
    caller: Caller, items: Sequence[IngestItem | MemoryServiceError], event_ids: Sequence[str | None] | None = None,
    *, atomic_single: bool = False,
) -> list[IngestResult]:
    """Authorise, enrich, embed and store validated items; one result per item, in order. An
    item that failed validation comes as its error (``models.parse_each``) and is rejected
    alone, in its place.

    Items of one user are stored in one transaction that holds the user's quota row, so
    dedup and quotas are exact under concurrency. With ``atomic_single`` (``POST /ingest``)
    errors raise instead of being reported per item.
    """
    settings = get_settings()
    event_ids = list(event_ids) if event_ids is not None else [None] * len(items)
    results: list[IngestResult | None] = [None] * len(items)
    pending: list[_Pending] = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, MemoryServiceError):
                raise item
            caller.principal.authorize(item.user_id)
        except MemoryServiceError as exc:
            if atomic_single:
                raise
            if isinstance(exc, Forbidden):
                _audit_forbidden_item(caller, exc)
            results[i] = _result("rejected", error=exc, event_id=event_ids[i])
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
        texts = [p.item.content for p in pending]
        vectors = runtime.embedder().embed(texts)
        for p, pieces in zip(pending, runtime.embedder().embed_pieces(texts, settings.embedding_pieces), strict=True):
            p.pieces = list(pieces)
        by_user: dict[str, list[tuple[_Pending, Any]]] = {}
        for p, vec in zip(pending, vectors, strict=True):
            by_user.setdefault(p.item.user_id, []).append((p, vec))
        # One transaction for the whole call, pipelined (per user: the quota lock + dedup
        # lookup is one round trip; the writes ride along; one commit at the end). Users are
        # taken in sorted order, so concurrent batches lock quota rows in the same order and
        # cannot deadlock. A database failure stores nothing of the call; a retry is safe
        # (dedup by content hash and event id).
        with runtime.database().transaction(pipeline=True) as cur:
            for user_id in sorted(by_user):
                set_user(cur, user_id)
                for p, result in _store_user_items(cur, caller, user_id, by_user[user_id], atomic_single):
                    results[p.index] = result
    return [r for r in results if r is not None]


def _audit_forbidden_item(caller: Caller, exc: Forbidden) -> None:
    target = exc.details.get("user_id") if isinstance(exc.details, dict) else None
    with runtime.database().system_tx() as cur:
        audit.write_denied(
            cur, user_id=target, actor=caller.principal.key_id, action="ingest", resource=None,
            ip=caller.ip, result="denied:forbidden", request_id=caller.request_id,
        )


def _store_user_items(
    cur: DictCursor, caller: Caller, user_id: str, group: list[tuple[_Pending, Any]], atomic_single: bool
) -> list[tuple[_Pending, IngestResult]]:
    """Dedup, quota, insert and audit ``group`` (all of ``user_id``) in the transaction of
    ``cur``, already scoped to ``user_id``."""
    out: list[tuple[_Pending, IngestResult]] = []
    quota, by_hash, by_event = lock_quota_and_find_existing(
        cur, user_id, [p.hash for p, _ in group], [p.event_id for p, _ in group if p.event_id]
    )
    plan = LinkPlan(cur, user_id, [links_of(p.item) for p, _ in group])
    settings = get_settings()
    rows: list[memory_sql.NewMemory] = []
    remaining = quota.remaining
    for p, vec in group:
        existing = (by_event.get(p.event_id) if p.event_id else None) or by_hash.get(p.hash)
        memory_id = existing or uuid.uuid4()
        try:
            if existing is None and remaining <= 0:
                raise QuotaExceeded(quota_message(quota), retry_after=seconds_to_utc_midnight())
            # a duplicate still records what the item asks for, on the memory already stored
            plan.check(memory_id, links_of(p.item), existing=existing is not None)
        except MemoryServiceError as exc:
            if atomic_single:
                raise
            out.append((p, _result("rejected", error=exc, event_id=p.event_id)))
            continue
        similar = None
        if p.item.return_similar:
            # before this call's rows are written: what the user already had
            similar = [_similar(r) for r in relation_sql.similar(
                cur, user_id, vec, settings.similar_min, SIMILAR_LIMIT,
                exclude=[memory_id, *p.item.supersedes])]
        if existing is not None:
            out.append((p, _result("duplicate", existing, event_id=p.event_id, similar=similar)))
            continue
        item = p.item
        rows.append(memory_sql.NewMemory(
            id=memory_id, user_id=user_id, content=item.content, content_type=item.content_type,
            embedding=vec, source_type=item.source_type, source_id=item.source_id,
            context_id=item.context_id, event_id=p.event_id, importance=p.importance,
            confidence=item.confidence, tags=p.tags, metadata=item.metadata,
            content_hash=p.hash, created_at=item.created_at, expires_at=item.expires_at,
            embedding_pieces=p.pieces,
        ))
        # Later items of the same batch with the same content are duplicates of this one.
        by_hash[p.hash] = memory_id
        if p.event_id:
            by_event[p.event_id] = memory_id
        remaining -= 1
        out.append((p, _result("created", memory_id, event_id=p.event_id, similar=similar)))
    if rows:
        memory_sql.insert_memories(cur, rows, actor=caller.principal.key_id)
        quotas.add(cur, user_id, len(rows))
    plan.apply(caller.principal.key_id)
    audit.write(
        cur,
        [("ingest", r.memory_id, r.status, json.dumps({"source": p.item.source_type}))
         for p, r in out],
        user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id,
    )
    return out


#: At most this many similar memories come back with return_similar.
SIMILAR_LIMIT = 3


def _similar(row: dict[str, Any]) -> SimilarMemory:
    return SimilarMemory(memory_id=str(row["memory_id"]), content=row["content"],
                         similarity=round(float(row["similarity"]), 4))


def lock_quota_and_find_existing(
    cur: DictCursor, user_id: str, hashes: list[str], event_ids: list[str]
) -> tuple[quotas.Quota, dict[str, uuid.UUID], dict[str, uuid.UUID]]:
    """Every write path's first step, in the user's transaction: lock the user's quota row and
    find the live memories with one of ``hashes`` and any with one of ``event_ids``. Expired
    memories holding one of the hashes are retired first (they give way to the same content
    stored again) and their quota released."""
    settings = get_settings()
    quota, by_hash, by_event, expired = quotas.lock_and_find_existing(
        cur, user_id, settings.default_max_memories, settings.default_max_daily_ingestions, hashes, event_ids,
    )
    if expired:
        retired = memory_sql.retire_expired(cur, user_id, expired)
        quotas.release(cur, user_id, retired)
        quota.memory_count -= retired
    return quota, by_hash, by_event


def quota_message(quota: quotas.Quota) -> str:
    if quota.memory_count >= quota.max_memories:
        return f"memory quota exceeded: this user already has {quota.max_memories} memories"
    return f"daily ingestion quota exceeded: at most {quota.max_daily_ingestions} per UTC day"


def seconds_to_utc_midnight() -> float:
    now = datetime.now(UTC)
    return 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)


SUBSCRIBER = Caller(Principal(key_id="subscriber"))


def ingest_events(items: Sequence[IngestItem | MemoryServiceError], event_ids: Sequence[str | None]) -> dict[str, Any]:
    """The subscriber's events (``models.parse_ingest_events``), stored for it: permanent
    problems come back per event as ``rejected``; transient ones (database down) raise, so the
    invocation fails and the subscriber retries."""
    results = ingest(SUBSCRIBER, items, event_ids)
    return {"results": [r.model_dump(mode="json", exclude_unset=True) for r in results]}
