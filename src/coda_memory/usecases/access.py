"""Access statistics (``access_count``, ``accessed_at``): every memory a search returns is
counted once, by one of two paths (``MEMORY_ACCESS_STATS``):

* ``transaction`` (the default, and the fallback when no Redis is configured): the UPDATE runs
  in the search's own transaction, on its connection, after the ranking query. In pipeline mode
  it is sent without waiting and the commit that ends the search carries it, so the statistics
  cost no extra round trip and are committed before the answer leaves. That commit does not
  wait for the WAL flush (``synchronous_commit`` off for the search's transaction only, see
  ``db/memories.py``): a crash of the database server inside ``wal_writer_delay`` can lose the
  last counters, never a memory.
* ``redis``: the search is a read-only transaction (so it can run on an Aurora reader,
  ``MEMORY_SEARCH_DATABASE_URL``) and the accesses are counted in Redis after it
  (:mod:`coda_memory.access_counts`, one round trip); the ``access_fold`` job adds them to the
  writer every minute, at least once. If Redis fails, the accesses are written on the writer in
  a transaction of their own (two round trips more), never dropped.

Nothing runs after the handler returns -- on Lambda the execution environment is frozen then.
The archival job decides on ``access_count``, so it must not depend on background work.
A failure of the database write fails the request like any other database error (503 with
``Retry-After`` for an outage); statistics are never dropped silently.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from .. import runtime
from ..access_counts import AccessCounter, CounterUnavailable
from ..db import memories as memory_sql
from ..db.pool import Database, DictCursor

log = logging.getLogger(__name__)

#: The fold stops starting users when less than this much time is left (seconds).
FOLD_SAFETY_MARGIN_S = 5.0


def record_access(cur: DictCursor, user_id: str, ids: Sequence[uuid.UUID]) -> None:
    """Count one access of each of ``ids`` by ``user_id`` in the transaction of ``cur``."""
    if ids:
        memory_sql.touch(cur, user_id, Counter(ids))


def search_writes_access() -> bool:
    """True when the search's own transaction records the accesses: no Redis counter and the
    search runs on the writer. Otherwise the search is read-only and calls
    :func:`record_access_after`."""
    return runtime.access_counter() is None and runtime.search_database() is runtime.database()


def record_access_after(user_id: str, ids: Sequence[uuid.UUID]) -> None:
    """The accesses of a read-only search: counted in Redis, else written on the writer."""
    if not ids:
        return
    counter = runtime.access_counter()
    if counter is not None:
        try:
            counter.add(user_id, ids)
            return
        except CounterUnavailable as exc:
            log.warning("access counter unavailable, writing the accesses directly: %s", exc)
    with runtime.database().user_tx(user_id, pipeline=True) as cur:
        record_access(cur, user_id, ids)


def fold(
    counter: AccessCounter | None = None, db: Database | None = None, *,
    time_left_s: Callable[[], float] | None = None, lock_ttl_s: float = 300.0,
) -> dict[str, Any]:
    """Add the accesses counted in Redis to the writer: one short transaction per user (its
    memories' rows, RLS-scoped to that user), then the user's counts leave Redis. A fold that
    stops half-way (crash, time budget) leaves the rest for the next. One fold at a time."""
    counter = counter or runtime.access_counter()
    if counter is None:
        return {"job": "access_fold", "users": 0, "memories": 0, "accesses": 0, "complete": True, "skipped": "off"}
    db = db or runtime.database()
    t0 = time.monotonic()
    result: dict[str, Any] = {"job": "access_fold", "users": 0, "memories": 0, "accesses": 0, "complete": True}
    token = counter.lock(lock_ttl_s)
    if token is None:
        return {**result, "skipped": "another fold is running"}
    try:
        for user in counter.take():
            if time_left_s is not None and time_left_s() < FOLD_SAFETY_MARGIN_S:
                result["complete"] = False
                break
            with db.user_tx(user.user_id, pipeline=True) as cur:
                memory_sql.add_accesses(cur, user.user_id, user.counts, user.last_at)
            counter.done(user)
            result["users"] += 1
            result["memories"] += len(user.counts)
            result["accesses"] += sum(user.counts.values())
    finally:
        counter.unlock(token)
    result["duration_ms"] = int((time.monotonic() - t0) * 1000)
    return result
