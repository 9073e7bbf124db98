"""Access statistics (``access_count``, ``accessed_at``), written with the search that caused them.

The UPDATE runs in the search's own transaction, on its connection, after the ranking query:
in pipeline mode it is sent without waiting and the commit that ends the search carries it, so
the statistics cost no extra round trip and are committed before the answer leaves. That
commit does not wait for the WAL flush (``synchronous_commit`` off for the search's transaction
only, see ``db/memories.py``): PostgreSQL flushes it within ``wal_writer_delay``, so a crash of the
database server inside that window can lose the last counters, never a memory.
Nothing runs after the handler returns -- on Lambda the execution environment is frozen then,
and a background writer (what this module used to be) could lose or delay the update. The
archival job decides on ``access_count``, so it must not depend on that.

A failure of the UPDATE fails the request like any other database error (503 with
``Retry-After`` for an outage); statistics are never dropped silently.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from ..db import memories as memory_sql
from ..db.pool import DictCursor


def record_access(cur: DictCursor, user_id: str, ids: Sequence[uuid.UUID]) -> None:
    """Count one access of each of ``ids`` by ``user_id`` in the transaction of ``cur``."""
    if ids:
        memory_sql.touch(cur, user_id, Counter(ids))
