"""Scheduled jobs: archival, daily quota reset, retention purge, consolidation.

Each job calls one SECURITY DEFINER function (``db/functions/jobs.sql``) in a loop: one short
transaction per bounded batch (``FOR UPDATE SKIP LOCKED`` inside), until a batch comes back
smaller than the batch size, the batch cap is reached, or the time budget runs out (a Lambda
invocation has a deadline). Every run writes a summary row to the audit log; the SQL functions
write the per-user rows. Running a job twice in a row changes nothing the second time.

Knobs (``coda_memory.config.Settings``): ``MEMORY_ARCHIVE_AFTER_DAYS`` (365),
``MEMORY_ARCHIVE_MAX_ACCESS_COUNT`` (5), ``MEMORY_PURGE_AFTER_DAYS`` (30),
``MEMORY_JOB_BATCH_SIZE`` (1000), ``MEMORY_CONSOLIDATE_SIMILARITY`` (0.95),
``MEMORY_CONSOLIDATE_BATCH_SIZE`` (200: each memory is a nearest-neighbour query).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from .. import runtime
from ..config import Settings, get_settings
from ..db import jobs as job_sql
from ..db.pool import Database, DictCursor

JOBS = ("archival", "quota_reset", "retention_purge", "consolidation")

#: Stop starting new batches when less than this much time is left (seconds).
SAFETY_MARGIN_S = 10.0
#: Upper bound on batches per run (a run that hits it leaves the rest for the next run).
DEFAULT_MAX_BATCHES = 10_000
#: A batch may take longer than a request (the API's statement timeout is 10 s by default).
JOB_STATEMENT_TIMEOUT_MS = 60_000


@dataclass
class JobResult:
    job: str
    affected: int = 0
    batches: int = 0
    complete: bool = True
    duration_ms: int = 0
    request_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run_batches(
    db: Database | None,
    job: str,
    call: Callable[[DictCursor, int], int],
    batch_size: int,
    params: dict[str, Any],
    request_id: str,
    time_left_s: Callable[[], float] | None,
    max_batches: int,
) -> JobResult:
    db = db or runtime.database()
    result = JobResult(job=job, request_id=request_id, params=params)
    t0 = time.monotonic()
    status = "ok"
    try:
        while True:
            if result.batches >= max_batches or (
                time_left_s is not None and time_left_s() < SAFETY_MARGIN_S
            ):
                result.complete = False
                break
            with db.system_tx(statement_timeout_ms=JOB_STATEMENT_TIMEOUT_MS) as cur:
                n = call(cur, batch_size)
            result.batches += 1
            result.affected += n
            if n < batch_size:
                break
    except Exception:
        status = "error"
        raise
    finally:
        result.duration_ms = int((time.monotonic() - t0) * 1000)
        details = {k: v for k, v in result.to_dict().items() if k not in ("job", "request_id")}
        try:
            with db.system_tx() as cur:
                job_sql.record_run(cur, job, status, request_id, details)
        except Exception:
            if status == "ok":
                raise
    return result


def archive(
    db: Database | None = None,
    *,
    after_days: int,
    max_access_count: int,
    batch_size: int,
    request_id: str | None = None,
    time_left_s: Callable[[], float] | None = None,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> JobResult:
    """Archive memories older than ``after_days`` read fewer than ``max_access_count`` times."""
    rid = request_id or str(uuid.uuid4())

    def call(cur: DictCursor, limit: int) -> int:
        return job_sql.archive_batch(cur, after_days, max_access_count, limit, rid)

    params = {"after_days": after_days, "max_access_count": max_access_count, "batch_size": batch_size}
    return _run_batches(db, "archival", call, batch_size, params, rid, time_left_s, max_batches)


def purge(
    db: Database | None = None,
    *,
    after_days: int,
    batch_size: int,
    request_id: str | None = None,
    time_left_s: Callable[[], float] | None = None,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> JobResult:
    """Hard-delete memories that were soft-deleted more than ``after_days`` days ago."""
    rid = request_id or str(uuid.uuid4())

    def call(cur: DictCursor, limit: int) -> int:
        return job_sql.purge_batch(cur, after_days, limit, rid)

    params = {"after_days": after_days, "batch_size": batch_size}
    return _run_batches(db, "retention_purge", call, batch_size, params, rid, time_left_s, max_batches)


def reset_quotas(
    db: Database | None = None,
    *,
    batch_size: int,
    today: date | None = None,
    request_id: str | None = None,
    time_left_s: Callable[[], float] | None = None,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> JobResult:
    """Zero ``daily_ingestions`` and move ``quota_day`` to today (UTC) where it is older."""
    rid = request_id or str(uuid.uuid4())
    day = today or datetime.now(UTC).date()

    def call(cur: DictCursor, limit: int) -> int:
        return job_sql.reset_quotas_batch(cur, day, limit, rid)

    params = {"today": day.isoformat(), "batch_size": batch_size}
    return _run_batches(db, "quota_reset", call, batch_size, params, rid, time_left_s, max_batches)


def consolidate(
    db: Database | None = None,
    *,
    similarity: float,
    batch_size: int,
    max_tags: int = 32,
    request_id: str | None = None,
    time_left_s: Callable[[], float] | None = None,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> JobResult:
    """Fold near-duplicate live memories (cosine >= ``similarity``, same content type) of each
    user into the earliest (``db/functions/job_consolidate_batch.sql``). ``affected`` counts the
    memories compared; the merges are in the per-user audit rows and the history."""
    rid = request_id or str(uuid.uuid4())

    def call(cur: DictCursor, limit: int) -> int:
        return job_sql.consolidate_batch(cur, similarity, limit, max_tags, rid)

    params = {"similarity": similarity, "batch_size": batch_size}
    return _run_batches(db, "consolidation", call, batch_size, params, rid, time_left_s, max_batches)


def run_job(
    job: str,
    db: Database | None = None,
    settings: Settings | None = None,
    *,
    request_id: str | None = None,
    time_left_s: Callable[[], float] | None = None,
) -> JobResult:
    """Run one job by name with the configured knobs."""
    s = settings or get_settings()
    if job == "archival":
        return archive(
            db,
            after_days=s.archive_after_days,
            max_access_count=s.archive_max_access_count,
            batch_size=s.job_batch_size,
            request_id=request_id,
            time_left_s=time_left_s,
        )
    if job == "quota_reset":
        return reset_quotas(
            db, batch_size=s.job_batch_size, request_id=request_id, time_left_s=time_left_s
        )
    if job == "retention_purge":
        return purge(
            db,
            after_days=s.purge_after_days,
            batch_size=s.job_batch_size,
            request_id=request_id,
            time_left_s=time_left_s,
        )
    if job == "consolidation":
        return consolidate(db, similarity=s.consolidate_similarity, batch_size=s.consolidate_batch_size,
                           max_tags=s.max_tags, request_id=request_id, time_left_s=time_left_s)
    raise ValueError(f"unknown job {job!r}; known: {', '.join(JOBS)}")
