"""The consolidation job on seeded vectors, against the real PostgreSQL, as the service role
through the SECURITY DEFINER function job_consolidate_batch."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from coda_memory.usecases import jobs
from tests.dbrows import insert_memory, new_user


def _vec(*weights: float) -> str:
    v = list(weights) + [0.0] * (384 - len(weights))
    norm = math.sqrt(sum(x * x for x in v))
    return "[" + ",".join(str(x / norm) for x in v) + "]"


SAME = _vec(1)
NEAR = _vec(1, 0.1)  # cosine 0.995 with SAME
OTHER = _vec(0, 0, 1)  # cosine 0


def _seed(conn: psycopg.Connection, user: str, vec: str, *, age_days: float, content_type: str = "fact",
          tags: list[str] | None = None, importance: float = 0.5, access_count: int = 0, deleted: bool = False,
          expires_at: datetime | None = None) -> str:
    # the same words for every seeded memory (consolidation merges only a memory that adds no
    # word to the survivor); a content hash of its own so each is a distinct memory
    now = datetime.now(UTC)
    return str(insert_memory(
        conn, user, "memory about the same thing", embedding=vec, content_hash=str(uuid.uuid4()),
        content_type=content_type, created_at=now - timedelta(days=age_days), tags=tags or [], importance=importance,
        access_count=access_count, deleted=deleted, deleted_at=now if deleted else None, expires_at=expires_at))


def _row(conn, mid):
    cur = conn.execute(
        "SELECT archived, superseded_by::text, tags, importance, access_count, version, "
        "NOT EXISTS (SELECT 1 FROM memory_consolidation_queue q WHERE q.memory_id = m.id) "
        "FROM memories m WHERE id = %s", (mid,))
    return cur.fetchone()


def _history(conn, mid):
    return conn.execute("SELECT version, action, actor, changes FROM memory_history WHERE memory_id = %s "
                        "ORDER BY version", (mid,)).fetchall()


def test_near_duplicates_fold_into_the_earliest(db, admin_conn):
    user = new_user("cons")
    first = _seed(admin_conn, user, SAME, age_days=10, tags=["a"], importance=0.3, access_count=2)
    dup = _seed(admin_conn, user, NEAR, age_days=5, tags=["b", "a"], importance=0.8, access_count=3)
    other = _seed(admin_conn, user, OTHER, age_days=4)
    other_type = _seed(admin_conn, user, NEAR, age_days=3, content_type="event")
    deleted = _seed(admin_conn, user, NEAR, age_days=2, deleted=True)
    elsewhere = _seed(admin_conn, user + "-x", NEAR, age_days=1)  # another user: never merged with these

    result = jobs.consolidate(db, similarity=0.95, batch_size=100, request_id="req-c1")
    assert result.complete and result.affected >= 5

    assert _row(admin_conn, dup)[:6] == (False, first, ["b", "a"], pytest.approx(0.8), 3, 2)
    archived, superseded_by, tags, importance, access, version, _checked = _row(admin_conn, first)
    assert (archived, superseded_by, tags, importance, access, version) == (False, None, ["a", "b"],
                                                                          pytest.approx(0.8), 5, 2)
    for mid in (other, other_type, elsewhere):
        assert _row(admin_conn, mid)[:2] == (False, None) and _row(admin_conn, mid)[6]
    assert _row(admin_conn, deleted)[:2] == (False, None)

    (_, action, actor, changes), = _history(admin_conn, dup)
    assert (action, actor) == ("superseded", "job:consolidation")
    assert changes == {"superseded_by": {"old": None, "new": first}}
    (_, action, _, changes), = _history(admin_conn, first)
    assert action == "updated" and changes["absorbed"] == {"old": None, "new": dup}
    assert changes["tags"] == {"old": ["a"], "new": ["a", "b"]} and changes["access_count"] == {"old": 2, "new": 5}

    audit = admin_conn.execute(
        "SELECT actor, request_id, details FROM memory_audit_log WHERE user_id = %s AND action = 'consolidate'",
        (user,)).fetchall()
    assert audit == [("job:consolidation", "req-c1", {"merged": 1, "checked": 4, "similarity": 0.95})]

    # idempotent: nothing left to compare, nothing changes
    again = jobs.consolidate(db, similarity=0.95, batch_size=100)
    assert _row(admin_conn, first)[5] == 2 and _row(admin_conn, dup)[5] == 2
    assert again.affected == 0 or all(_row(admin_conn, m)[5] <= 2 for m in (first, dup, other))


def test_a_chain_of_duplicates_keeps_the_earliest_and_batches_are_bounded(db, admin_conn):
    user = new_user("cons")
    ids = [_seed(admin_conn, user, _vec(1, 0.01 * i), age_days=10 - i) for i in range(5)]
    jobs.consolidate(db, similarity=0.95, batch_size=100)  # settle other tests' leftovers
    user2 = new_user("cons")
    ids2 = [_seed(admin_conn, user2, _vec(1, 0.01 * i), age_days=10 - i) for i in range(5)]
    result = jobs.consolidate(db, similarity=0.95, batch_size=2)
    assert result.batches >= 3
    for group in (ids, ids2):
        assert _row(admin_conn, group[0])[:2] == (False, None)
        assert all(_row(admin_conn, m)[:2] == (False, group[0]) for m in group[1:])
        assert _row(admin_conn, group[0])[5] == 5  # four absorptions


def test_below_the_threshold_nothing_merges_and_expired_memories_take_no_part(db, admin_conn):
    user = new_user("cons")
    a = _seed(admin_conn, user, _vec(1), age_days=3)
    b = _seed(admin_conn, user, _vec(1, 0.5), age_days=2)  # cosine 0.894
    expired = _seed(admin_conn, user, _vec(1), age_days=4, expires_at=datetime.now(UTC) - timedelta(hours=1))
    jobs.consolidate(db, similarity=0.95, batch_size=100)
    assert _row(admin_conn, a)[:2] == (False, None) and _row(admin_conn, b)[:2] == (False, None)
    assert _row(admin_conn, expired)[:2] == (False, None)


def test_patching_content_makes_a_memory_eligible_again(api, user_id, admin_conn, db):
    first = api.ingest(user_id=user_id, content="The user prefers dark roast coffee").body["memory_id"]
    second = api.ingest(user_id=user_id, content="The user likes hiking in the Alps").body["memory_id"]
    jobs.consolidate(db, similarity=0.95, batch_size=500)
    assert _row(admin_conn, second)[:2] == (False, None)
    r = api.call("PATCH", f"/memory/{second}", query={"user_id": user_id},
                 body={"content": "The user prefers dark roast coffee!"})
    assert r.status == 200
    jobs.consolidate(db, similarity=0.95, batch_size=500)
    assert _row(admin_conn, second)[:2] == (False, first)
    listed = api.call("GET", "/memories", query={"user_id": user_id}).body["memories"]
    assert [m["id"] for m in listed] == [first]
    merged = api.call("GET", f"/memory/{second}", query={"user_id": user_id}).body
    assert merged["archived"] is False and merged["superseded_by"] == first


def test_consolidation_handler_runs_the_job_with_settings(api_env, monkeypatch):
    from functions.jobs import app
    from local.apigw import LambdaContext

    monkeypatch.setenv("MEMORY_CONSOLIDATE_SIMILARITY", "0.97")
    from coda_memory.config import reset_settings

    reset_settings()
    try:
        out = app.consolidation_handler({"source": "aws.events"}, LambdaContext("consolidation", request_id="r-77"))
    finally:
        monkeypatch.undo()
        reset_settings()
    assert out["job"] == "consolidation" and out["complete"] and out["request_id"] == "r-77"
    assert out["params"]["similarity"] == 0.97


def test_bad_arguments_are_refused(db):
    with pytest.raises(psycopg.errors.RaiseException), db.system_tx() as cur:
        cur.execute("SELECT job_consolidate_batch(0, 10)")


def test_a_memory_is_merged_only_when_it_adds_no_word(db, admin_conn):
    user = new_user("cons")
    now = datetime.now(UTC)
    for content, vec, age_days in [("Dentist on March 24 at 9:30", SAME, 2), ("Dentist on April 19 at 11:30", NEAR, 1),
                                   ("Dentist on 24 March at 9:30!", NEAR, 0),
                                   ("Dentist on Friday 24 March at 9:30", NEAR, 0)]:
        insert_memory(admin_conn, user, content, embedding=vec, created_at=now - timedelta(days=age_days))
    jobs.consolidate(db, similarity=0.95, batch_size=100)
    rows = admin_conn.execute("SELECT content, superseded_by IS NOT NULL FROM memories WHERE user_id = %s "
                              "ORDER BY created_at", (user,)).fetchall()
    # the same words in another order: merged; other numbers, or one word more: kept apart
    assert sorted(rows) == [("Dentist on 24 March at 9:30!", True), ("Dentist on April 19 at 11:30", False),
                            ("Dentist on Friday 24 March at 9:30", False), ("Dentist on March 24 at 9:30", False)]


def test_a_merge_can_be_undone_and_stays_undone(api, user_id, admin_conn, db):
    first = api.ingest(user_id=user_id, content="The user drinks oat milk lattes").body["memory_id"]
    second = api.ingest(user_id=user_id, content="The user drinks oat milk lattes!").body["memory_id"]
    jobs.consolidate(db, similarity=0.95, batch_size=500)
    assert _row(admin_conn, second)[:2] == (False, first)
    r = api.call("PATCH", f"/memory/{second}", query={"user_id": user_id}, body={"superseded_by": None})
    assert r.status == 200 and r.body["archived"] is False and r.body["superseded_by"] is None
    last = api.call("GET", f"/memory/{second}/history", query={"user_id": user_id}).body["history"][-1]
    assert last["action"] == "reinstated"
    assert last["changes"] == {"superseded_by": {"old": first, "new": None}}
    jobs.consolidate(db, similarity=0.95, batch_size=500)  # not queued again: the restore holds
    assert _row(admin_conn, second)[:2] == (False, None)
    assert {m["id"] for m in api.call("GET", "/memories", query={"user_id": user_id}).body["memories"]} == {
        first, second}
