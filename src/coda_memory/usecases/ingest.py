"""The ingest path, shared by ``POST /ingest``, ``POST /ingest/batch`` and the subscriber's
direct invokes: validate, sanitise, tag, score importance, hash, embed, then store with dedup,
quotas and audit in one transaction per user."""

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
from ..db import audit, quotas
from ..db import memories as memory_sql
from ..db import relations as relation_sql
from ..db.pool import DictCursor, set_user
from ..errors import BadRequest, Forbidden, MemoryServiceError, QuotaExceeded, ValidationFailed
from ..events import event_to_item
from ..models import IngestItem, check_identifier, parse_model
from ..text import content_hash, extract_tags, merge_tags, score_importance
from .links import LinkPlan, links_of


@dataclass
class ItemResult:
    status: str  # created | duplicate | rejected
    memory_id: str | None = None
    error: dict[str, Any] | None = None
    event_id: str | None = None
    #: with return_similar: the closest live memories stored before this one
    similar: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.memory_id is not None:
            out["memory_id"] = self.memory_id
        if self.error is not None:
            out["error"] = self.error
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.similar is not None:
            out["similar"] = self.similar
        return out


@dataclass
class _Pending:
    index: int
    item: IngestItem
    event_id: str | None
    hash: str = ""
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5
    pieces: list[Any] = field(default_factory=list)


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
) -> list[tuple[_Pending, ItemResult]]:
    """Dedup, quota, insert and audit ``group`` (all of ``user_id``) in the transaction of
    ``cur``, already scoped to ``user_id``."""
    out: list[tuple[_Pending, ItemResult]] = []
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
            out.append((p, _rejected(exc, p.event_id)))
            continue
        similar = None
        if p.item.return_similar:
            # before this call's rows are written: what the user already had
            similar = [_similar_json(r) for r in relation_sql.similar(
                cur, user_id, vec, settings.similar_min, SIMILAR_LIMIT,
                exclude=[memory_id, *p.item.supersedes])]
        if existing is not None:
            out.append((p, ItemResult("duplicate", str(existing), event_id=p.event_id, similar=similar)))
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
        out.append((p, ItemResult("created", str(memory_id), event_id=p.event_id, similar=similar)))
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


def _similar_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"memory_id": str(row["memory_id"]), "content": row["content"],
            "similarity": round(float(row["similarity"]), 4)}


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
