"""SQL of the memory statistics (``db/functions/memory_stats.sql``): one call, one JSON document."""

from __future__ import annotations

from typing import Any

from .pool import DictCursor


def memory_stats(
    cur: DictCursor, *, all_users: bool, archive_after_days: int, archive_max_access: int,
    keep_importance: float | None, top: int = 10, days: int = 90,
) -> dict[str, Any]:
    """The statistics of the transaction's user, or with ``all_users`` of every user."""
    cur.execute(
        "SELECT memory_stats(%s, %s, %s, %s::real, %s, %s) AS stats",
        (all_users, archive_after_days, archive_max_access, keep_importance, top, days),
    )
    row = cur.fetchone()
    return dict(row["stats"]) if row and row["stats"] else {}
