"""SQL for memories, quotas and the audit log. Every function takes a cursor opened by
``Database.user_tx`` (RLS already scoped to the user); all SQL is parameterised."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .db.pool import DictCursor

MEMORY_COLUMNS = (
    "id, user_id, content, content_type, source_type, source_id, context_id, tags, importance, "
    "confidence, metadata, content_hash, created_at, ingested_at, accessed_at, access_count, "
    "archived, archived_at"
)


@dataclass
class NewMemory:
    id: uuid.UUID
    user_id: str
    content: str
    content_type: str
    embedding: np.ndarray
    source_type: str
    source_id: str | None
    context_id: str | None
    event_id: str | None
    importance: float
    confidence: float
    tags: list[str]
    metadata: dict[str, Any]
    content_hash: str
    created_at: datetime | None


# --- quotas -----------------------------------------------------------------------------------


@dataclass
class Quota:
    max_memories: int
    max_daily_ingestions: int
    memory_count: int
    daily_ingestions: int

    @property
    def remaining(self) -> int:
        return max(
            0,
            min(self.max_memories - self.memory_count, self.max_daily_ingestions - self.daily_ingestions),
        )


def lock_quota_and_find_existing(
    cur: DictCursor, user_id: str, default_max: int, default_daily: int,
    hashes: Sequence[str], event_ids: Sequence[str],
) -> tuple[Quota, dict[str, uuid.UUID], dict[str, uuid.UUID]]:
    """Lock the user's quota row for this transaction (creating it with the defaults), so
    concurrent ingests of one user are serialised and quota checks are exact -- the daily
    counter rolls over at UTC midnight even before the reset job runs -- and find the live
    memories with one of ``hashes`` and any memory with one of ``event_ids``.

    The three statements are all sent before the first result is read: in pipeline mode
    (``user_tx(..., pipeline=True)``) that is one round trip. The lookup runs after the lock
    is granted (same connection, in order), so it sees every row a concurrent ingest of this
    user committed before releasing it."""
    with cur.connection.cursor(row_factory=dict_row) as found:
        cur.execute(
            """INSERT INTO user_quotas (user_id, max_memories, max_daily_ingestions)
               VALUES (%s, %s, %s) ON CONFLICT (user_id) DO NOTHING""",
            (user_id, default_max, default_daily),
        )
        cur.execute(
            """SELECT max_memories, max_daily_ingestions, memory_count,
                      CASE WHEN quota_day = (now() AT TIME ZONE 'UTC')::date THEN daily_ingestions ELSE 0 END
                          AS daily_ingestions
               FROM user_quotas WHERE user_id = %s FOR UPDATE""",
            (user_id,),
        )
        found.execute(
            """SELECT id, content_hash, event_id, deleted FROM memories
               WHERE user_id = %s AND ((content_hash = ANY(%s) AND NOT deleted) OR event_id = ANY(%s))""",
            (user_id, list(hashes), list(event_ids)),
        )
        row = cur.fetchone()
        existing = found.fetchall()
    assert row is not None
    by_hash: dict[str, uuid.UUID] = {}
    by_event: dict[str, uuid.UUID] = {}
    for r in existing:
        if not r["deleted"]:
            by_hash[r["content_hash"]] = r["id"]
        if r["event_id"] is not None:
            by_event[r["event_id"]] = r["id"]
    return Quota(**row), by_hash, by_event


def add_to_quota(cur: DictCursor, user_id: str, created: int) -> None:
    cur.execute(
        """UPDATE user_quotas SET
               memory_count = memory_count + %(n)s,
               daily_ingestions = CASE WHEN quota_day = (now() AT TIME ZONE 'UTC')::date
                                       THEN daily_ingestions ELSE 0 END + %(n)s,
               quota_day = (now() AT TIME ZONE 'UTC')::date,
               updated_at = now()
           WHERE user_id = %(u)s""",
        {"n": created, "u": user_id},
    )


def release_quota(cur: DictCursor, user_id: str, removed: int) -> None:
    if removed:
        cur.execute(
            """UPDATE user_quotas SET memory_count = greatest(0, memory_count - %s), updated_at = now()
               WHERE user_id = %s""",
            (removed, user_id),
        )


# --- writes -----------------------------------------------------------------------------------


def insert_memories(cur: DictCursor, rows: Sequence[NewMemory]) -> None:
    cur.executemany(
        """INSERT INTO memories (id, user_id, content, content_type, embedding, source_type,
               source_id, context_id, event_id, importance, confidence, tags, metadata,
               content_hash, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))""",
        [
            (
                r.id, r.user_id, r.content, r.content_type, r.embedding, r.source_type,
                r.source_id, r.context_id, r.event_id, r.importance, r.confidence, r.tags,
                Jsonb(r.metadata), r.content_hash, r.created_at,
            )
            for r in rows
        ],
    )


def audit(
    cur: DictCursor,
    entries: Sequence[tuple[str, str | None, str, str]],
    *,
    user_id: str,
    actor: str,
    ip: str | None,
    request_id: str | None,
) -> None:
    """Append audit rows ``(action, resource, result, details-json)`` for ``user_id``."""
    cur.executemany(
        """INSERT INTO memory_audit_log (user_id, actor, action, resource, ip, result, request_id, details)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)""",
        [(user_id, actor, a, res, ip, result, request_id, details) for a, res, result, details in entries],
    )


def audit_denied(
    cur: DictCursor, *, user_id: str | None, actor: str, action: str, resource: str | None,
    ip: str | None, result: str, request_id: str | None,
) -> None:
    """Audit a request that never reached a user's scope (via the SECURITY DEFINER function)."""
    cur.execute(
        "SELECT write_audit(%s, %s, %s, %s, %s, %s, %s, '{}'::jsonb)",
        (user_id, actor, action, resource, ip, result, request_id),
    )


