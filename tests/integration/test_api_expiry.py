"""expires_at: set on every write path, invisible everywhere once passed, erased by the purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coda_memory.usecases import jobs
from functions.ingest.app import ingest_events

FUTURE = (datetime.now(UTC) + timedelta(days=30)).isoformat()


def _expire(admin_conn, mid: str) -> None:
    """Let the memory's expiry pass (behind the app's back)."""
    admin_conn.execute("UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = %s", (mid,))


def test_expires_at_on_ingest_batch_events_and_patch(api, user_id):
    single = api.ingest(user_id=user_id, content="temporary single", expires_at=FUTURE).body["memory_id"]
    batch = api.call("POST", "/ingest/batch", body={"items": [
        {"content": "temporary batch", "content_type": "fact", "source_type": "t", "user_id": user_id,
         "expires_at": FUTURE}]}).body["results"][0]["memory_id"]
    event = ingest_events({"events": [{"event_id": "exp-1", "data": {
        "content": "temporary event", "user_id": user_id, "expires_at": FUTURE}}]})["results"][0]["memory_id"]
    for mid in (single, batch, event):
        got = api.call("GET", f"/memory/{mid}", query={"user_id": user_id}).body
        assert datetime.fromisoformat(got["expires_at"]) == datetime.fromisoformat(FUTURE)
    plain = api.ingest(user_id=user_id, content="permanent until patched").body["memory_id"]
    r = api.call("PATCH", f"/memory/{plain}", query={"user_id": user_id}, body={"expires_at": FUTURE})
    assert r.status == 200 and r.body["expires_at"] is not None
    r = api.call("PATCH", f"/memory/{plain}", query={"user_id": user_id}, body={"expires_at": None})
    assert r.status == 200 and r.body["expires_at"] is None and r.body["version"] == 3


@pytest.mark.parametrize("value", ["2000-01-01T00:00:00Z", "soon", 12, "10000-01-01T00:00:00Z"])
def test_expires_at_must_be_a_future_instant(api, user_id, value):
    r = api.ingest(user_id=user_id, content="bad expiry", expires_at=value)
    assert r.status == 422 and r.error_code == "validation_error"
    batch = api.call("POST", "/ingest/batch", body={"items": [
        {"content": "bad expiry", "content_type": "fact", "source_type": "t", "user_id": user_id,
         "expires_at": value}]})
    assert batch.body["results"][0]["status"] == "rejected"


def test_expires_at_within_the_clock_skew_is_taken_and_expires_at_once(api, user_id):
    """A client clock a little ahead (or "expire now") is not refused: up to 5 minutes in the
    past is taken and the memory is expired from the start; further back is a 422."""
    now = datetime.now(UTC)
    r = api.ingest(user_id=user_id, content="expire right away", expires_at=(now - timedelta(minutes=1)).isoformat())
    assert r.status == 201, r.body
    assert api.call("GET", f"/memory/{r.body['memory_id']}", query={"user_id": user_id}).status == 404
    assert api.search(query="expire right away", user_id=user_id).body["results"] == []
    kept = api.ingest(user_id=user_id, content="patched to expire now").body["memory_id"]
    r = api.call("PATCH", f"/memory/{kept}", query={"user_id": user_id}, body={"expires_at": now.isoformat()})
    assert r.status == 200, r.body
    assert api.call("GET", f"/memory/{kept}", query={"user_id": user_id}).status == 404
    r = api.ingest(user_id=user_id, content="too far back", expires_at=(now - timedelta(minutes=10)).isoformat())
    assert r.status == 422 and "expires_at" in r.body["error"]["message"]


def test_an_expired_memory_is_invisible_everywhere(api, user_id, admin_conn):
    kept = api.ingest(user_id=user_id, content="The deploy pipeline uses Terraform for infrastructure").body
    gone = api.ingest(user_id=user_id, content="Temporary: the staging infrastructure password rotates Friday",
                      expires_at=FUTURE).body["memory_id"]
    _expire(admin_conn, gone)
    assert api.call("GET", f"/memory/{gone}", query={"user_id": user_id}).status == 404
    listed = api.call("GET", "/memories", query={"user_id": user_id, "include_archived": "true"}).body
    assert [m["id"] for m in listed["memories"]] == [kept["memory_id"]]
    # words and meaning both match the expired one; neither retriever may bring it back
    results = api.search(user_id=user_id, query="staging infrastructure password rotates", top_k=10).body["results"]
    assert [r["id"] for r in results] == [kept["memory_id"]]
    context = api.call("POST", "/context", body={"user_id": user_id, "query": "staging password"}).body
    assert gone not in context["memory_ids"] and "password" not in context["context"]
    assert api.call("PATCH", f"/memory/{gone}", query={"user_id": user_id}, body={"importance": 1}).status == 404
    assert api.call("DELETE", f"/memory/{gone}", query={"user_id": user_id}).status == 404


def test_storing_the_content_of_an_expired_memory_again_creates_a_new_one(api, user_id, admin_conn):
    first = api.ingest(user_id=user_id, content="ephemeral fact", expires_at=FUTURE).body["memory_id"]
    _expire(admin_conn, first)
    again = api.ingest(user_id=user_id, content="ephemeral fact")
    assert again.status == 201 and again.body["memory_id"] != first
    history = api.call("GET", f"/memory/{first}/history", query={"user_id": user_id}).body["history"]
    assert [e["action"] for e in history] == ["created", "expired"]
    count = admin_conn.execute("SELECT memory_count FROM user_quotas WHERE user_id = %s", (user_id,)).fetchone()
    assert count == (1,)
    # and a PATCH to that content is no conflict either
    other = api.ingest(user_id=user_id, content="another ephemeral", expires_at=FUTURE).body["memory_id"]
    _expire(admin_conn, other)
    target = api.ingest(user_id=user_id, content="to become another ephemeral").body["memory_id"]
    r = api.call("PATCH", f"/memory/{target}", query={"user_id": user_id}, body={"content": "another ephemeral"})
    assert r.status == 200


def test_retention_purge_erases_expired_memories_and_their_history(api, user_id, admin_conn, postgres):
    from coda_memory.db.pool import Database

    gone = api.ingest(user_id=user_id, content="expiring soon", expires_at=FUTURE).body["memory_id"]
    kept = api.ingest(user_id=user_id, content="staying").body["memory_id"]
    _expire(admin_conn, gone)
    db = Database(postgres.app_url)
    try:
        result = jobs.purge(db, after_days=30, batch_size=100)
    finally:
        db.close()
    assert result.affected >= 1
    left = [r[0] for r in admin_conn.execute(
        "SELECT id::text FROM memories WHERE user_id = %s", (user_id,)).fetchall()]
    assert left == [kept]
    assert admin_conn.execute("SELECT count(*) FROM memory_history WHERE memory_id = %s", (gone,)).fetchone() == (0,)
    assert admin_conn.execute(
        "SELECT memory_count FROM user_quotas WHERE user_id = %s", (user_id,)).fetchone() == (1,)
    audit = admin_conn.execute(
        "SELECT details FROM memory_audit_log WHERE user_id = %s AND action = 'purge'", (user_id,)).fetchone()
    assert audit[0]["expired"] == 1
