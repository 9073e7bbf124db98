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

from .filters import Filters, where_clause
from .pool import DictCursor

#: Reads that return memories take the columns to return from the caller: which fields a
#: memory has in an answer is the API contract's (``contract.Memory``, ``contract.SearchResult``),
#: said there once. ``Columns`` are column names of ``memories``.
Columns = Sequence[str]

#: What the export writes per memory (the embedding only on request).
EXPORT_COLUMNS = ("id", "content", "content_type", "source_type", "source_id", "context_id", "event_id", "tags",
                  "metadata", "importance", "confidence", "created_at", "expires_at", "archived", "superseded_by",
                  "superseded_at")

#: Fields a PATCH may change (``content`` also changes ``content_hash`` and ``embedding``).
PATCHABLE = ("content", "content_type", "tags", "importance", "confidence", "metadata", "context_id",
             "expires_at", "archived")


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
    expires_at: datetime | None = None
    archived: bool = False
    #: embeddings of the rest of a text longer than the model reads (Embedder.embed_pieces)
    embedding_pieces: Sequence[np.ndarray] = ()


@dataclass
class NewHistoryEntry:
    """A ``memory_history`` row to write (like :class:`NewMemory`: its time is the database's
    ``now()``). How the API shows a written one is ``contract.HistoryEntry``, read back by
    :func:`history`."""

    memory_id: uuid.UUID
    version: int
    action: str  # created | imported | updated | deleted | expired | restored | superseded | reinstated
    actor: str
    changes: dict[str, Any]


# --- writes -----------------------------------------------------------------------------------


def insert_memories(cur: DictCursor, rows: Sequence[NewMemory], *, actor: str, action: str = "created") -> None:
    """Insert ``rows`` (all of the transaction's user) and their first history entries."""
    cur.executemany(
        """INSERT INTO memories (id, user_id, content, content_type, embedding, source_type,
               source_id, context_id, event_id, importance, confidence, tags, metadata,
               content_hash, created_at, expires_at, archived, archived_at, embedding_pieces)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()), %s,
                   %s, CASE WHEN %s THEN now() END, %s::halfvec[])""",
        [
            (
                r.id, r.user_id, r.content, r.content_type, r.embedding, r.source_type,
                r.source_id, r.context_id, r.event_id, r.importance, r.confidence, r.tags,
                Jsonb(r.metadata), r.content_hash, r.created_at, r.expires_at, r.archived, r.archived,
                pieces_param(r.embedding_pieces),
            )
            for r in rows
        ],
    )
    if rows:
        write_history(cur, rows[0].user_id, [NewHistoryEntry(r.id, 1, action, actor, {}) for r in rows])


