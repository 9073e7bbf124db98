"""SQL of the scheduled jobs: one call of a SECURITY DEFINER job function per bounded batch
(``db/functions/job_*_batch.sql``, one file per job, and ``job_record_run.sql``). Each returns
how many rows the batch changed."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from .pool import DictCursor


def _count(cur: DictCursor, sql: str, params: tuple[Any, ...]) -> int:
    cur.execute(sql, params)
    row = cur.fetchone()
    return int(next(iter(row.values()))) if row else 0


def archive_batch(
    cur: DictCursor, after_days: int, max_access_count: int, keep_importance: float, limit: int, request_id: str
) -> int:
    return _count(cur, "SELECT job_archive_batch(%s, %s, %s, %s, %s::real)",
                  (after_days, max_access_count, limit, request_id, keep_importance))


def purge_batch(cur: DictCursor, after_days: int, limit: int, request_id: str) -> int:
    return _count(cur, "SELECT job_purge_batch(%s, %s, %s)", (after_days, limit, request_id))


def reset_quotas_batch(cur: DictCursor, today: date, limit: int, request_id: str) -> int:
    return _count(cur, "SELECT job_reset_quotas_batch(%s, %s, %s)", (today, limit, request_id))


def consolidate_batch(cur: DictCursor, similarity: float, limit: int, max_tags: int, request_id: str) -> int:
    return _count(cur, "SELECT job_consolidate_batch(%s, %s, %s, %s)", (similarity, limit, max_tags, request_id))


def vector_graphs_batch(cur: DictCursor, min_vectors: int, limit: int) -> int:
    """Build (or drop) up to ``limit`` per-user vector graphs; how many changed."""
    return _count(cur, "SELECT count(*) FROM memory_vector_graphs_sync(%s, %s)", (min_vectors, limit))


def record_run(cur: DictCursor, job: str, status: str, request_id: str, details: dict[str, Any]) -> None:
    """One summary row per job run in the audit log (user '' = the system)."""
    cur.execute(
        "SELECT job_record_run(%s, %s, %s, %s::jsonb)",
        (job, status, request_id, json.dumps(details, default=str)),
    )
