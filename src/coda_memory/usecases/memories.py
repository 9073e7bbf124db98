"""Reading, listing, correcting and deleting memories: one memory (soft or hard), a page of a
user's memories, a memory's history, or everything of a user."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import runtime
from ..auth import Caller
from ..config import get_settings
from ..contract import HistoryEntry, Memory
from ..db import audit, quotas
from ..db import memories as memory_sql
from ..db import relations as relation_sql
from ..errors import BadRequest, Conflict, NotFound
from ..models import (
    CURSOR_PATTERN,
    ListQuery,
    MemoryPatch,
    parse_timestamp,
)
from ..text import content_hash
from .links import LinkPlan, Links

#: The fields of a memory in an answer (``GET /memory/{id}``, ``PATCH``, ``GET /memories``):
#: the contract's, which the reads fetch.
MEMORY_FIELDS = tuple(Memory.model_fields)
#: The fields of a history entry in ``GET /memory/{id}/history``: the contract's.
HISTORY_FIELDS = tuple(HistoryEntry.model_fields)


def get_memory(caller: Caller, memory_id: uuid.UUID, user_id: str) -> dict[str, Any]:
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        row = memory_sql.get_memory(cur, user_id, memory_id, MEMORY_FIELDS)
    if row is None:
        raise NotFound("memory not found")
    return memory_json(row)


def list_memories(caller: Caller, query: ListQuery) -> dict[str, Any]:
    """A page of the user's visible memories, newest first (``created_at DESC, id DESC``). The
    cursor is the keyset position of the page's last memory, so memories stored after the first
    page was read (newer) never shift later pages."""
    caller.principal.authorize(query.user_id)
    after = decode_cursor(query.cursor) if query.cursor else None
    with runtime.database().user_tx(query.user_id) as cur:
        rows = memory_sql.list_page(cur, query.user_id, query.filters(), query.limit + 1, after, columns=MEMORY_FIELDS,
                                    include_archived=query.include_archived,
                                    include_superseded=query.include_superseded)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return {
        "memories": [memory_json(r) for r in rows],
        "next_cursor": encode_cursor(rows[-1]) if more else None,
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(row: dict[str, Any]) -> str:
    """The keyset position of ``row`` (the last one returned): ``<created_at in microseconds
    since 1970>_<id>`` (``models.CURSOR_PATTERN``)."""
    return f"{(row['created_at'] - _EPOCH) // _MICROSECOND}_{row['id']}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    if _CURSOR.match(cursor):
        micros, mid = cursor.split("_")
        return _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(mid)
    # the form cursors had before (base64url of "<ISO 8601>|<id>"): still read, so a client
    # paging across an upgrade goes on
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, mid = raw.split("|")
        return parse_timestamp(at), uuid.UUID(mid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not valid; pass next_cursor of the previous page unchanged") from None


def update_memory(caller: Caller, memory_id: uuid.UUID, user_id: str, patch: MemoryPatch) -> dict[str, Any]:
    """Change the given fields of a memory (``PATCH /memory/{id}``) and return it with its new
    ``version``. ``archived: false`` restores an archived memory (history ``restored``);
    ``superseded_by: null`` reinstates a superseded one (history ``reinstated``), an id marks
    it superseded by that memory (checked like ``supersedes`` on ingest: 404, 409 taken or
    cycle). A new content is embedded again and re-hashed (the full-text vector is a
    generated column); content equal to another live memory of the user is a 409 naming it.
    Every other change is one ``updated`` history entry with the old and new values."""
    caller.principal.authorize(user_id)
    wanted = patch.changes()
    supersede = "superseded_by" in wanted
    by: uuid.UUID | None = wanted.pop("superseded_by", None)
    new_hash = content_hash(wanted["content"]) if "content" in wanted else None
    # embedded before the transaction: no row lock is held while the model runs (wasted when the
    # content turns out unchanged, which a client rarely sends)
    vector = runtime.embedder().embed_one(wanted["content"]) if "content" in wanted else None
    pieces = (runtime.embedder().embed_pieces([wanted["content"]], get_settings().embedding_pieces)[0]
              if "content" in wanted else ())
    with runtime.database().user_tx(user_id) as cur:
        quotas.lock(cur, user_id)
        plan = LinkPlan(cur, user_id, [Links(supersedes=[memory_id])] if supersede and by is not None else [])
        row = memory_sql.lock_for_update(cur, user_id, memory_id, MEMORY_FIELDS)
        if row is None:
            raise NotFound("memory not found")
        if supersede and by is not None and by != row["superseded_by"]:
            # "memory_id is superseded by `by`" is "`by` supersedes [memory_id]"
            if by not in relation_sql.lock_visible(cur, user_id, [by]):
                raise NotFound(f"memory {by} not found (named in superseded_by)")
            plan.locked[memory_id] = row
            plan.check(by, Links(supersedes=[memory_id]), existing=True)
        changes = {
            k: {"old": _plain(row[k]), "new": _plain(v)} for k, v in wanted.items() if _plain(row[k]) != _plain(v)
        }
        relinked = supersede and by != row["superseded_by"]
        if not changes and not relinked:
            return memory_json(row)
        if changes:
            embedding = None
            if "content" in changes and new_hash != row["content_hash"]:
                _check_content_free(cur, user_id, memory_id, new_hash or "")
                embedding = vector
            values = {k: wanted[k] for k in changes}
            row = memory_sql.update_memory(cur, user_id, memory_id, values, embedding, new_hash, list(pieces),
                                           columns=MEMORY_FIELDS)
            action = "restored" if changes.get("archived", {}).get("new") is False else "updated"
            memory_sql.write_history(cur, user_id, [
                memory_sql.NewHistoryEntry(memory_id, row["version"], action, caller.principal.key_id, changes)
            ])
        if relinked:
            relation_sql.set_superseded(cur, user_id, [(memory_id, by)], caller.principal.key_id)
            changes["superseded_by"] = {"old": _plain(row["superseded_by"]), "new": _plain(by)}
            row = memory_sql.get_memory(cur, user_id, memory_id, MEMORY_FIELDS) or row
        audit.write(
            cur, [("update", str(memory_id), "ok", json.dumps({"fields": sorted(changes)}))],
            user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id,
        )
    return memory_json(row)


def _check_content_free(cur: Any, user_id: str, mid: uuid.UUID, new_hash: str) -> None:
    """Raise 409 when another visible memory of the user has this content; an expired one
    holding it is retired (it is invisible already and the unique index must let go)."""
    other = memory_sql.find_live_by_hash(cur, user_id, new_hash)
    if other is None or other["id"] == mid:
        return
    if other["expired"]:
        quotas.release(cur, user_id, memory_sql.retire_expired(cur, user_id, [other["id"]]))
        return
    raise Conflict("another memory of this user already has this content",
                   fields={"memory_id": str(other["id"])})


def memory_history(caller: Caller, memory_id: uuid.UUID, user_id: str) -> dict[str, Any]:
    """Every change of a memory, oldest first (also after a soft delete)."""
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        rows = memory_sql.history(cur, user_id, memory_id, HISTORY_FIELDS)
    if not rows:
        raise NotFound("memory not found")
    return {"memory_id": str(memory_id), "history": [memory_json(r) for r in rows]}


def _plain(value: Any) -> Any:
    """A JSON value for comparisons and history (timestamps as ISO 8601, reals rounded)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def delete_memory(caller: Caller, memory_id: uuid.UUID, user_id: str, hard: bool) -> dict[str, Any]:
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        if hard:
            found, was_live = memory_sql.hard_delete(cur, user_id, memory_id)
        else:
            found = was_live = memory_sql.soft_delete(cur, user_id, memory_id, caller.principal.key_id)
        if found:
            quotas.release(cur, user_id, int(was_live))
            audit.write(
                cur, [("erase" if hard else "delete", str(memory_id), "ok", "{}")],
                user_id=user_id, actor=caller.principal.key_id, ip=caller.ip,
                request_id=caller.request_id,
            )
    if not found:
        raise NotFound("memory not found")
    return {"memory_id": str(memory_id), "status": "erased" if hard else "deleted"}


def erase_user(caller: Caller, user_id: str) -> dict[str, Any]:
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        erased = memory_sql.erase_user(cur, user_id)
        quotas.clear(cur, user_id)
        audit.write(
            cur, [("erase_user", user_id, "ok", json.dumps({"erased": erased}))],
            user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id,
        )
    return {"user_id": user_id, "erased": erased, "status": "erased"}


def memory_json(row: dict[str, Any], fields: Sequence[str] | None = None) -> dict[str, Any]:
    """A database row as the API answers it (``fields`` of it, in that order, when given)."""
    return {key: _plain(row.get(key)) for key in fields or row.keys()}
