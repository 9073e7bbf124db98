"""SQL of supersession (``memories.superseded_by``) and typed relations (``memory_relations``,
migration 0040). Every function takes a cursor of a transaction scoped to the user (row-level
security shows only that user's rows, so a relation can never reach another user's memory)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .memories import NewHistoryEntry, write_history
from .pool import DictCursor


@dataclass(frozen=True)
class Link:
    """One edge: ``source_id`` --type--> ``target_id``. For ``supersedes`` the source is the
    newer memory (the one named in the older memory's ``superseded_by``)."""

    source_id: uuid.UUID
    type: str
    target_id: uuid.UUID
    created_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source_id": str(self.source_id), "type": self.type, "target_id": str(self.target_id),
                "created_at": self.created_at.isoformat() if self.created_at else None}


def lock_visible(cur: DictCursor, user_id: str, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The user's visible (not deleted, not expired) memories among ``ids``, locked until the
    transaction ends, in id order (concurrent writers lock in the same order). Each row:
    ``id``, ``superseded_by``."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    cur.execute(
        """SELECT m.id, m.superseded_by FROM memories m
            WHERE m.user_id = %s AND m.id = ANY(%s) AND NOT m.deleted AND NOT memory_expired(m)
            ORDER BY m.id FOR UPDATE""",
        (user_id, wanted),
    )
    return {r["id"]: r for r in cur.fetchall()}


def supersession_chain(cur: DictCursor, user_id: str, start: uuid.UUID) -> set[uuid.UUID]:
    """Every memory reached from ``start`` by following ``superseded_by`` (``start`` excluded):
    what superseded it, what superseded that, ... A memory that supersedes one of these would
    close a cycle."""
    cur.execute(
        """WITH RECURSIVE chain(id) AS (
               SELECT m.superseded_by FROM memories m
               WHERE m.user_id = %(u)s AND m.id = %(start)s AND m.superseded_by IS NOT NULL
               UNION
               SELECT m.superseded_by FROM memories m JOIN chain c ON m.user_id = %(u)s AND m.id = c.id
               WHERE m.superseded_by IS NOT NULL
           )
           SELECT id FROM chain""",
        {"u": user_id, "start": start},
    )
    return {r["id"] for r in cur.fetchall()}


def set_superseded(
    cur: DictCursor, user_id: str, pairs: Sequence[tuple[uuid.UUID, uuid.UUID | None]], actor: str,
    at: Sequence[datetime | None] | None = None,
) -> None:
    """Set ``superseded_by`` of each ``(memory, by)`` (``by`` None reinstates it), bump its
    version, and write the history entry (``superseded`` or ``reinstated``) with the old and new
    value. Rows are locked by the caller (:func:`lock_visible`)."""
    if not pairs:
        return
    stamps = list(at) if at is not None else [None] * len(pairs)
    cur.execute(
        """UPDATE memories m
           SET superseded_by = c.by, superseded_at = CASE WHEN c.by IS NULL THEN NULL ELSE coalesce(c.at, now()) END,
               version = m.version + 1, updated_at = now()
           FROM unnest(%s::uuid[], %s::uuid[], %s::timestamptz[]) AS c(id, by, at),
                LATERAL (SELECT o.superseded_by AS before FROM memories o
                         WHERE o.user_id = %s AND o.id = c.id) old
           WHERE m.user_id = %s AND m.id = c.id
           RETURNING m.id, m.version, old.before, m.superseded_by""",
        ([p[0] for p in pairs], [p[1] for p in pairs], stamps, user_id, user_id),
    )
    write_history(cur, user_id, [
        NewHistoryEntry(r["id"], r["version"], "superseded" if r["superseded_by"] else "reinstated", actor,
                     {"superseded_by": {"old": _text(r["before"]), "new": _text(r["superseded_by"])}})
        for r in cur.fetchall()
    ])


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def add_relations(cur: DictCursor, user_id: str, links: Sequence[Link]) -> list[tuple[Link, bool]]:
    """Insert ``links`` (not ``supersedes``); each with whether it was new. An existing relation
    keeps its ``created_at``."""
    out: list[tuple[Link, bool]] = []
    for link in links:
        cur.execute(
            """WITH ins AS (
                   INSERT INTO memory_relations (user_id, source_id, type, target_id, created_at)
                   VALUES (%(u)s, %(s)s, %(t)s, %(d)s, coalesce(%(at)s, now()))
                   ON CONFLICT DO NOTHING
                   RETURNING created_at)
               SELECT created_at, true AS new FROM ins
               UNION ALL
               SELECT created_at, false FROM memory_relations
               WHERE user_id = %(u)s AND source_id = %(s)s AND type = %(t)s AND target_id = %(d)s
                 AND NOT EXISTS (SELECT 1 FROM ins)""",
            {"u": user_id, "s": link.source_id, "t": link.type, "d": link.target_id, "at": link.created_at},
        )
        row = cur.fetchone()
        assert row is not None
        out.append((Link(link.source_id, link.type, link.target_id, row["created_at"]), bool(row["new"])))
    return out