# --- reads and deletes ------------------------------------------------------------------------


def get_memory(cur: DictCursor, user_id: str, memory_id: uuid.UUID) -> dict[str, Any] | None:
    cur.execute(
        f"SELECT {MEMORY_COLUMNS} FROM memories WHERE user_id = %s AND id = %s AND NOT deleted",  # noqa: S608
        (user_id, memory_id),
    )
    return cur.fetchone()


def soft_delete(cur: DictCursor, user_id: str, memory_id: uuid.UUID) -> bool:
    cur.execute(
        """UPDATE memories SET deleted = true, deleted_at = now()
           WHERE user_id = %s AND id = %s AND NOT deleted""",
        (user_id, memory_id),
    )
    return cur.rowcount == 1


def hard_delete(cur: DictCursor, user_id: str, memory_id: uuid.UUID) -> tuple[bool, bool]:
    """Erase one memory; returns (found, was_live) so the quota can be released."""
    cur.execute(
        "DELETE FROM memories WHERE user_id = %s AND id = %s RETURNING deleted",
        (user_id, memory_id),
    )
    row = cur.fetchone()
    return (row is not None, bool(row is not None and not row["deleted"]))


def erase_user(cur: DictCursor, user_id: str) -> int:
    cur.execute("DELETE FROM memories WHERE user_id = %s", (user_id,))
    erased = cur.rowcount
    cur.execute(
        "UPDATE user_quotas SET memory_count = 0, updated_at = now() WHERE user_id = %s", (user_id,)
    )
    return erased


def touch(cur: DictCursor, user_id: str, counts: Mapping[uuid.UUID, int]) -> None:
    """Add ``counts[id]`` accesses to each memory and stamp ``accessed_at``."""
    ids = sorted(counts)  # a fixed lock order keeps concurrent updates deadlock-free
    cur.execute(
        """UPDATE memories m SET access_count = m.access_count + c.n, accessed_at = now()
           FROM unnest(%s::uuid[], %s::int[]) AS c(id, n)
           WHERE m.user_id = %s AND m.id = c.id""",
        (ids, [counts[i] for i in ids], user_id),
    )
