"""GET /memories, PATCH /memory/{id} and GET /memory/{id}/history through the real ingest
handler, against real PostgreSQL."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda_memory.models import CURSOR_PATTERN
from coda_memory.text import content_hash


def _ids(page) -> list[str]:
    return [m["id"] for m in page.body["memories"]]


def _store(api, user_id, n, **extra):
    ids = []
    for i in range(n):
        r = api.ingest(user_id=user_id, content=f"memory number {i} about topic {i}",
                       created_at=f"2024-01-{i + 1:02d}T00:00:00Z", **extra)
        assert r.status == 201, r.body
        ids.append(r.body["memory_id"])
    return ids


# --- GET /memories ------------------------------------------------------------------------------


def test_list_pages_newest_first_with_keyset_cursor(api, user_id):
    ids = _store(api, user_id, 7)
    seen, cursor, pages = [], None, 0
    while True:
        query = {"user_id": user_id, "limit": "3"}
        if cursor:
            query["cursor"] = cursor
        page = api.call("GET", "/memories", query=query)
        assert page.status == 200, page.body
        pages += 1
        seen += _ids(page)
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(ids))
    memory = api.call("GET", "/memories", query={"user_id": user_id, "limit": "1"}).body["memories"][0]
    assert memory == api.call("GET", f"/memory/{ids[-1]}", query={"user_id": user_id}).body
    assert "embedding" not in memory and memory["version"] == 1


@given(cursor=st.from_regex(CURSOR_PATTERN, fullmatch=True))
@settings(max_examples=40, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_cursor_of_the_documented_form_is_a_position(api, cursor):
    """Any text of the document's cursor pattern is a keyset position: 200 from the list and the
    export (a client or fuzzer generating cursors from the document is never refused)."""
    r = api.call("GET", "/memories", query={"user_id": "cursor-probe", "cursor": cursor})
    assert r.status == 200 and r.body == {"memories": [], "next_cursor": None}, (cursor, r.body)
    r = api.call("GET", "/users/cursor-probe/export", query={"cursor": cursor})
    assert r.status == 200 and r.headers["x-memory-count"] == "0", (cursor, r.body)


def test_list_cursor_is_the_last_memorys_position_and_old_cursors_still_work(api, user_id):
    ids = _store(api, user_id, 3)
    first = api.call("GET", "/memories", query={"user_id": user_id, "limit": "1"}).body
    assert first["next_cursor"] == f"{1704240000 * 10**6}_{ids[2]}"  # 2024-01-03T00:00:00Z, in microseconds
    legacy = base64.urlsafe_b64encode(f"2024-01-03T00:00:00+00:00|{ids[2]}".encode()).decode().rstrip("=")
    r = api.call("GET", "/memories", query={"user_id": user_id, "cursor": legacy})
    assert _ids(r) == [ids[1], ids[0]]


def test_list_is_stable_while_new_memories_arrive(api, user_id):
    ids = _store(api, user_id, 4)
    first = api.call("GET", "/memories", query={"user_id": user_id, "limit": "2"})
    api.ingest(user_id=user_id, content="arrived after the first page")  # created now: newest
    second = api.call("GET", "/memories", query={"user_id": user_id, "limit": "2",
                                                  "cursor": first.body["next_cursor"]})
    assert _ids(first) + _ids(second) == list(reversed(ids))
    assert second.body["next_cursor"] is None


def test_list_filters(api, user_id):
    api.ingest(user_id=user_id, content="a fact in ctx", context_id="c1", tags=["blue"],
               created_at="2024-02-01T00:00:00Z")
    api.ingest(user_id=user_id, content="an event elsewhere", content_type="event",
               created_at="2024-03-01T00:00:00Z")
    archived = api.ingest(user_id=user_id, content="old archived thing", created_at="2024-01-01T00:00:00Z")
    from coda_memory import runtime

    with runtime.database().user_tx(user_id) as cur:
        cur.execute("UPDATE memories SET archived = true WHERE id = %s", (archived.body["memory_id"],))

    def contents(**q):
        r = api.call("GET", "/memories", query={"user_id": user_id, **q})
        assert r.status == 200, r.body
        return [m["content"] for m in r.body["memories"]]

    assert contents() == ["an event elsewhere", "a fact in ctx"]
    assert contents(include_archived="true") == ["an event elsewhere", "a fact in ctx", "old archived thing"]
    assert contents(content_type="event") == ["an event elsewhere"]
    assert contents(tag="blue") == ["a fact in ctx"]
    assert contents(context_id="c1") == ["a fact in ctx"]
    assert contents(created_after="2024-02-15T00:00:00Z") == ["an event elsewhere"]
    assert contents(created_before="2024-02-15T00:00:00+00:00") == ["a fact in ctx"]


@pytest.mark.parametrize("query,code", [
    ({}, "validation_error"),
    ({"limit": "0"}, "validation_error"),
    ({"limit": "101"}, "validation_error"),
    ({"limit": "ten"}, "validation_error"),
    ({"cursor": "not-a-cursor"}, "bad_request"),
    ({"cursor": "x" * 500}, "validation_error"),
    ({"content_type": "nonsense"}, "validation_error"),
    ({"created_after": "yesterday"}, "validation_error"),
    ({"include_archived": "maybe"}, "validation_error"),
    ({"context_id": "bad id with spaces"}, "validation_error"),
    ({"tag": "t" * 200}, "validation_error"),
    ({"created_after": "2024-02-01T00:00:00Z", "created_before": "2024-01-01T00:00:00Z"}, "validation_error"),
])
def test_list_rejects_bad_queries(api, user_id, query, code):
    if query:
        query = {"user_id": user_id, **query}
    r = api.call("GET", "/memories", query=query)
    assert 400 <= r.status < 500 and r.error_code == code, r.body


def test_list_shows_only_the_users_own_memories(api, user_id):
    _store(api, user_id + "-other", 2)
    r = api.call("GET", "/memories", query={"user_id": user_id})
    assert r.status == 200 and r.body == {"memories": [], "next_cursor": None}


# --- PATCH /memory/{id} -------------------------------------------------------------------------


def test_patch_changes_fields_bumps_version_and_records_history(api, user_id):
    mid = api.ingest(user_id=user_id, content="The user lives in Berlin", importance=0.4).body["memory_id"]
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id},
                 body={"importance": 0.9, "tags": ["home"], "metadata": {"src": "fix"}, "context_id": "c9"})
    assert r.status == 200, r.body
    assert r.body["version"] == 2 and r.body["importance"] == pytest.approx(0.9)
    assert r.body["tags"] == ["home"] and r.body["metadata"] == {"src": "fix"} and r.body["context_id"] == "c9"
    assert r.body["updated_at"] is not None
    assert api.call("GET", f"/memory/{mid}", query={"user_id": user_id}).body == r.body
    r2 = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"context_id": None})
    assert r2.body["context_id"] is None and r2.body["version"] == 3

    history = api.call("GET", f"/memory/{mid}/history", query={"user_id": user_id})
    assert history.status == 200
    entries = history.body["history"]
    assert [(e["version"], e["action"]) for e in entries] == [(1, "created"), (2, "updated"), (3, "updated")]
    assert entries[1]["changes"]["importance"] == {"old": pytest.approx(0.4), "new": pytest.approx(0.9)}
    assert entries[1]["changes"]["context_id"] == {"old": None, "new": "c9"}
    assert entries[2]["changes"] == {"context_id": {"old": "c9", "new": None}}
    assert all(e["actor"] and e["at"] for e in entries)


def test_patch_content_reembeds_and_search_finds_the_new_text(api, user_id, admin_conn):
    mid = api.ingest(user_id=user_id, content="The user drives a red bicycle").body["memory_id"]
    old_vec = admin_conn.execute("SELECT embedding::text FROM memories WHERE id = %s", (mid,)).fetchone()[0]
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id},
                 body={"content": "The user plays the cello in an orchestra"})
    assert r.status == 200 and r.body["content_hash"] == content_hash("The user plays the cello in an orchestra")
    row = admin_conn.execute(
        "SELECT embedding::text, search_vector::text FROM memories WHERE id = %s", (mid,)).fetchone()
    assert row[0] != old_vec and "cello" in row[1] and "bicycl" not in row[1]
    found = api.search(user_id=user_id, query="cello orchestra", top_k=1).body["results"]
    assert found[0]["id"] == mid and found[0]["similarity"] > 0.5
    changes = api.call("GET", f"/memory/{mid}/history", query={"user_id": user_id}).body["history"][-1]["changes"]
    assert changes == {"content": {"old": "The user drives a red bicycle",
                                   "new": "The user plays the cello in an orchestra"}}
    # the old content may be stored again: it is no longer a duplicate
    assert api.ingest(user_id=user_id, content="The user drives a red bicycle").status == 201


def test_patch_to_content_of_another_memory_is_409_naming_it(api, user_id):
    a = api.ingest(user_id=user_id, content="first distinct memory").body["memory_id"]
    b = api.ingest(user_id=user_id, content="second distinct memory").body["memory_id"]
    r = api.call("PATCH", f"/memory/{b}", query={"user_id": user_id}, body={"content": "first distinct memory"})
    assert r.status == 409 and r.error_code == "conflict" and r.body["error"]["memory_id"] == a
    assert api.call("GET", f"/memory/{b}", query={"user_id": user_id}).body["version"] == 1


def test_patch_with_nothing_new_keeps_the_version(api, user_id):
    mid = api.ingest(user_id=user_id, content="unchanged memory", importance=0.5).body["memory_id"]
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id},
                 body={"content": "unchanged memory", "importance": 0.5})
    assert r.status == 200 and r.body["version"] == 1


def test_patch_of_other_users_or_missing_memory_is_404(api, user_id):
    mid = api.ingest(user_id=user_id, content="private memory").body["memory_id"]
    for uid, target in ((user_id + "-x", mid), (user_id, str(uuid.uuid4()))):
        r = api.call("PATCH", f"/memory/{target}", query={"user_id": uid}, body={"importance": 1})
        assert r.status == 404 and r.error_code == "not_found"
        assert api.call("GET", f"/memory/{target}/history", query={"user_id": uid}).status == 404
    assert api.call("GET", f"/memory/{mid}", query={"user_id": user_id}).body["importance"] != 1


@pytest.mark.parametrize("body", [
    {},
    {"importance": 2},
    {"importance": None},
    {"content": ""},
    {"content": "x" * 40_000},
    {"content_type": "nonsense"},
    {"tags": ["t"] * 100},
    {"metadata": "not an object"},
    {"context_id": "has spaces"},
    {"expires_at": "2001-01-01T00:00:00Z"},
    {"user_id": "someone-else"},
    {"embedding": [0.1]},
])
def test_patch_rejects_bad_bodies(api, user_id, body):
    mid = api.ingest(user_id=user_id, content="patch target").body["memory_id"]
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body=body)
    assert r.status == 422 and r.error_code == "validation_error", r.body
    assert api.call("GET", f"/memory/{mid}", query={"user_id": user_id}).body["version"] == 1


def test_patch_rejects_non_json_and_bad_ids(api, user_id):
    mid = api.ingest(user_id=user_id, content="patch target two").body["memory_id"]
    assert api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, raw_body="{nope").status == 400
    assert api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body=[1]).status == 400
    assert api.call("PATCH", "/memory/not-a-uuid", query={"user_id": user_id}, body={"importance": 1}).status == 422
    assert api.call("PATCH", f"/memory/{mid}", body={"importance": 1}).status == 422


def test_patch_is_audited(api, user_id, admin_conn):
    mid = api.ingest(user_id=user_id, content="audited patch").body["memory_id"]
    api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"importance": 0.7})
    row = admin_conn.execute(
        "SELECT result, details FROM memory_audit_log WHERE user_id = %s AND action = 'update'", (user_id,)
    ).fetchone()
    assert row == ("ok", {"fields": ["importance"]})


# --- history ------------------------------------------------------------------------------------


def test_history_survives_soft_delete_and_goes_with_hard_delete_and_erasure(api, user_id, admin_conn):
    a = api.ingest(user_id=user_id, content="soon soft deleted").body["memory_id"]
    b = api.ingest(user_id=user_id, content="soon hard deleted").body["memory_id"]
    assert api.call("DELETE", f"/memory/{a}", query={"user_id": user_id}).status == 200
    h = api.call("GET", f"/memory/{a}/history", query={"user_id": user_id}).body["history"]
    assert [(e["version"], e["action"]) for e in h] == [(1, "created"), (2, "deleted")]
    assert api.call("DELETE", f"/memory/{b}", query={"user_id": user_id, "hard": "true"}).status == 200
    assert api.call("GET", f"/memory/{b}/history", query={"user_id": user_id}).status == 404
    assert api.call("DELETE", f"/users/{user_id}/memories").status == 200
    left = admin_conn.execute("SELECT count(*) FROM memory_history WHERE user_id = %s", (user_id,)).fetchone()
    assert left == (0,)


def test_every_ingest_path_writes_a_created_entry(api, user_id, admin_conn):
    from functions.ingest.app import ingest_events

    api.ingest(user_id=user_id, content="single ingest")
    api.call("POST", "/ingest/batch", body={"items": [
        {"content": "batch item", "content_type": "fact", "source_type": "t", "user_id": user_id}]})
    ingest_events({"events": [{"event_id": "e-1", "data": {"content": "event item", "user_id": user_id}}]})
    rows = admin_conn.execute(
        """SELECT m.content, h.version, h.action FROM memory_history h
           JOIN memories m ON m.user_id = h.user_id AND m.id = h.memory_id
           WHERE h.user_id = %s ORDER BY m.content""", (user_id,)).fetchall()
    assert rows == [("batch item", 1, "created"), ("event item", 1, "created"), ("single ingest", 1, "created")]


def test_history_is_invisible_to_the_service_role_for_another_user(api, user_id, app_conn):
    api.ingest(user_id=user_id, content="history rls")
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user_id + "-x",))
        assert app_conn.execute("SELECT count(*) FROM memory_history WHERE user_id = %s",
                                (user_id,)).fetchone() == (0,)
        with pytest.raises(Exception, match="row-level security"):
            app_conn.execute(
                "INSERT INTO memory_history (user_id, memory_id, version, action, actor) "
                "VALUES (%s, gen_random_uuid(), 1, 'created', 'x')", (user_id,))


def test_patch_archives_and_restores(api, user_id):
    mid = api.ingest(user_id=user_id, content="a memory to shelve").body["memory_id"]
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"archived": True})
    assert r.status == 200 and r.body["archived"] is True and r.body["archived_at"] is not None
    assert api.call("GET", "/memories", query={"user_id": user_id}).body["memories"] == []
    assert len(api.call("GET", "/memories", query={"user_id": user_id, "include_archived": "true"})
               .body["memories"]) == 1
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"archived": False})
    assert r.body["archived"] is False and r.body["archived_at"] is None
    actions = [e["action"] for e in api.call("GET", f"/memory/{mid}/history", query={"user_id": user_id})
               .body["history"]]
    assert actions == ["created", "updated", "restored"]
    assert api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"archived": None}).status == 422