def delete_relation(cur: DictCursor, user_id: str, source_id: uuid.UUID, type_: str, target_id: uuid.UUID) -> bool:
    cur.execute(
        """DELETE FROM memory_relations
           WHERE user_id = %s AND source_id = %s AND type = %s AND target_id = %s""",
        (user_id, source_id, type_, target_id),
    )
    return cur.rowcount > 0


def links_of(cur: DictCursor, user_id: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Link]]:
    """Every relation touching one of ``ids`` (outgoing and incoming), supersession included as
    type ``supersedes`` (newer --supersedes--> older), oldest first; keyed by each id."""
    out: dict[uuid.UUID, list[Link]] = {i: [] for i in ids}
    if not ids:
        return out
    cur.execute(
        """SELECT source_id, type, target_id, created_at FROM (
               SELECT r.source_id, r.type, r.target_id, r.created_at FROM memory_relations r
               WHERE r.user_id = %(u)s AND r.source_id = ANY(%(ids)s)
               UNION
               SELECT r.source_id, r.type, r.target_id, r.created_at FROM memory_relations r
               WHERE r.user_id = %(u)s AND r.target_id = ANY(%(ids)s)
               UNION
               SELECT m.superseded_by, 'supersedes', m.id, m.superseded_at FROM memories m
               WHERE m.user_id = %(u)s AND m.id = ANY(%(ids)s) AND m.superseded_by IS NOT NULL
               UNION
               SELECT m.superseded_by, 'supersedes', m.id, m.superseded_at FROM memories m
               WHERE m.user_id = %(u)s AND m.superseded_by = ANY(%(ids)s)
           ) l ORDER BY created_at, type, source_id, target_id""",
        {"u": user_id, "ids": list(ids)},
    )
    for r in cur.fetchall():
        link = Link(r["source_id"], r["type"], r["target_id"], r["created_at"])
        for end in {link.source_id, link.target_id}:
            if end in out:
                out[end].append(link)
    return out


def expansion(cur: DictCursor, user_id: str, ids: Sequence[uuid.UUID], state: str) -> list[uuid.UUID]:
    """The memories that ``ids`` extend or are derived_from (in the order of ``ids``, then of
    the relation's creation), not in ``ids``, passing the memory-state clause ``state`` (alias
    ``m``, a fixed fragment of db/filters.py) and not expired."""
    if not ids:
        return []
    cur.execute(
        f"""SELECT r.target_id FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS s(id, n)
            JOIN memory_relations r ON r.user_id = %(u)s AND r.source_id = s.id
                                   AND r.type IN ('extends', 'derived_from')
            JOIN memories m ON m.user_id = %(u)s AND m.id = r.target_id
            WHERE {state} AND NOT memory_expired(m) AND NOT r.target_id = ANY(%(ids)s)
            ORDER BY s.n, r.created_at, r.target_id""",  # noqa: S608 - fixed fragments
        {"u": user_id, "ids": list(ids)},
    )
    return list(dict.fromkeys(r["target_id"] for r in cur.fetchall()))


def similar(
    cur: DictCursor, user_id: str, vector: np.ndarray, min_similarity: float, limit: int,
    exclude: Sequence[uuid.UUID] = (),
) -> list[dict[str, Any]]:
    """Up to ``limit`` of the user's searchable, unexpired memories closest to ``vector`` with
    cosine similarity >= ``min_similarity``, closest first (``memory_nearest``: the user's own
    vectors), ``exclude`` left out."""
    cur.execute(
        """SELECT n.id AS memory_id, m.content, (1 - n.distance)::float8 AS similarity
           FROM memory_nearest(%(q)s::halfvec, %(k)s) n
           JOIN memories m ON m.user_id = %(u)s AND m.id = n.id
           WHERE 1 - n.distance >= %(min)s AND NOT n.id = ANY(%(ex)s::uuid[])
           ORDER BY n.distance, n.id LIMIT %(limit)s""",
        {"q": vector, "k": limit + len(exclude), "u": user_id, "min": min_similarity, "ex": list(exclude),
         "limit": limit},
    )
    return cur.fetchall()
