"""Scheduled jobs: archival, daily quota reset, retention purge, consolidation, and the
minute's fold of the access statistics counted in Redis (``usecases/access.py``).

Each job calls one SECURITY DEFINER function (``db/functions/job_*.sql``) in a loop: one short
transaction per bounded batch (``FOR UPDATE SKIP LOCKED`` inside), until a batch comes back
smaller than the batch size, the batch cap is reached, or the time budget runs out (a Lambda
invocation has a deadline). Every run writes a summary row to the audit log; the SQL functions
write the per-user rows. Running a job twice in a row changes nothing the second time.

Knobs (``coda_memory.config.Settings``): ``MEMORY_ARCHIVE_AFTER_DAYS`` (365),
``MEMORY_ARCHIVE_MAX_ACCESS_COUNT`` (5), ``MEMORY_ARCHIVE_KEEP_IMPORTANCE`` (0.8), ``MEMORY_PURGE_AFTER_DAYS`` (30),
``MEMORY_JOB_BATCH_SIZE`` (1000), ``MEMORY_CONSOLIDATE_SIMILARITY`` (0.95),
``MEMORY_CONSOLIDATE_BATCH_SIZE`` (200: each memory is a nearest-neighbour query),
``MEMORY_VECTOR_GRAPH_MIN_MEMORIES`` (2000: the archival run then builds the per-user vector
graphs of users who reached it and drops those of users who fell below half of it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypedDict, Unpack

from .. import runtime
from ..config import Settings, get_settings
from ..db import jobs as job_sql
from ..db.pool import Database, DictCursor
from . import access

#: The job names: schedules' handlers, audit rows, results, ``python -m local.run fire <job>``.
ARCHIVAL, QUOTA_RESET, RETENTION_PURGE, CONSOLIDATION, ACCESS_FOLD = (
    "archival", "quota_reset", "retention_purge", "consolidation", "access_fold")
#: Runs inside archival (archival changes which users are large), never on its own schedule.
VECTOR_GRAPHS = "vector_graphs"
JOBS = (ARCHIVAL, QUOTA_RESET, RETENTION_PURGE, CONSOLIDATION, ACCESS_FOLD)

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


class RunOptions(TypedDict, total=False):
    """How one run goes: its id in the audit log (the Lambda request id), the invocation's time
    left, and a cap on batches (a run that hits either leaves the rest for the next run)."""

    request_id: str | None
    time_left_s: Callable[[], float] | None
    max_batches: int


def _run_batches(
    db: Database | None,
    job: str,
    call: Callable[[DictCursor, int, str], int],
    batch_size: int,
    params: dict[str, Any],
    run: RunOptions,
) -> JobResult:
    """Call ``call(cursor, batch_size, request_id)`` one transaction at a time until a batch
    comes back short, the time budget or the batch cap ends the run; audit the run."""
    db = db or runtime.database()
    request_id = run.get("request_id") or str(uuid.uuid4())
    time_left_s = run.get("time_left_s")
    max_batches = run.get("max_batches", DEFAULT_MAX_BATCHES)
    result = JobResult(job=job, request_id=request_id, params={**params, "batch_size": batch_size})
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
                n = call(cur, batch_size, request_id)
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
    db: Database | None = None, *, after_days: int, max_access_count: int, batch_size: int,
    keep_importance: float = 0.8, **run: Unpack[RunOptions],
) -> JobResult:
    """Archive memories older than ``after_days`` read fewer than ``max_access_count`` times,
    except those with importance >= ``keep_importance``."""
    return _run_batches(
        db, ARCHIVAL,
        lambda cur, limit, rid: job_sql.archive_batch(cur, after_days, max_access_count, keep_importance, limit, rid),
        batch_size, {"after_days": after_days, "max_access_count": max_access_count,
                     "keep_importance": keep_importance}, run,
    )


#: Graphs built per transaction (a 50k-memory user's takes ~20 s).
VECTOR_GRAPHS_PER_BATCH = 5


def vector_graphs(db: Database | None = None, *, min_memories: int, **run: Unpack[RunOptions]) -> JobResult:
    """Give every user with at least ``min_memories`` searchable memories a vector graph of its
    own, drop those of users below half of it (``db/functions/memory_vector_graphs.sql``)."""
    return _run_batches(
        db, VECTOR_GRAPHS, lambda cur, limit, _rid: job_sql.vector_graphs_batch(cur, min_memories, limit),
        VECTOR_GRAPHS_PER_BATCH, {"min_memories": min_memories}, run,
    )


def purge(db: Database | None = None, *, after_days: int, batch_size: int, **run: Unpack[RunOptions]) -> JobResult:
    """Hard-delete memories soft-deleted more than ``after_days`` days ago, and expired ones."""
    return _run_batches(
        db, RETENTION_PURGE, lambda cur, limit, rid: job_sql.purge_batch(cur, after_days, limit, rid),
        batch_size, {"after_days": after_days}, run,
    )


def reset_quotas(
    db: Database | None = None, *, batch_size: int, today: date | None = None, **run: Unpack[RunOptions],
) -> JobResult:
    """Zero ``daily_ingestions`` and move ``quota_day`` to today (UTC) where it is older."""
    day = today or datetime.now(UTC).date()
    return _run_batches(
        db, QUOTA_RESET, lambda cur, limit, rid: job_sql.reset_quotas_batch(cur, day, limit, rid),
        batch_size, {"today": day.isoformat()}, run,
    )


def consolidate(
    db: Database | None = None, *, similarity: float, batch_size: int, max_tags: int = 32,
    **run: Unpack[RunOptions],
) -> JobResult:
    """Fold near-duplicate live memories (cosine >= ``similarity``, same content type) of each
    user into the earliest (``db/functions/job_consolidate_batch.sql``). ``affected`` counts the
    memories compared; the merges are in the per-user audit rows and the history."""
    return _run_batches(
        db, CONSOLIDATION,
        lambda cur, limit, rid: job_sql.consolidate_batch(cur, similarity, limit, max_tags, rid),
        batch_size, {"similarity": similarity}, run,
    )


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
    if job == ARCHIVAL:
        archived = archive(
            db,
            after_days=s.archive_after_days,
            max_access_count=s.archive_max_access_count,
            keep_importance=s.archive_keep_importance,
            batch_size=s.job_batch_size,
            request_id=request_id,
            time_left_s=time_left_s,
        )
        # archival changes who is large: the per-user graphs follow in the same run
        vector_graphs(db, min_memories=s.vector_graph_min_memories, request_id=request_id, time_left_s=time_left_s)
        return archived
    if job == QUOTA_RESET:
        return reset_quotas(
            db, batch_size=s.job_batch_size, request_id=request_id, time_left_s=time_left_s
        )
    if job == RETENTION_PURGE:
        return purge(
            db,
            after_days=s.purge_after_days,
            batch_size=s.job_batch_size,
            request_id=request_id,
            time_left_s=time_left_s,
        )
    if job == CONSOLIDATION:
        return consolidate(db, similarity=s.consolidate_similarity, batch_size=s.consolidate_batch_size,
                           max_tags=s.max_tags, request_id=request_id, time_left_s=time_left_s)
    if job == ACCESS_FOLD:
        # every minute: no audit row per run (the counts it adds are not an action on memories)
        folded = access.fold(db=db, time_left_s=time_left_s)
        return JobResult(job=job, affected=folded["accesses"], batches=folded["users"], complete=folded["complete"],
                         duration_ms=folded.get("duration_ms", 0), request_id=request_id or "",
                         params={k: v for k, v in folded.items() if k in ("memories", "skipped")})
    raise ValueError(f"unknown job {job!r}; known: {', '.join(JOBS)}")
