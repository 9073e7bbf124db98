"""Ingest, get, delete and erase through the real ingest handler, against real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from coda_memory.text import content_hash


def test_ingest_stores_sanitised_content_with_hash_tags_and_importance(api, user_id, admin_conn):
    r = api.ingest(user_id=user_id, content="  I love hiking\u0000 in the Alps #Outdoors \r\n", tags=["trip"])
    assert r.status == 201 and r.body["status"] == "created"
    got = api.call("GET", f"/memory/{r.body['memory_id']}", query={"user_id": user_id})
    assert got.status == 200
    memory = got.body
    assert memory["content"] == "I love hiking in the Alps #Outdoors"
    assert memory["content_hash"] == content_hash("I love hiking in the Alps #Outdoors")
    assert memory["tags"][:2] == ["trip", "outdoors"] and "preference" in memory["tags"]
    assert 0 < memory["importance"] <= 1
    row = admin_conn.execute(
        "SELECT vector_dims(embedding), round((embedding <#> embedding)::numeric, 3) FROM memories WHERE id = %s",
        (r.body["memory_id"],),
    ).fetchone()
    assert row[0] == 384 and float(row[1]) == pytest.approx(-1.0, abs=0.01)  # unit vector


def test_nfc_normalisation_makes_composed_and_decomposed_text_duplicates(api, user_id):
    first = api.ingest(user_id=user_id, content="Caf\u00e9 au lait")
    second = api.ingest(user_id=user_id, content="Cafe\u0301 au lait")
    assert first.status == 201 and second.status == 200
    assert second.body == {"status": "duplicate", "memory_id": first.body["memory_id"]}


def test_caller_importance_wins_and_created_at_is_kept(api, user_id):
    r = api.ingest(user_id=user_id, content="Quarterly report is due", importance=0.123,
                   created_at="2021-03-04T05:06:07Z", context_id="ctx-1", source_id="msg:42",
                   metadata={"channel": "slack", "nested": {"a": [1, 2]}})
    memory = api.call("GET", f"/memory/{r.body['memory_id']}", query={"user_id": user_id}).body
    assert memory["importance"] == pytest.approx(0.123, abs=1e-6)
    assert memory["created_at"].startswith("2021-03-04T05:06:07")
    assert memory["context_id"] == "ctx-1" and memory["source_id"] == "msg:42"
    assert memory["metadata"] == {"channel": "slack", "nested": {"a": [1, 2]}}


def test_same_content_for_another_user_is_not_a_duplicate(api, user_id):
    a = api.ingest(user_id=user_id, content="shared sentence")
    b = api.ingest(user_id=user_id + "-other", content="shared sentence")
    assert a.status == b.status == 201 and a.body["memory_id"] != b.body["memory_id"]


def test_concurrent_identical_ingests_store_one_row(api, user_id, admin_conn):
    barrier = threading.Barrier(8)

    def go(_: int):
        barrier.wait()
        return api.ingest(user_id=user_id, content="concurrent duplicate content")

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(go, range(8)))
    assert sorted(r.status for r in responses) == [200] * 7 + [201]
    assert len({r.body["memory_id"] for r in responses}) == 1
    count = admin_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user_id,)).fetchone()[0]
    assert count == 1
    quota = admin_conn.execute("SELECT memory_count FROM user_quotas WHERE user_id = %s", (user_id,)).fetchone()
    assert quota == (1,)


def test_batch_results_in_order_with_rejections_and_duplicates(api, user_id, admin_conn):
    items = [
        {"content": "first fact", "content_type": "fact", "source_type": "t", "user_id": user_id},
        {"content": "", "content_type": "fact", "source_type": "t", "user_id": user_id},
        {"content": "first fact", "content_type": "fact", "source_type": "t", "user_id": user_id},
        "not an object",
        {"content": "second fact", "content_type": "nonsense", "source_type": "t", "user_id": user_id},
        {"content": "third fact", "content_type": "event", "source_type": "t", "user_id": user_id},
    ]
    r = api.call("POST", "/ingest/batch", body={"items": items})
    assert r.status == 200
    statuses = [x["status"] for x in r.body["results"]]
    assert statuses == ["created", "rejected", "duplicate", "rejected", "rejected", "created"]
    assert r.body["results"][2]["memory_id"] == r.body["results"][0]["memory_id"]
    assert "content" in r.body["results"][1]["error"]["message"]
    assert "content_type" in r.body["results"][4]["error"]["message"]
    count = admin_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user_id,)).fetchone()[0]
    assert count == 2


def test_batch_of_several_users_is_one_transaction_with_per_user_bookkeeping(api, user_id, admin_conn):
    other = user_id + "-other"
    items = [
        {"content": f"note {i} for {u}", "content_type": "fact", "source_type": "t", "user_id": u}
        for i in range(3) for u in (other, user_id)
    ]
    r = api.call("POST", "/ingest/batch", body={"items": items})
    assert [x["status"] for x in r.body["results"]] == ["created"] * 6
    rows = admin_conn.execute(
        "SELECT user_id, content, xmin::text FROM memories WHERE user_id IN (%s, %s)", (user_id, other)
    ).fetchall()
    assert sorted((u, c) for u, c, _ in rows) == sorted((i["user_id"], i["content"]) for i in items)
    assert len({xid for _, _, xid in rows}) == 1  # committed together
    quotas = dict(admin_conn.execute(
        "SELECT user_id, memory_count FROM user_quotas WHERE user_id IN (%s, %s)", (user_id, other)
    ).fetchall())
    assert quotas == {user_id: 3, other: 3}
    audited = dict(admin_conn.execute(
        """SELECT user_id, count(*) FROM memory_audit_log
           WHERE user_id IN (%s, %s) AND action = 'ingest' GROUP BY user_id""", (user_id, other)
    ).fetchall())
    assert audited == {user_id: 3, other: 3}


def test_concurrent_batches_over_the_same_users_do_not_deadlock(api, user_id, admin_conn):
    """Each batch locks its users' quota rows in one transaction; the order is fixed (sorted),
    so batches naming the same users in opposite orders never wait on each other in a cycle."""
    a, b = user_id + "-a", user_id + "-b"

    def batch(n: int) -> int:
        users = (a, b) if n % 2 else (b, a)
        items = [{"content": f"batch {n} item {i} of {u}", "content_type": "fact", "source_type": "t",
                  "user_id": u} for i in range(20) for u in users]
        r = api.call("POST", "/ingest/batch", body={"items": items})
        assert [x["status"] for x in r.body["results"]] == ["created"] * 40, r.body
        return r.status

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(batch, range(16))) == [200] * 16
    counts = dict(admin_conn.execute(
        "SELECT user_id, memory_count FROM user_quotas WHERE user_id IN (%s, %s)", (a, b)
    ).fetchall())
    assert counts == {a: 320, b: 320}


def test_batch_size_limit(api, user_id):
    item = {"content": "x", "content_type": "fact", "source_type": "t", "user_id": user_id}
    r = api.call("POST", "/ingest/batch", body={"items": [item] * 101})
    assert r.status == 422 and "100" in r.body["error"]["message"]
    assert api.call("POST", "/ingest/batch", body={"items": []}).status == 422


def test_batch_embedding_matches_single_ingest(api, user_id, admin_conn):
    api.ingest(user_id=user_id, content="The deployment runs on Fridays")
    api.call("POST", "/ingest/batch", body={"items": [
        {"content": "The deployment runs on Fridays!", "content_type": "fact", "source_type": "t", "user_id": user_id},
        {"content": "Something much longer " * 20, "content_type": "fact", "source_type": "t", "user_id": user_id},
    ]})
    solo = api.ingest(user_id=user_id + "-b", content="The deployment runs on Fridays!")
    rows = admin_conn.execute(
        """SELECT a.embedding <=> b.embedding FROM memories a, memories b
           WHERE a.user_id = %s AND a.content = 'The deployment runs on Fridays!'
             AND b.id = %s""",
        (user_id, solo.body["memory_id"]),
    ).fetchone()
    assert rows[0] < 1e-4  # same text, same vector whether alone or in a batch


def test_get_unknown_and_malformed_ids(api, user_id):
    assert api.call("GET", f"/memory/{uuid.uuid4()}", query={"user_id": user_id}).status == 404
    bad = api.call("GET", "/memory/not-a-uuid", query={"user_id": user_id})
    assert bad.status == 422 and bad.error_code == "validation_error"
    missing_user = api.call("GET", f"/memory/{uuid.uuid4()}")
    assert missing_user.status == 422 and "user_id" in missing_user.body["error"]["message"]


def test_soft_delete_hides_and_allows_reingest_hard_delete_erases(api, user_id, admin_conn):
    mid = api.ingest(user_id=user_id, content="ephemeral note").body["memory_id"]
    assert api.call("DELETE", f"/memory/{mid}", query={"user_id": user_id}).body["status"] == "deleted"
    assert api.call("GET", f"/memory/{mid}", query={"user_id": user_id}).status == 404
    assert api.call("DELETE", f"/memory/{mid}", query={"user_id": user_id}).status == 404
    assert admin_conn.execute("SELECT deleted FROM memories WHERE id = %s", (mid,)).fetchone() == (True,)
    # Same content again after a soft delete is a new memory, not a duplicate of a deleted one.
    again = api.ingest(user_id=user_id, content="ephemeral note")
    assert again.status == 201 and again.body["memory_id"] != mid
    hard = api.call("DELETE", f"/memory/{mid}", query={"user_id": user_id, "hard": "true"})
    assert hard.status == 200 and hard.body["status"] == "erased"
    assert admin_conn.execute("SELECT count(*) FROM memories WHERE id = %s", (mid,)).fetchone() == (0,)
    quota = admin_conn.execute("SELECT memory_count FROM user_quotas WHERE user_id = %s", (user_id,)).fetchone()
    assert quota == (1,)


def test_erase_user_removes_everything_of_that_user_only(api, user_id, admin_conn):
    other = user_id + "-keep"
    for i in range(3):
        api.ingest(user_id=user_id, content=f"forget me {i}")
    kept = api.ingest(user_id=other, content="keep me").body["memory_id"]
    r = api.call("DELETE", f"/users/{user_id}/memories")
    assert r.status == 200 and r.body["erased"] == 3
    assert admin_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user_id,)).fetchone() == (0,)
    assert api.call("GET", f"/memory/{kept}", query={"user_id": other}).status == 200
    actions = [r[0] for r in admin_conn.execute(
        "SELECT action FROM memory_audit_log WHERE user_id = %s ORDER BY id", (user_id,))]
    assert actions.count("ingest") == 3 and actions[-1] == "erase_user"


def test_audit_log_records_writes_without_content_or_key(api, user_id, admin_conn):
    secret_content = "my bank PIN is 4321"
    mid = api.ingest(user_id=user_id, content=secret_content).body["memory_id"]
    api.call("DELETE", f"/memory/{mid}", query={"user_id": user_id})
    rows = admin_conn.execute(
        "SELECT actor, action, resource, ip, result, details::text FROM memory_audit_log WHERE user_id = %s ORDER BY id",
        (user_id,),
    ).fetchall()
    assert [(r[1], r[2], r[4]) for r in rows] == [("ingest", mid, "created"), ("delete", mid, "ok")]
    assert all(r[3] == "203.0.113.7" and r[0].startswith("service:") for r in rows)
    flat = " ".join(str(c) for r in rows for c in r)
    assert "4321" not in flat and "test-service-key" not in flat


def test_health_reports_model_and_database(api):
    r = api.call("GET", "/health")
    assert r.status == 200
    assert r.body["status"] == "ok"
    assert r.body["model"]["dimension"] == 384
    assert "int8" in r.body["model"]["quantization"]
    assert r.body["database"]["pgvector"] and r.body["database"]["schema_version"] >= 1
    retrieve = api.handlers["retrieve"]
    from tests.apigw import invoke

    assert invoke(retrieve, "GET", "/health").status == 200


def test_direct_invoke_ingest_events_is_idempotent_by_event_id(api, user_id, admin_conn):
    from functions.ingest.app import handler
    from tests.apigw import LambdaContext

    payload = {"kind": "ingest_events", "events": [
        {"event_id": "1700000000000-0", "data": {"event_type": "conversation", "content": "event one", "user_id": user_id}},
        {"event_id": "1700000000000-1", "data": {"event_type": "preference", "content": "I prefer tea",
                                                 "user_id": user_id, "metadata": {"k": "v"}}},
        {"event_id": "1700000000000-2", "data": {"event_type": "conversation", "user_id": user_id}},
        {"event_id": None, "data": "garbage"},
    ]}
    first = handler(payload, LambdaContext())["results"]
    assert [r["status"] for r in first] == ["created", "created", "rejected", "rejected"]
    again = handler(payload, LambdaContext())["results"]
    assert [r["status"] for r in again[:2]] == ["duplicate", "duplicate"]
    assert again[0]["memory_id"] == first[0]["memory_id"]
    row = admin_conn.execute(
        "SELECT content_type, source_type, metadata FROM memories WHERE id = %s", (first[1]["memory_id"],)
    ).fetchone()
    assert row == ("preference", "event", {"k": "v", "event_type": "preference"})


def test_batch_blocked_by_a_lock_answers_503_and_stores_nothing(api, user_id, admin_conn, postgres, settings_env):
    """The database running out of time mid-batch (here: another transaction holds the second
    user's quota row past the statement timeout) is a 503 with Retry-After, and since a batch is
    one transaction, the first user's items are not stored either; the retry then stores all."""
    settings_env(MEMORY_DB_STATEMENT_TIMEOUT_MS="300")
    first, second = user_id + "-1", user_id + "-2"  # sorted: first is locked first
    assert api.ingest(user_id=second, content="make the quota row exist").status == 201
    items = [{"content": f"item {i} of {u}", "content_type": "fact", "source_type": "t", "user_id": u}
             for i in range(3) for u in (first, second)]
    with psycopg.connect(postgres.admin_url) as holder:
        holder.execute("SELECT 1 FROM user_quotas WHERE user_id = %s FOR UPDATE", (second,))
        r = api.call("POST", "/ingest/batch", body={"items": items})
        assert r.status == 503 and r.error_code == "service_unavailable" and "retry-after" in r.headers
        holder.rollback()
    stored = admin_conn.execute(
        "SELECT count(*) FROM memories WHERE user_id IN (%s, %s) AND content LIKE 'item %%'", (first, second)
    ).fetchone()[0]
    assert stored == 0
    r = api.call("POST", "/ingest/batch", body={"items": items})
    assert [x["status"] for x in r.body["results"]] == ["created"] * 6


def test_every_answer_showing_a_memory_has_exactly_the_contracts_fields(api, user_id):
    """The reads fetch the fields the contract names (contract.Memory, HistoryEntry,
    SearchResult), the one list of them: every answer has each of them, and nothing else."""
    from coda_memory.contract import HistoryEntry, Memory, SearchResult

    mid = api.ingest(user_id=user_id, content="The contract names every field of a memory").body["memory_id"]
    shown = [
        api.call("GET", f"/memory/{mid}", query={"user_id": user_id}).body,
        api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"importance": 0.9}).body,
        api.call("GET", "/memories", query={"user_id": user_id}).body["memories"][0],
    ]
    for memory in shown:
        assert list(memory) == list(Memory.model_fields)
    history = api.call("GET", f"/memory/{mid}/history", query={"user_id": user_id}).body["history"]
    assert [list(entry) for entry in history] == [list(HistoryEntry.model_fields)] * 2
    [result] = api.call("POST", "/search", body={"query": "contract field", "user_id": user_id}).body["results"]
    assert list(result) == [name for name, field in SearchResult.model_fields.items() if field.is_required()]
