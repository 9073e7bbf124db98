"""SQL on ``user_quotas``: the per-user counters that bound memories and daily ingestions.
Every function takes a cursor of a transaction scoped to the user."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.rows import dict_row

from .pool import DictCursor


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


def lock_and_find_existing(
    cur: DictCursor, user_id: str, default_max: int, default_daily: int,
    hashes: Sequence[str], event_ids: Sequence[str],
) -> tuple[Quota, dict[str, uuid.UUID], dict[str, uuid.UUID], list[uuid.UUID]]:
    """Lock the user's quota row for this transaction (creating it with the defaults), so
    concurrent ingests of one user are serialised and quota checks are exact -- the daily
    counter rolls over at UTC midnight even before the reset job runs -- and find the live
    memories with one of ``hashes`` and any memory with one of ``event_ids``; the live memories
    with one of ``hashes`` that have expired come back apart (to be retired, not matched).

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
            """SELECT m.id, m.content_hash, m.event_id, m.deleted, memory_expired(m) AS expired
               FROM memories m
               WHERE m.user_id = %s AND ((m.content_hash = ANY(%s) AND NOT m.deleted) OR m.event_id = ANY(%s))""",
            (user_id, list(hashes), list(event_ids)),
        )
        row = cur.fetchone()
        existing = found.fetchall()
    assert row is not None
    by_hash: dict[str, uuid.UUID] = {}
    by_event: dict[str, uuid.UUID] = {}
    expired: list[uuid.UUID] = []
    for r in existing:
        if not r["deleted"] and r["expired"]:
            # invisible already; it gives way to the new memory (the caller retires it)
            expired.append(r["id"])
        elif not r["deleted"]:
            by_hash[r["content_hash"]] = r["id"]
        if r["event_id"] is not None:
            by_event[r["event_id"]] = r["id"]
    return Quota(**row), by_hash, by_event, expired


def lock(cur: DictCursor, user_id: str) -> None:
    """Hold the user's quota row until the transaction ends: serialises a change of content
    with concurrent ingests of the user, so the content-hash dedup sees a settled state."""
    cur.execute("SELECT 1 FROM user_quotas WHERE user_id = %s FOR UPDATE", (user_id,))


def add(cur: DictCursor, user_id: str, created: int) -> None:
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


def release(cur: DictCursor, user_id: str, removed: int) -> None:
    if removed:
        cur.execute(
            """UPDATE user_quotas SET memory_count = greatest(0, memory_count - %s), updated_at = now()
               WHERE user_id = %s""",
            (removed, user_id),
        )




def clear(cur: DictCursor, user_id: str) -> None:
    """The user has no memories left (erasure)."""
    cur.execute("UPDATE user_quotas SET memory_count = 0, updated_at = now() WHERE user_id = %s", (user_id,))
