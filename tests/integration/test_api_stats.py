"""GET /users/{user_id}/stats, GET /stats, and the score parts of POST /search with explain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from coda_memory.auth import generate_key, hash_key


@pytest.fixture()
def user_key(admin_conn, user_id):
    key = generate_key()
    admin_conn.execute("INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, 'stats test')",
                       (hash_key(key), user_id))
    return key


def _stored(api, user_id, content, **fields):
    r = api.ingest(user_id=user_id, content=content, **fields)
    assert r.status == 201, r.body
    return r.body["memory_id"]


def test_user_stats_count_every_state_and_breakdown(api, user_id, admin_conn):
    old = (datetime.now(UTC) - timedelta(days=800)).isoformat()
    live_a = _stored(api, user_id, "Alice drinks green tea", tags=["food", "morning"], content_type="preference")
    live_b = _stored(api, user_id, "Alice runs on Sundays", tags=["sport"], source_type="chat")
    due = _stored(api, user_id, "An old note nobody reads", created_at=old, importance=0.2)
    _stored(api, user_id, "An old but important note", created_at=old, importance=0.95)
    archived = _stored(api, user_id, "Archived thought", tags=["food"])
    deleted = _stored(api, user_id, "Deleted thought")
    expired = _stored(api, user_id, "Expired thought")
    superseded = _stored(api, user_id, "Alice lives in Lisbon")
    assert api.call("PATCH", f"/memory/{archived}", query={"user_id": user_id}, body={"archived": True}).status == 200
    assert api.call("DELETE", f"/memory/{deleted}", query={"user_id": user_id}).status == 200
    admin_conn.execute("UPDATE memories SET expires_at = now() - interval '1 minute' WHERE id = %s", (expired,))
    admin_conn.execute("UPDATE memories SET superseded_by = %s, superseded_at = now() WHERE id = %s",
                       (live_b, superseded))
    admin_conn.execute("UPDATE memories SET access_count = 7 WHERE id = %s", (live_a,))
    admin_conn.execute("UPDATE memories SET access_count = 2 WHERE id = %s", (live_b,))

    r = api.call("GET", f"/users/{user_id}/stats")
    assert r.status == 200, r.body
    s = r.body
    assert s["user_id"] == user_id
    assert s["counts"] == {"live": 4, "archived": 1, "superseded": 1, "expired": 1, "deleted": 1}
    assert s["recall"] == {"never": 2, "one_to_four": 1, "five_plus": 1}
    assert s["content_types"] == {"preference": 1, "fact": 3}
    assert s["source_types"] == {"test": 3, "chat": 1}
    # tags of live memories only (the archived "food" does not count); keyword rules may add more
    tags = {t["tag"]: t["count"] for t in s["top_tags"]}
    assert tags["food"] == 1 and tags["morning"] == 1 and tags["sport"] == 1
    days = {d["day"]: d["count"] for d in s["created_per_day"]}
    assert days[datetime.now(UTC).date().isoformat()] == 5  # every memory not deleted, created today
    assert sum(days.values()) == 5  # the two from 800 days ago are outside the 90 days
    # the old unimportant note is due; the important one is kept (MEMORY_ARCHIVE_KEEP_IMPORTANCE)
    assert s["archival_due"] == 1
    assert s["quota"]["memory_count"] == 7 and s["quota"]["max_memories"] == 50_000
    # what the API lists is what the statistics call live
    listed = api.call("GET", "/memories", query={"user_id": user_id, "limit": 100}).body["memories"]
    assert len(listed) == s["counts"]["live"] and due in {m["id"] for m in listed}


def test_user_stats_of_a_user_without_memories(api, user_id):
    s = api.call("GET", f"/users/{user_id}/stats").body
    assert s["counts"] == {"live": 0, "archived": 0, "superseded": 0, "expired": 0, "deleted": 0}
    assert s["top_tags"] == [] and s["created_per_day"] == [] and s["content_types"] == {}
    assert s["quota"] == {"memory_count": 0, "max_memories": 50_000, "daily_ingestions": 0,
                          "max_daily_ingestions": 1000}


def test_stats_are_per_user_and_service_stats_need_the_service_key(api, user_id, user_key):
    other = f"other-{uuid.uuid4().hex[:8]}"
    _stored(api, user_id, "mine")
    for _ in range(3):
        _stored(api, other, f"theirs {uuid.uuid4()}")
    mine = api.call("GET", f"/users/{user_id}/stats", api_key=user_key)
    assert mine.status == 200 and mine.body["counts"]["live"] == 1
    assert api.call("GET", f"/users/{other}/stats", api_key=user_key).status == 403
    denied = api.call("GET", "/stats", api_key=user_key)
    assert denied.status == 403 and denied.body["error"]["code"] == "forbidden"
    everyone = api.call("GET", "/stats")
    assert everyone.status == 200
    assert everyone.body["users"] >= 2 and everyone.body["counts"]["live"] >= 4
    busiest = {u["user_id"]: u["live"] for u in everyone.body["busiest_users"]}
    assert busiest.get(other, 3) == 3  # listed with its count when among the ten busiest
    assert "quota" not in everyone.body


@pytest.mark.parametrize("bad", ["bad*user", "x" * 300])
def test_stats_refuse_bad_user_ids(api, bad):
    r = api.call("GET", f"/users/{bad}/stats")
    assert r.status == 422 and r.body["error"]["code"] == "validation_error"


def test_search_explain_gives_the_parts_of_the_score(api, user_id):
    from coda_memory.config import get_settings

    _stored(api, user_id, "Alice is allergic to peanuts", importance=0.9)
    _stored(api, user_id, "Bob plays the trumpet in a jazz band", importance=0.3)
    plain = api.search(query="peanut allergy", user_id=user_id, top_k=5)
    assert plain.status == 200 and all("explain" not in r for r in plain.body["results"])
    r = api.search(query="peanut allergy", user_id=user_id, top_k=5, explain=True)
    assert r.status == 200
    s = get_settings()
    for hit in r.body["results"]:
        parts = hit["explain"]
        assert parts["cosine"] == hit["similarity"] and parts["relevance"] == hit["relevance"]
        assert parts["importance"] == pytest.approx(hit["importance"], abs=1e-6)
        assert 0 < parts["recency"] <= 1 and 0 <= parts["match"] <= 1 and parts["lexical"] >= 0
        assert parts["relevance"] == pytest.approx(
            s.weight_similarity * parts["match"] + s.weight_importance * parts["importance"]
            + s.weight_recency * parts["recency"], abs=1e-5)
    top, other = r.body["results"]
    assert top["content"].startswith("Alice") and top["explain"]["lexical"] > 0
    assert other["explain"]["lexical"] == 0  # no word in common with the query
    # explain changes nothing about the ranking
    assert [h["id"] for h in r.body["results"]] == [h["id"] for h in plain.body["results"]]
    assert api.search(query="x", user_id=user_id, explain="maybe").status == 422
