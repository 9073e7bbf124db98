"""Scheduled retention jobs on seeded data, against the real PostgreSQL, run as the service role
(``coda_app``, RLS on) through the SECURITY DEFINER functions of migration 0002."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import psycopg
import pytest

from coda_memory.db.pool import Database
from coda_memory.usecases import jobs
from tests.dbrows import insert_memory, new_user

VEC = "[" + ",".join(["0.05"] * 384) + "]"


def _seed(conn: psycopg.Connection, user: str, *, age_days: float = 0, access_count: int = 0,
          archived: bool = False, archived_days_ago: float | None = None,
          deleted_days_ago: float | None = None, importance: float = 0.5) -> str:
    now = datetime.now(UTC)
    return str(insert_memory(
        conn, user, f"memory {uuid.uuid4()}", embedding=VEC, created_at=now - timedelta(days=age_days),
        access_count=access_count, archived=archived,
        archived_at=now - timedelta(days=archived_days_ago) if archived_days_ago is not None else None,
        deleted=deleted_days_ago is not None,
        deleted_at=now - timedelta(days=deleted_days_ago) if deleted_days_ago is not None else None,
        importance=importance))


def _row(conn: psycopg.Connection, user: str, mid: str) -> dict | None:
    cur = conn.execute(
        "SELECT archived, archived_at, deleted, deleted_at FROM memories WHERE user_id=%s AND id=%s",
        (user, mid),
    )
    r = cur.fetchone()
    return None if r is None else dict(zip(["archived", "archived_at", "deleted", "deleted_at"], r, strict=True))


def _audit(conn: psycopg.Connection, user: str, action: str) -> list[dict]:
    cur = conn.execute(
        "SELECT actor, action, resource, result, request_id, details FROM memory_audit_log "
        "WHERE user_id=%s AND action=%s ORDER BY id", (user, action))
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def test_archival_keeps_important_and_superseded_memories_as_they_are(db, admin_conn):
    user = new_user("job")
    important = _seed(admin_conn, user, age_days=400, importance=0.8)
    plain = _seed(admin_conn, user, age_days=400, importance=0.79)
    newer = _seed(admin_conn, user, age_days=1)
    superseded = _seed(admin_conn, user, age_days=400)
    admin_conn.execute("UPDATE memories SET superseded_by = %s, superseded_at = now() WHERE id = %s",
                       (newer, superseded))
    jobs.archive(db, after_days=365, max_access_count=5, keep_importance=0.8, batch_size=100)
    assert [_row(admin_conn, user, m)["archived"] for m in (important, plain, superseded)] == [False, True, False]
    # the threshold is a setting: 0.7 archives neither 0.79 nor 0.8
    other = new_user("job")
    kept = _seed(admin_conn, other, age_days=400, importance=0.75)
    jobs.archive(db, after_days=365, max_access_count=5, keep_importance=0.7, batch_size=100)
    assert _row(admin_conn, other, kept)["archived"] is False


def test_archival_archives_only_old_rarely_used_live_memories(db, admin_conn):
    user = new_user("job")
    admin_conn.execute("INSERT INTO user_quotas (user_id, memory_count) VALUES (%s, 4)", (user,))
    old_unused = _seed(admin_conn, user, age_days=400, access_count=4)
    old_used = _seed(admin_conn, user, age_days=400, access_count=5)
    recent = _seed(admin_conn, user, age_days=300, access_count=0)
    old_deleted = _seed(admin_conn, user, age_days=400, deleted_days_ago=1)
    already = _seed(admin_conn, user, age_days=500, archived=True, archived_days_ago=30)
    before_already = _row(admin_conn, user, already)

    result = jobs.archive(db, after_days=365, max_access_count=5, batch_size=100, request_id="req-a1")
    assert result.complete and result.affected >= 1

    assert _row(admin_conn, user, old_unused)["archived"] is True
    assert _row(admin_conn, user, old_unused)["archived_at"] is not None
    assert _row(admin_conn, user, old_used)["archived"] is False
    assert _row(admin_conn, user, recent)["archived"] is False
    assert _row(admin_conn, user, old_deleted)["archived"] is False
    assert _row(admin_conn, user, already) == before_already  # archived_at not moved
    # memory_count counts live memories; archival does not change it
    assert admin_conn.execute("SELECT memory_count FROM user_quotas WHERE user_id=%s", (user,)).fetchone()[0] == 4

    audit = _audit(admin_conn, user, "archive")
    assert len(audit) == 1
    assert audit[0]["actor"] == "job:archival" and audit[0]["result"] == "ok"
    assert audit[0]["details"]["archived"] == 1 and audit[0]["request_id"] == "req-a1"
    summary = _audit(admin_conn, "", "job_run")
    assert any(a["request_id"] == "req-a1" and a["resource"] == "archival" for a in summary)

    # idempotent: a second run finds nothing of this user's and writes no audit row for them
    jobs.archive(db, after_days=365, max_access_count=5, batch_size=100)
    assert len(_audit(admin_conn, user, "archive")) == 1


def test_archival_works_in_bounded_batches(db, admin_conn):
    user = new_user("job")
    ids = [_seed(admin_conn, user, age_days=800) for _ in range(25)]
    result = jobs.archive(db, after_days=365, max_access_count=5, batch_size=10)
    assert result.batches >= 3 and result.affected >= 25
    assert all(_row(admin_conn, user, i)["archived"] for i in ids)
    per_batch = _audit(admin_conn, user, "archive")
    assert sum(a["details"]["archived"] for a in per_batch) == 25
    assert all(a["details"]["archived"] <= 10 for a in per_batch)


def test_batch_cap_and_time_budget_stop_early(db, admin_conn):
    user = new_user("job")
    for _ in range(5):
        _seed(admin_conn, user, age_days=900)
    out_of_time = jobs.archive(db, after_days=365, max_access_count=5, batch_size=2,
                               time_left_s=lambda: 1.0)
    assert out_of_time.batches == 0 and not out_of_time.complete
    capped = jobs.archive(db, after_days=365, max_access_count=5, batch_size=2, max_batches=1)
    assert capped.batches == 1 and not capped.complete and capped.affected == 2
    rest = jobs.archive(db, after_days=365, max_access_count=5, batch_size=2)
    assert rest.complete


def test_archival_skips_locked_rows_instead_of_waiting(db, admin_conn, postgres):
    user = new_user("job")
    locked = _seed(admin_conn, user, age_days=400)
    free = _seed(admin_conn, user, age_days=400)
    holder = psycopg.connect(postgres.admin_url)
    try:
        holder.execute("SELECT 1 FROM memories WHERE user_id=%s AND id=%s FOR UPDATE", (user, locked))
        t0 = time.monotonic()
        jobs.archive(db, after_days=365, max_access_count=5, batch_size=100)
        assert time.monotonic() - t0 < 5
        assert _row(admin_conn, user, free)["archived"] is True
        assert _row(admin_conn, user, locked)["archived"] is False
    finally:
        holder.rollback()
        holder.close()
    jobs.archive(db, after_days=365, max_access_count=5, batch_size=100)
    assert _row(admin_conn, user, locked)["archived"] is True


def test_retention_purge_hard_deletes_only_expired_soft_deletes(db, admin_conn):
    user = new_user("job")
    admin_conn.execute("INSERT INTO user_quotas (user_id, memory_count) VALUES (%s, 2)", (user,))
    expired = _seed(admin_conn, user, age_days=100, deleted_days_ago=31)
    fresh_delete = _seed(admin_conn, user, age_days=100, deleted_days_ago=5)
    live_old = _seed(admin_conn, user, age_days=1000)
    archived_old = _seed(admin_conn, user, age_days=1000, archived=True, archived_days_ago=200)

    result = jobs.purge(db, after_days=30, batch_size=100, request_id="req-p1")
    assert result.complete and result.affected >= 1
    assert _row(admin_conn, user, expired) is None
    assert _row(admin_conn, user, fresh_delete)["deleted"] is True
    assert _row(admin_conn, user, live_old) is not None
    assert _row(admin_conn, user, archived_old) is not None
    # the soft delete already took the row off memory_count
    assert admin_conn.execute("SELECT memory_count FROM user_quotas WHERE user_id=%s", (user,)).fetchone()[0] == 2
    audit = _audit(admin_conn, user, "purge")
    assert len(audit) == 1 and audit[0]["details"]["purged"] == 1
    assert audit[0]["actor"] == "job:retention_purge"

    jobs.purge(db, after_days=30, batch_size=100)
    assert len(_audit(admin_conn, user, "purge")) == 1


def test_quota_reset_starts_a_new_day_for_stale_counters_only(db, admin_conn):
    today = datetime.now(UTC).date()
    stale, current = new_user("job"), new_user("job")
    admin_conn.execute(
        "INSERT INTO user_quotas (user_id, max_memories, max_daily_ingestions, memory_count, "
        "daily_ingestions, quota_day) VALUES (%s, 10, 20, 7, 15, %s), (%s, 10, 20, 3, 9, %s)",
        (stale, today - timedelta(days=2), current, today),
    )
    result = jobs.reset_quotas(db, batch_size=1000, request_id="req-q1")
    assert result.complete and result.affected >= 1
    rows = dict(
        (r[0], r[1:]) for r in admin_conn.execute(
            "SELECT user_id, daily_ingestions, quota_day, memory_count, max_memories, "
            "max_daily_ingestions FROM user_quotas WHERE user_id IN (%s, %s)", (stale, current))
    )
    assert rows[stale] == (0, today, 7, 10, 20)
    assert rows[current] == (9, today, 3, 10, 20)
    system = _audit(admin_conn, "", "quota_reset")
    assert any(a["request_id"] == "req-q1" and a["details"]["users"] >= 1 for a in system)
    again = jobs.reset_quotas(db, batch_size=1000)
    assert again.affected == 0


def test_quota_reset_with_an_explicit_day_is_bounded(db, admin_conn):
    users = [new_user("job") for _ in range(5)]
    with admin_conn.transaction():
        for u in users:
            admin_conn.execute(
                "INSERT INTO user_quotas (user_id, daily_ingestions, quota_day) VALUES (%s, 1, %s)",
                (u, date(2020, 1, 1)))
    result = jobs.reset_quotas(db, batch_size=2, today=datetime.now(UTC).date())
    assert result.batches >= 3
    left = admin_conn.execute(
        "SELECT count(*) FROM user_quotas WHERE user_id = ANY(%s) AND daily_ingestions > 0", (users,)
    ).fetchone()[0]
    assert left == 0


def test_service_role_may_run_jobs_but_not_read_other_users(app_conn, admin_conn):
    user = new_user("job")
    _seed(admin_conn, user, age_days=1)
    # RLS: no user set, the app role sees nothing directly ...
    assert app_conn.execute("SELECT count(*) FROM memories WHERE user_id=%s", (user,)).fetchone()[0] == 0
    app_conn.rollback()
    # ... but may execute the job functions
    for fn in ("job_archive_batch(integer, integer, integer, text, real)", "job_purge_batch(integer, integer, text)",
               "job_reset_quotas_batch(date, integer, text)", "job_record_run(text, text, text, jsonb)"):
        assert admin_conn.execute("SELECT has_function_privilege('coda_app', %s, 'EXECUTE')", (fn,)).fetchone()[0]
        assert not admin_conn.execute(
            "SELECT bool_or(has_function_privilege(r.rolname, %s, 'EXECUTE')) FROM pg_roles r "
            "WHERE r.rolname NOT IN ('coda_app') AND NOT r.rolsuper AND r.rolname !~ '^pg_'", (fn,)
        ).fetchone()[0]


def test_bad_arguments_are_rejected_by_the_database(db):
    with pytest.raises(psycopg.errors.RaiseException):
        jobs.archive(db, after_days=0, max_access_count=5, batch_size=10)
    with pytest.raises(ValueError):
        jobs.run_job("nope", db)


def test_concurrent_runs_do_not_double_count(db, admin_conn, postgres):
    user = new_user("job")
    ids = [_seed(admin_conn, user, age_days=700) for _ in range(40)]
    results = []

    def run() -> None:
        database = Database(postgres.app_url)
        try:
            results.append(jobs.archive(database, after_days=365, max_access_count=5, batch_size=5))
        finally:
            database.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(_row(admin_conn, user, i)["archived"] for i in ids)
    assert sum(a["details"]["archived"] for a in _audit(admin_conn, user, "archive")) == 40


def test_job_handlers_run_through_the_lambda_entry_point(postgres, admin_conn, monkeypatch):
    from coda_memory import runtime
    from functions.jobs import app

    monkeypatch.setenv("DATABASE_URL", postgres.app_url)
    monkeypatch.setenv("MEMORY_JOB_BATCH_SIZE", "50")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    runtime.reset()
    user = new_user("job")
    mid = _seed(admin_conn, user, age_days=366 * 2)
    context = SimpleNamespace(aws_request_id="lambda-req-1", get_remaining_time_in_millis=lambda: 900_000)
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    try:
        out = app.archival_handler(event, context)
        assert out["job"] == "archival" and out["complete"] and out["request_id"] == "lambda-req-1"
        assert out["params"]["batch_size"] == 50
        assert _row(admin_conn, user, mid)["archived"] is True
        assert app.quota_reset_handler(event, context)["job"] == "quota_reset"
        assert app.retention_purge_handler(event, context)["job"] == "retention_purge"
    finally:
        runtime.reset()
