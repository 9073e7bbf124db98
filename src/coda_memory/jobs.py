"""Scheduled retention jobs: archival, daily quota reset, retention purge.

Each job calls one SECURITY DEFINER function of migration 0002 in a loop: one short
transaction per bounded batch (``FOR UPDATE SKIP LOCKED`` inside), until a batch comes back
smaller than the batch size, the batch cap is reached, or the time budget runs out (a Lambda
invocation has a deadline). Every run writes a summary row to the audit log; the SQL functions
write the per-user rows. Running a job twice in a row changes nothing the second time.

Knobs (``coda_memory.config.Settings``): ``MEMORY_ARCHIVE_AFTER_DAYS`` (365),
``MEMORY_ARCHIVE_MAX_ACCESS_COUNT`` (5), ``MEMORY_PURGE_AFTER_DAYS`` (30),
``MEMORY_JOB_BATCH_SIZE`` (1000).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import psycopg

from .config import Settings, get_settings

JOBS = ("archival", "quota_reset", "retention_purge")

#: Stop starting new batches when less than this much time is left (seconds).
SAFETY_MARGIN_S = 10.0
#: Upper bound on batches per run (a run that hits it leaves the rest for the next run).
DEFAULT_MAX_BATCHES = 10_000


class _Connectable(Protocol):
    def connection(self) -> Any: ...


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
    conn_source: _Connectable,
    job: str,
    call: Callable[[psycopg.Connection, int], int],
    batch_size: int,
    params: dict[str, Any],
    request_id: str,
    time_left_s: Callable[[], float] | None,
    max_batches: int,
) -> JobResult:
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
            with conn_source.connection() as conn, conn.transaction():
                n = call(conn, batch_size)
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
            with conn_source.connection() as conn, conn.transaction():
                conn.execute(
                    "SELECT job_record_run(%s, %s, %s, %s::jsonb)",
                    (job, status, request_id, json.dumps(details, default=str)),
                )
        except Exception:
            if status == "ok":
                raise
    return result


def archive(
    db: _Connectable,
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

    def call(conn: psycopg.Connection, limit: int) -> int:
        row = conn.execute(
            "SELECT job_archive_batch(%s, %s, %s, %s)", (after_days, max_access_count, limit, rid)
        ).fetchone()
        return int(row[0]) if row else 0

    params = {"after_days": after_days, "max_access_count": max_access_count, "batch_size": batch_size}
    return _run_batches(db, "archival", call, batch_size, params, rid, time_left_s, max_batches)


def purge(
    db: _Connectable,
    *,
    after_days: int,
    batch_size: int,
    request_id: str | None = None,
    time_left_s: Callable[[], float] | None = None,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> JobResult:
    """Hard-delete memories that were soft-deleted more than ``after_days`` days ago."""
    rid = request_id or str(uuid.uuid4())

    def call(conn: psycopg.Connection, limit: int) -> int:
        row = conn.execute(
            "SELECT job_purge_batch(%s, %s, %s)", (after_days, limit, rid)
        ).fetchone()
        return int(row[0]) if row else 0

    params = {"after_days": after_days, "batch_size": batch_size}
    return _run_batches(db, "retention_purge", call, batch_size, params, rid, time_left_s, max_batches)


def reset_quotas(
    db: _Connectable,
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

    def call(conn: psycopg.Connection, limit: int) -> int:
        row = conn.execute(
            "SELECT job_reset_quotas_batch(%s, %s, %s)", (day, limit, rid)
        ).fetchone()
        return int(row[0]) if row else 0

    params = {"today": day.isoformat(), "batch_size": batch_size}
    return _run_batches(db, "quota_reset", call, batch_size, params, rid, time_left_s, max_batches)


def run_job(
    job: str,
    db: _Connectable,
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
    raise ValueError(f"unknown job {job!r}; known: {', '.join(JOBS)}")


# --- connection for the job functions -------------------------------------------------------


def database_url(settings: Settings | None = None) -> str:
    """``DATABASE_URL``, else the Secrets Manager secret named by ``DATABASE_URL_SECRET`` (read
    the same way as the API functions read it: :func:`coda_memory.runtime.database_url`)."""
    from . import runtime

    return runtime.database_url(settings or get_settings())


class JobConnections:
    """One autocommit-off connection per execution environment, reconnected when broken.
    The jobs run one at a time per function (reserved concurrency 1), so a pool is not needed."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0, statement_timeout_ms: int = 60_000):
        self._url = url
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(
            self._url, connect_timeout=max(1, int(self._connect_timeout)), autocommit=True
        )
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(self._statement_timeout_ms),))
        return conn

    def connection(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def _cm() -> Any:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            yield self._conn

        return _cm()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
