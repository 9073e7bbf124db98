"""SQL on the ``memories`` table. Every function takes a cursor of a transaction scoped to the
user (``Database.user_tx``: row-level security shows only that user's rows); all SQL is
parameterised."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from .pool import DictCursor

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
    """Erase every memory of ``user_id``; returns how many rows went."""
    cur.execute("DELETE FROM memories WHERE user_id = %s", (user_id,))
    return cur.rowcount


def touch(cur: DictCursor, user_id: str, counts: Mapping[uuid.UUID, int]) -> None:
    """Add ``counts[id]`` accesses to each memory and stamp ``accessed_at``."""
    ids = sorted(counts)  # a fixed lock order keeps concurrent updates deadlock-free
    cur.execute(
        """UPDATE memories m SET access_count = m.access_count + c.n, accessed_at = now()
           FROM unnest(%s::uuid[], %s::int[]) AS c(id, n)
           WHERE m.user_id = %s AND m.id = c.id""",
        (ids, [counts[i] for i in ids], user_id),
    )