def write_history(cur: DictCursor, user_id: str, entries: Sequence[NewHistoryEntry]) -> None:
    if not entries:
        return
    cur.executemany(
        """INSERT INTO memory_history (user_id, memory_id, version, action, actor, changes)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        [(user_id, e.memory_id, e.version, e.action, e.actor, Jsonb(e.changes)) for e in entries],
    )


def history(cur: DictCursor, user_id: str, memory_id: uuid.UUID, columns: Columns) -> list[dict[str, Any]]:
    """``columns`` of each history entry of a memory, oldest first (kept after a soft delete)."""
    cur.execute(
        f"""SELECT {prefixed(columns, "h")} FROM memory_history h
            WHERE h.user_id = %s AND h.memory_id = %s ORDER BY h.version""",  # noqa: S608 - checked names
        (user_id, memory_id),
    )
    return cur.fetchall()


def lock_for_update(cur: DictCursor, user_id: str, memory_id: uuid.UUID, columns: Columns) -> dict[str, Any] | None:
    """The visible memory's ``columns``, locked until the transaction ends (None when there is none)."""
    cur.execute(
        f"""SELECT {prefixed(columns)} FROM memories m
            WHERE m.user_id = %s AND m.id = %s AND NOT m.deleted AND NOT memory_expired(m)
            FOR UPDATE""",  # noqa: S608 - fixed fragments
        (user_id, memory_id),
    )
    return cur.fetchone()


def pieces_param(pieces: Sequence[np.ndarray]) -> list[str] | None:
    """The ``halfvec[]`` parameter of a memory's pieces (NULL when it has none)."""
    return ["[" + ",".join(f"{x:.6g}" for x in v) + "]" for v in pieces] or None


def update_memory(
    cur: DictCursor, user_id: str, memory_id: uuid.UUID, values: Mapping[str, Any],
    embedding: np.ndarray | None, content_hash: str | None, pieces: Sequence[np.ndarray] = (), *,
    columns: Columns,
) -> dict[str, Any]:
    """Set ``values`` (keys from :data:`PATCHABLE`) on the memory, bump its version, and return
    the row's ``columns``. A plain UPDATE of the row, so generated columns and triggers follow."""
    sets = ["version = version + 1", "updated_at = now()"]
    params: dict[str, Any] = {"u": user_id, "id": memory_id}
    for key, value in values.items():
        if key not in PATCHABLE:
            raise ValueError(f"not a patchable field: {key}")
        sets.append(f"{key} = %({key})s")  # key is one of the fixed names above
        params[key] = Jsonb(value) if key == "metadata" else value
    if "archived" in values:
        sets.append("archived_at = CASE WHEN %(archived)s THEN now() END")
    if embedding is not None:
        # (a trigger queues the new content for consolidation)
        sets += ["embedding = %(embedding)s", "content_hash = %(hash)s", "embedding_pieces = %(pieces)s::halfvec[]"]
        params.update(embedding=embedding, hash=content_hash, pieces=pieces_param(pieces))
    cur.execute(
        f"UPDATE memories m SET {', '.join(sets)} WHERE m.user_id = %(u)s AND m.id = %(id)s "  # noqa: S608
        f"RETURNING {prefixed(columns)}",
        params,
    )
    row = cur.fetchone()
    assert row is not None  # locked by lock_for_update in this transaction
    return row


def find_live_by_hash(cur: DictCursor, user_id: str, content_hash: str) -> dict[str, Any] | None:
    """The live (not deleted) memory with this content hash, expired or not."""
    cur.execute(
        """SELECT m.id, memory_expired(m) AS expired FROM memories m
            WHERE m.user_id = %s AND m.content_hash = %s AND NOT m.deleted""",
        (user_id, content_hash),
    )
    return cur.fetchone()


def retire_expired(cur: DictCursor, user_id: str, ids: Sequence[uuid.UUID]) -> int:
    """Soft-delete expired memories whose content is being stored again (the unique content
    hash index covers every live row, expired or not); returns how many went."""
    if not ids:
        return 0
    cur.execute(
        """UPDATE memories m SET deleted = true, deleted_at = now(), version = version + 1
            WHERE m.user_id = %s AND m.id = ANY(%s) AND NOT m.deleted AND memory_expired(m)
            RETURNING m.id, m.version""",
        (user_id, list(ids)),
    )
    gone = cur.fetchall()
    _deleted_history(cur, user_id, gone, "expired", "system")
    return len(gone)


def _deleted_history(cur: DictCursor, user_id: str, rows: Sequence[dict[str, Any]], action: str, actor: str) -> None:
    write_history(cur, user_id, [
        NewHistoryEntry(r["id"], r["version"], action, actor, {"deleted": {"old": False, "new": True}}) for r in rows
    ])


# --- reads and deletes ------------------------------------------------------------------------


def get_memory(cur: DictCursor, user_id: str, memory_id: uuid.UUID, columns: Columns) -> dict[str, Any] | None:
    """The visible memory's ``columns`` (None when there is none)."""
    cur.execute(
        f"SELECT {prefixed(columns)} FROM memories m "  # noqa: S608
        f"WHERE m.user_id = %s AND m.id = %s AND NOT m.deleted AND NOT memory_expired(m)",
        (user_id, memory_id),
    )
    return cur.fetchone()


def list_page(
    cur: DictCursor, user_id: str, filters: Filters, limit: int,
    after: tuple[datetime, uuid.UUID] | None, *, columns: Columns, include_archived: bool = False,
    include_superseded: bool = False, newest_first: bool = True,
) -> list[dict[str, Any]]:
    """``columns`` of up to ``limit`` visible memories of ``user_id`` in (created_at, id) order,
    after the keyset position ``after`` (exclusive). Served by ``memories_user_created_id``."""
    where, params = where_clause(filters, include_archived=include_archived, include_superseded=include_superseded)
    params.update(user_id=user_id, limit=limit)
    direction = "DESC" if newest_first else "ASC"
    if after is not None:
        where += f" AND (m.created_at, m.id) {'<' if newest_first else '>'} (%(c_at)s, %(c_id)s)"
        params.update(c_at=after[0], c_id=after[1])
    cur.execute(
        f"SELECT {prefixed(columns)} FROM memories m WHERE {where} "  # noqa: S608 - fixed fragments
        f"ORDER BY m.created_at {direction}, m.id {direction} LIMIT %(limit)s",
        params,
    )
    return cur.fetchall()


def soft_delete(cur: DictCursor, user_id: str, memory_id: uuid.UUID, actor: str) -> bool:
    cur.execute(
        """UPDATE memories m SET deleted = true, deleted_at = now(), version = version + 1
            WHERE m.user_id = %s AND m.id = %s AND NOT m.deleted AND NOT memory_expired(m)
            RETURNING m.id, m.version""",
        (user_id, memory_id),
    )
    rows = cur.fetchall()
    _deleted_history(cur, user_id, rows, "deleted", actor)
    return bool(rows)


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
    """Add ``counts[id]`` accesses to each memory and stamp ``accessed_at``.

    The transaction's commit then does not wait for its WAL to reach the disk
    (``synchronous_commit`` off for this transaction only: a search carries no acknowledged
    write). The server flushes it within ``wal_writer_delay`` (200 ms) whatever happens to the
    caller -- a frozen Lambda environment included; only a database crash inside that window
    can lose these counters. Waiting for the flush cost a search ~3 ms."""
    ids = sorted(counts)  # a fixed lock order keeps concurrent updates deadlock-free
    cur.execute("SELECT set_config('synchronous_commit', 'off', true)")
    cur.execute(
        """UPDATE memories m SET access_count = m.access_count + c.n, accessed_at = now()
           FROM unnest(%s::uuid[], %s::int[]) AS c(id, n)
           WHERE m.user_id = %s AND m.id = c.id""",
        (ids, [counts[i] for i in ids], user_id),
    )


def add_accesses(
    cur: DictCursor, user_id: str, counts: Mapping[uuid.UUID, int], last_at: Mapping[uuid.UUID, datetime]
) -> None:
    """Add accesses counted elsewhere (the Redis fold): ``counts[id]`` to ``access_count`` and
    ``accessed_at`` moved forward to ``last_at[id]`` (now when unknown), never back. Ids the
    user does not have (erased since, or not theirs) change nothing."""
    ids = sorted(counts)  # a fixed lock order keeps concurrent updates deadlock-free
    cur.execute(
        """UPDATE memories m SET access_count = m.access_count + c.n,
                  accessed_at = greatest(m.accessed_at, coalesce(c.at, now()))
           FROM unnest(%s::uuid[], %s::int[], %s::timestamptz[]) AS c(id, n, at)
           WHERE m.user_id = %s AND m.id = c.id""",
        (ids, [counts[i] for i in ids], [last_at.get(i) for i in ids], user_id),
    )


def existing_ids(cur: DictCursor, user_id: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``ids`` the user already has (deleted or not: the primary key covers both)."""
    if not ids:
        return set()
    cur.execute("SELECT id FROM memories WHERE user_id = %s AND id = ANY(%s)", (user_id, list(ids)))
    return {r["id"] for r in cur.fetchall()}


def ids_taken_by_others(cur: DictCursor, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``ids`` belong to another user than the transaction's (SECURITY DEFINER
    ``memory_ids_taken``: the service role cannot see other users' rows)."""
    if not ids:
        return set()
    cur.execute("SELECT memory_ids_taken AS id FROM memory_ids_taken(%s::uuid[])", (list(ids),))
    return {r["id"] for r in cur.fetchall()}


def prefixed(columns: Columns, alias: str = "m") -> str:
    """``columns`` of ``alias`` as a select list (names from the code, checked all the same:
    they are written into the statement)."""
    for column in columns:
        if not column.isidentifier():
            raise ValueError(f"not a column name: {column!r}")
    return ", ".join(f"{alias}.{column}" for column in columns)
