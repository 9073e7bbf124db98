"""Export and import of a user's memories as NDJSON (``GET /users/{user_id}/export``,
``POST /users/{user_id}/import``); ``python -m coda_memory.cli.transfer`` walks them page by page.

The export writes one memory per line, oldest first, every field the import reads back; a page
ends before its NDJSON, escaped into the function's JSON response, would pass
``MEMORY_EXPORT_PAGE_BYTES`` (Lambda answers at most 6 MB), and the next page's cursor goes in
``X-Next-Cursor``. The import keeps ``id`` and ``created_at``, is idempotent (a line whose id,
event id or content the user already has is a duplicate), rejects a bad line alone, and applies
the quotas like any ingest. Relations and supersession travel on the lines of both their ends
(``links``) and are restored by whichever line makes both ends exist, in this request or a
later one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import runtime
from ..auth import Caller
from ..config import get_settings
from ..contract import ErrorDetail
from ..db import audit, quotas
from ..db import memories as memory_sql
from ..db import relations as relation_sql
from ..errors import MemoryServiceError, QuotaExceeded, ValidationFailed
from ..models import ImportLine, NumberedLine, SearchFilters
from ..text import content_hash, score_importance
from .ingest import lock_quota_and_find_existing, quota_message, seconds_to_utc_midnight
from .links import LinkPlan, links_of, restore_links
from .memories import decode_cursor, encode_cursor, memory_json

#: Rows read per export page (fewer with embeddings: ~4 kB each as JSON).
_PAGE_ROWS = 1000
_PAGE_ROWS_WITH_EMBEDDINGS = 300
#: The neutral answer for an id that cannot be used (it belongs to someone else -- not said).
ID_UNAVAILABLE = "this id cannot be used; leave id out to store the memory under a new one"


@dataclass
class ExportPage:
    body: str
    count: int
    next_cursor: str | None


def export_page(
    caller: Caller, user_id: str, cursor: str | None = None, *, embeddings: bool = False,
    include_superseded: bool = False,
) -> ExportPage:
    """One page of the user's visible memories (archived included; superseded ones with
    ``include_superseded``), oldest first. Each line lists the memory's relations, both
    directions and supersession included (``links``)."""
    caller.principal.authorize(user_id)
    if cursor is not None and len(cursor) > 200:
        raise ValidationFailed("cursor has at most 200 characters")
    after = decode_cursor(cursor) if cursor else None
    budget = get_settings().export_page_bytes
    columns = (*memory_sql.EXPORT_COLUMNS, *(("embedding",) if embeddings else ()))
    limit = _PAGE_ROWS_WITH_EMBEDDINGS if embeddings else _PAGE_ROWS
    with runtime.database().user_tx(user_id) as cur:
        rows = memory_sql.list_page(cur, user_id, SearchFilters(), limit + 1, after, include_archived=True,
                                    include_superseded=include_superseded, newest_first=False, columns=columns)
        links = relation_sql.links_of(cur, user_id, [r["id"] for r in rows[:limit]])
        for row in rows[:limit]:
            row["links"] = [link.as_dict() for link in links[row["id"]]]
        page = _page(rows[:limit], len(rows), budget)
        audit.write(cur, [("export", user_id, "ok", json.dumps({"memories": page.count, "embeddings": embeddings}))],
                    user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id)
    return page


def _page(rows: list[dict[str, Any]], fetched: int, budget: int) -> ExportPage:
    lines: list[str] = []
    used = 0
    last: dict[str, Any] | None = None
    for row in rows:
        line = _export_line(row)
        # the size this line takes inside the Lambda response (JSON string escaping, ASCII)
        cost = len(json.dumps(line)) - 1
        if lines and used + cost > budget:
            break
        lines.append(line)
        used += cost
        last = row
    more = len(lines) < fetched
    return ExportPage("".join(lines), len(lines), encode_cursor(last) if more and last else None)


def _export_line(row: dict[str, Any]) -> str:
    out = memory_json({k: v for k, v in row.items() if k != "embedding"})
    if "embedding" in row:
        vec = row["embedding"]  # a pgvector Vector
        out["embedding"] = [round(float(x), 7) for x in (vec.to_list() if hasattr(vec, "to_list") else vec)]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n"


@dataclass
class _Line:
    number: int
    item: ImportLine
    hash: str
    vector: Any = None
    pieces: list[Any] = field(default_factory=list)


def import_memories(caller: Caller, user_id: str, lines: Sequence[NumberedLine]) -> dict[str, Any]:
    """Store the numbered, validated import lines (``models.parse_import``) for ``user_id``:
    ``{"created", "duplicate", "rejected": [{"line", "error"}]}`` (line numbers from 1; a line
    that failed validation comes as its error and is rejected alone)."""
    caller.principal.authorize(user_id)
    records: list[tuple[int, ImportLine]] = []
    rejected: list[dict[str, Any]] = []
    for number, line in lines:
        try:
            if isinstance(line, MemoryServiceError):
                raise line
            if line.user_id is not None and line.user_id != user_id:
                raise ValidationFailed("user_id of the line differs from the user imported into")
        except MemoryServiceError as exc:
            rejected.append(_rejected(number, exc))
            continue
        records.append((number, line))
    return _import(caller, user_id, records, rejected)


def _rejected(number: int, exc: MemoryServiceError) -> dict[str, Any]:
    return {"line": number, "error": ErrorDetail.of(exc).model_dump()}


def _import(caller: Caller, user_id: str, records: list[tuple[int, ImportLine]],
            rejected: list[dict[str, Any]]) -> dict[str, Any]:
    """Store the numbered import lines ``records`` for ``user_id`` (authorized); ``rejected``
    holds the lines refused before."""
    lines = [_Line(number, item, content_hash(item.content)) for number, item in records]

    to_embed = [ln for ln in lines if ln.item.embedding is None]
    if to_embed:
        for ln, vec in zip(to_embed, runtime.embedder().embed([ln.item.content for ln in to_embed]), strict=True):
            ln.vector = vec
    # the pieces of long memories (what the model does not read) are always this model's own
    all_pieces = runtime.embedder().embed_pieces([ln.item.content for ln in lines], get_settings().embedding_pieces)
    for ln, pieces in zip(lines, all_pieces, strict=True):
        ln.pieces = list(pieces)
        if ln.item.embedding is not None:
            # The stored vectors are unit length. Scaled by the largest component first, in
            # float64: the norm of components like 1e300 or 1e-300 would overflow or underflow
            # (NaN in the vector, a 500: found probing the documented import).
            vec = np.asarray(ln.item.embedding, dtype=np.float64)
            vec = vec / np.max(np.abs(vec))
            ln.vector = (vec / np.linalg.norm(vec)).astype(np.float32)

    created = duplicate = 0
    with runtime.database().user_tx(user_id) as cur:
        quota, by_hash, by_event = lock_quota_and_find_existing(
            cur, user_id, [ln.hash for ln in lines], [ln.item.event_id for ln in lines if ln.item.event_id],
        )
        given = [ln.item.id for ln in lines if ln.item.id is not None]
        mine = memory_sql.existing_ids(cur, user_id, given)
        taken = memory_sql.ids_taken_by_others(cur, [i for i in given if i not in mine])
        plan = LinkPlan(cur, user_id, [links_of(ln.item) for ln in lines])
        rows: list[memory_sql.NewMemory] = []
        remaining = quota.remaining
        seen_ids: set[uuid.UUID] = set()
        restorable: list[relation_sql.Link] = []
        for ln in lines:
            item = ln.item
            if item.id in taken:
                rejected.append(_rejected(ln.number, ValidationFailed(ID_UNAVAILABLE)))
                continue
            restorable += _links_of_line(item)
            if (item.id in mine or item.id in seen_ids or (item.event_id and item.event_id in by_event)
                    or ln.hash in by_hash):
                duplicate += 1
                continue
            memory_id = item.id or uuid.uuid4()
            try:
                if remaining <= 0:
                    raise QuotaExceeded(quota_message(quota), retry_after=seconds_to_utc_midnight())
                plan.check(memory_id, links_of(item), existing=False)
            except MemoryServiceError as exc:
                rejected.append(_rejected(ln.number, exc))
                continue
            rows.append(memory_sql.NewMemory(
                id=memory_id, user_id=user_id, content=item.content, content_type=item.content_type,
                embedding=ln.vector, source_type=item.source_type, source_id=item.source_id,
                context_id=item.context_id, event_id=item.event_id,
                importance=item.importance if item.importance is not None
                else score_importance(item.content, item.content_type),
                confidence=item.confidence, tags=item.tags, metadata=item.metadata, content_hash=ln.hash,
                created_at=item.created_at, expires_at=item.expires_at, archived=item.archived,
                embedding_pieces=ln.pieces,
            ))
            seen_ids.add(memory_id)
            by_hash[ln.hash] = memory_id
            if item.event_id:
                by_event[item.event_id] = memory_id
            remaining -= 1
        if rows:
            memory_sql.insert_memories(cur, rows, actor=caller.principal.key_id, action="imported")
            quotas.add(cur, user_id, len(rows))
        plan.apply(caller.principal.key_id)
        restore_links(cur, user_id, restorable, caller.principal.key_id)
        created = len(rows)
        rejected.sort(key=lambda r: r["line"])
        audit.write(
            cur, [("import", user_id, "ok", json.dumps({"created": created, "duplicate": duplicate,
                                                        "rejected": len(rejected)}))],
            user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id,
        )
    return {"created": created, "duplicate": duplicate, "rejected": rejected}


def _links_of_line(item: ImportLine) -> list[relation_sql.Link]:
    """The relations a line lists (``links``, and ``superseded_by`` as the export shows it)."""
    out = [relation_sql.Link(x.source_id, x.type, x.target_id, x.created_at) for x in item.links]
    if item.superseded_by is not None and item.id is not None:
        out.append(relation_sql.Link(item.superseded_by, "supersedes", item.id, item.superseded_at))
    return out
