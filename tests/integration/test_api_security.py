"""Authentication, per-user keys, cross-user isolation on every route, rate limits, quotas."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from coda_memory.auth import generate_key, hash_key


@pytest.fixture()
def user_key(admin_conn, user_id):
    """A stored key bound to ``user_id`` (only its hash is in the database)."""
    key = generate_key()
    admin_conn.execute("INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, 'test')",
                       (hash_key(key), user_id))
    return key


def _routes(user_id: str, memory_id: str):
    return [
        ("POST", "/ingest", {"body": {"content": "x", "content_type": "fact", "source_type": "t", "user_id": user_id}}),
        ("POST", "/ingest/batch", {"body": {"items": [
            {"content": "x", "content_type": "fact", "source_type": "t", "user_id": user_id}]}}),
        ("GET", f"/memory/{memory_id}", {"query": {"user_id": user_id}}),
        ("DELETE", f"/memory/{memory_id}", {"query": {"user_id": user_id}}),
        ("DELETE", f"/users/{user_id}/memories", {}),
        ("POST", "/search", {"body": {"query": "x", "user_id": user_id}}),
        ("POST", "/context", {"body": {"query": "x", "user_id": user_id, "max_tokens": 50}}),
        ("GET", "/health", {}),
    ]


@pytest.mark.parametrize("key", [None, "", "wrong-key", "test-service-key-012345678", "x" * 5000])
def test_every_route_needs_a_valid_key(api, user_id, key):
    for method, path, kwargs in _routes(user_id, str(uuid.uuid4())):
        r = api.call(method, path, api_key=key, **kwargs)
        assert r.status == 401, (method, path)
        assert r.error_code == "unauthorized"
        assert "test-service-key" not in str(r.body)


def test_denied_requests_are_audited_without_the_key(api, user_id, admin_conn):
    api.call("POST", "/search", api_key="definitely-wrong", body={"query": "x", "user_id": user_id})
    row = admin_conn.execute(
        "SELECT actor, action, result, ip FROM memory_audit_log WHERE result = 'denied:unauthorized' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row == ("anonymous", "POST /search", "denied:unauthorized", "203.0.113.7")
    logged = admin_conn.execute("SELECT count(*) FROM memory_audit_log WHERE details::text LIKE '%definitely-wrong%'"
                                " OR actor LIKE '%definitely-wrong%'").fetchone()
    assert logged == (0,)


def test_user_bound_key_works_for_its_user_and_gets_403_elsewhere(api, user_id, user_key, admin_conn):
    mine = api.call("POST", "/ingest", api_key=user_key,
                    body={"user_id": user_id, "content": "mine", "content_type": "fact", "source_type": "t"})
    assert mine.status == 201
    victim = user_id + "-victim"
    victim_mem = api.ingest(user_id=victim, content="victim's secret").body["memory_id"]
    for method, path, kwargs in _routes(victim, victim_mem):
        if path in ("/health", "/ingest/batch"):  # batch items are rejected one by one (below)
            continue
        r = api.call(method, path, api_key=user_key, **kwargs)
        assert r.status == 403, (method, path, r.body)
        assert r.error_code == "forbidden"
    # Nothing of the victim was touched, and the denial is in the victim's audit trail.
    assert api.call("GET", f"/memory/{victim_mem}", query={"user_id": victim}).status == 200
    denied = admin_conn.execute(
        "SELECT count(*) FROM memory_audit_log WHERE user_id = %s AND result = 'denied:forbidden'", (victim,)
    ).fetchone()[0]
    assert denied >= 6


def test_a_body_is_validated_before_the_key_is_checked_for_the_user(api, user_id, user_key):
    """Every route parses its body in the handler first (as ingest and search always did), so a
    malformed request is a 422 whoever it names."""
    mid = "00000000-0000-0000-0000-000000000000"
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id + "-x"}, body={"importance": 7},
                 api_key=user_key)
    assert r.status == 422 and r.body["error"]["message"].startswith("importance")
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id + "-x"}, body={"importance": 0.7},
                 api_key=user_key)
    assert r.status == 403


def test_batch_with_a_bound_key_rejects_only_foreign_items(api, user_id, user_key, admin_conn):
    r = api.call("POST", "/ingest/batch", api_key=user_key, body={"items": [
        {"content": "ok item", "content_type": "fact", "source_type": "t", "user_id": user_id},
        {"content": "foreign", "content_type": "fact", "source_type": "t", "user_id": user_id + "-other"},
    ]})
    assert [x["status"] for x in r.body["results"]] == ["created", "rejected"]
    assert r.body["results"][1]["error"]["code"] == "forbidden"
    denied = admin_conn.execute(
        "SELECT action FROM memory_audit_log WHERE user_id = %s AND result = 'denied:forbidden'",
        (user_id + "-other",),
    ).fetchall()
    assert denied == [("ingest",)]


def test_memories_are_invisible_across_users_on_every_read_route(api, user_id):
    other = user_id + "-b"
    secret = api.ingest(user_id=other, content="the launch code is swordfish").body["memory_id"]
    api.ingest(user_id=user_id, content="harmless note about lunch")
    assert api.call("GET", f"/memory/{secret}", query={"user_id": user_id}).status == 404
    assert api.call("DELETE", f"/memory/{secret}", query={"user_id": user_id}).status == 404
    assert api.call("DELETE", f"/memory/{secret}", query={"user_id": user_id, "hard": "true"}).status == 404
    found = api.search(query="launch code swordfish", user_id=user_id, top_k=100)
    assert secret not in {r["id"] for r in found.body["results"]}
    ctx = api.call("POST", "/context", body={"query": "launch code", "user_id": user_id, "max_tokens": 500})
    assert "swordfish" not in ctx.body["context"] and secret not in ctx.body["memory_ids"]
    api.call("DELETE", f"/users/{user_id}/memories")
    assert api.call("GET", f"/memory/{secret}", query={"user_id": other}).status == 200


def test_rate_limit_returns_429_with_retry_after(api, user_id, settings_env):
    settings_env(MEMORY_RATE_LIMIT_PER_SECOND="0.5", MEMORY_RATE_LIMIT_BURST="3")
    statuses = [api.search(query="x", user_id=user_id).status for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    r = api.search(query="x", user_id=user_id)
    assert r.error_code == "rate_limited" and int(r.headers["retry-after"]) >= 1


def test_rate_limit_is_per_key(api, user_id, user_key, settings_env):
    settings_env(MEMORY_RATE_LIMIT_PER_SECOND="0.5", MEMORY_RATE_LIMIT_BURST="1")
    assert api.search(query="x", user_id=user_id).status == 200
    assert api.search(query="x", user_id=user_id).status == 429
    assert api.call("POST", "/search", api_key=user_key, body={"query": "x", "user_id": user_id}).status == 200


def test_daily_quota_is_exact_under_concurrency(api, user_id, settings_env, admin_conn):
    settings_env(MEMORY_DEFAULT_MAX_DAILY_INGESTIONS="5")
    barrier = threading.Barrier(10)

    def go(i: int):
        barrier.wait()
        return api.ingest(user_id=user_id, content=f"distinct memory number {i}")

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(go, range(10)))
    assert sorted(r.status for r in responses) == [201] * 5 + [429] * 5
    limited = [r for r in responses if r.status == 429]
    assert all(r.error_code == "quota_exceeded" and int(r.headers["retry-after"]) > 0 for r in limited)
    assert admin_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user_id,)).fetchone() == (5,)
    # A duplicate of a stored memory does not count against the spent quota; new content does.
    (stored,) = admin_conn.execute("SELECT content FROM memories WHERE user_id = %s LIMIT 1", (user_id,)).fetchone()
    assert api.ingest(user_id=user_id, content=stored).status == 200
    assert api.ingest(user_id=user_id, content="one memory too many").status == 429


def test_memory_quota_in_batches(api, user_id, settings_env, admin_conn):
    settings_env(MEMORY_DEFAULT_MAX_MEMORIES="3")
    items = [{"content": f"item {i}", "content_type": "fact", "source_type": "t", "user_id": user_id} for i in range(5)]
    r = api.call("POST", "/ingest/batch", body={"items": items})
    assert [x["status"] for x in r.body["results"]] == ["created"] * 3 + ["rejected"] * 2
    assert r.body["results"][4]["error"]["code"] == "quota_exceeded"
    # Deleting frees room.
    api.call("DELETE", f"/memory/{r.body['results'][0]['memory_id']}", query={"user_id": user_id})
    assert api.ingest(user_id=user_id, content="one more").status == 201
    assert api.ingest(user_id=user_id, content="and another").status == 429


def test_database_down_is_503_not_500(api, user_id, settings_env):
    settings_env(DATABASE_URL="postgresql://coda_app@127.0.0.1:1/nowhere", MEMORY_DB_CONNECT_TIMEOUT_S="1")
    r = api.search(query="x", user_id=user_id)
    assert r.status == 503 and r.error_code == "service_unavailable" and "retry-after" in r.headers
    assert "nowhere" not in str(r.body)


def test_keys_cli_creates_user_keys_that_work_and_revokes_them(api, user_id, postgres, capsys):
    from coda_memory import runtime
    from coda_memory.cli.keys import main

    assert main(["--database-url", postgres.admin_url, "create", "--user", user_id, "--name", "cli"]) == 0
    out = capsys.readouterr().out
    key = out.split("key    ")[1].split()[0]
    key_id = out.split("key_id ")[1].split()[0]
    body = {"query": "x", "user_id": user_id}
    assert api.call("POST", "/search", api_key=key, body=body).status == 200
    assert api.call("POST", "/search", api_key=key, body={**body, "user_id": user_id + "-x"}).status == 403
    assert main(["--database-url", postgres.admin_url, "list", "--user", user_id]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and key not in listing
    assert main(["--database-url", postgres.admin_url, "revoke", key_id]) == 0
    runtime.authenticator.clear()  # positive lookups are cached for 60 s per process
    assert api.call("POST", "/search", api_key=key, body=body).status == 401
    assert main(["--database-url", postgres.admin_url, "revoke", key_id]) == 1
