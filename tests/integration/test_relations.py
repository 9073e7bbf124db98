"""Relations, similar memories on write, events and import through the real handlers and
PostgreSQL."""

from __future__ import annotations

import json
import uuid

from functions.ingest.app import ingest_events


def _rel(api, user_id, source, **body):
    return api.call("POST", f"/memory/{source}/relations", query={"user_id": user_id}, body=body)


def _relations(api, user_id, mid):
    r = api.call("GET", f"/memory/{mid}/relations", query={"user_id": user_id})
    assert r.status == 200, r.body
    return [(x["source_id"], x["type"], x["target_id"]) for x in r.body["relations"]]


def test_relation_routes_create_list_and_delete(api, user_id):
    a = api.ingest(user_id=user_id, content="Project Falcon launches in May").body["memory_id"]
    b = api.ingest(user_id=user_id, content="Falcon's launch needs the new API keys").body["memory_id"]
    r = _rel(api, user_id, b, type="extends", target_id=a)
    assert r.status == 201 and r.body["source_id"] == b and r.body["type"] == "extends" and r.body["target_id"] == a
    again = _rel(api, user_id, b, type="extends", target_id=a)
    assert again.status == 200 and again.body == r.body
    assert _relations(api, user_id, a) == [(b, "extends", a)]  # incoming
    assert _relations(api, user_id, b) == [(b, "extends", a)]  # outgoing
    gone = api.call("DELETE", f"/memory/{b}/relations/extends/{a}", query={"user_id": user_id})
    assert gone.status == 204
    assert _relations(api, user_id, b) == []
    assert api.call("DELETE", f"/memory/{b}/relations/extends/{a}", query={"user_id": user_id}).status == 404


def test_relations_list_supersession_as_supersedes(api, user_id):
    old = api.ingest(user_id=user_id, content="Standup at 9").body["memory_id"]
    new = api.ingest(user_id=user_id, content="Standup at 10", supersedes=[old],
                     relations=[{"type": "relates_to", "target_id": old}]).body["memory_id"]
    assert sorted(_relations(api, user_id, old)) == sorted([(new, "supersedes", old), (new, "relates_to", old)])


def test_bad_relations_touch_nothing(api, user_id, admin_conn):
    a = api.ingest(user_id=user_id, content="Likes tea").body["memory_id"]
    theirs = api.ingest(user_id=user_id + "-y", content="Likes coffee").body["memory_id"]
    missing = str(uuid.uuid4())
    for target in (missing, theirs):
        r = _rel(api, user_id, a, type="extends", target_id=target)
        assert r.status == 404 and target in r.body["error"]["message"]
        r = api.ingest(user_id=user_id, content=f"Likes green tea {target}", relations=[{"type": "extends",
                                                                                         "target_id": target}])
        assert r.status == 404 and target in r.body["error"]["message"]
    assert _rel(api, user_id, a, type="extends", target_id=a).status == 422
    r = _rel(api, user_id, a, type="contradicts", target_id=theirs)
    assert r.status == 422 and "type" in r.body["error"]["message"]
    r = api.ingest(user_id=user_id, content="Likes mint tea",
                   relations=[{"type": "extends", "target_id": str(uuid.uuid4())} for _ in range(11)])
    assert r.status == 422 and "relations" in r.body["error"]["message"]
    assert api.call("DELETE", f"/memory/{a}/relations/contradicts/{theirs}", query={"user_id": user_id}).status == 422
    # another user's memory cannot be the source either, and nothing was written anywhere
    assert _rel(api, user_id, theirs, type="extends", target_id=a).status == 404
    assert admin_conn.execute("SELECT count(*) FROM memory_relations WHERE user_id IN (%s, %s)",
                              (user_id, user_id + "-y")).fetchone()[0] == 0
    assert admin_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user_id,)).fetchone()[0] == 1


def test_relations_never_cross_users_under_row_level_security(app_conn, api, user_id):
    a = api.ingest(user_id=user_id, content="Birthday is in June").body["memory_id"]
    b = api.ingest(user_id=user_id, content="Birthday party at the lake", relations=[
        {"type": "derived_from", "target_id": a}]).body["memory_id"]
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user_id + "-other",))
        assert app_conn.execute("SELECT count(*) FROM memory_relations").fetchone()[0] == 0
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user_id,))
        assert app_conn.execute("SELECT source_id::text, target_id::text FROM memory_relations").fetchall() == [(b, a)]


def test_context_expand_relations_adds_what_the_selected_extend(api, user_id):
    base = api.ingest(user_id=user_id, content="Grandma's recipe uses saffron and lemon zest",
                      importance=0.2).body["memory_id"]
    top = api.ingest(user_id=user_id, content="The paella for Sunday follows grandma's recipe",
                     relations=[{"type": "extends", "target_id": base}]).body["memory_id"]
    body = {"query": "what is the paella for Sunday", "user_id": user_id, "top_k": 1, "min_relevance": 0}
    plain = api.call("POST", "/context", body=body).body
    assert plain["memory_ids"] == [top]
    wide = api.call("POST", "/context", body={**body, "expand_relations": True}).body
    assert wide["memory_ids"] == [top, base] and "saffron" in wide["context"]
    # the same token budget: room for the first entry only
    tight = api.call("POST", "/context", body={**body, "expand_relations": True,
                                               "max_tokens": len(plain["context"]) // 4 + 1}).body
    assert tight["memory_ids"] == [top] and tight["truncated"] is True


def test_return_similar_lists_close_live_memories_without_the_duplicate(api, user_id, settings_env):
    settings_env(MEMORY_SIMILAR_MIN="0.5")
    lisbon = api.ingest(user_id=user_id, content="I live in Lisbon").body["memory_id"]
    api.ingest(user_id=user_id, content="The printer is out of toner")
    r = api.ingest(user_id=user_id, content="I live in Porto now", return_similar=True)
    assert r.status == 201
    assert [s["memory_id"] for s in r.body["similar"]] == [lisbon]
    assert r.body["similar"][0]["content"] == "I live in Lisbon" and 0.5 <= r.body["similar"][0]["similarity"] < 1
    dup = api.ingest(user_id=user_id, content="I live in Lisbon", return_similar=True)
    assert dup.status == 200 and lisbon not in [s["memory_id"] for s in dup.body["similar"]]
    assert "similar" not in api.ingest(user_id=user_id, content="Cats sleep a lot").body
    batch = api.call("POST", "/ingest/batch", body={"items": [
        {"content": "I reside in Lisbon", "content_type": "fact", "source_type": "t", "user_id": user_id,
         "return_similar": True}]}).body["results"][0]
    assert lisbon in [s["memory_id"] for s in batch["similar"]]


def test_events_carry_supersedes_and_relations(api, user_id):
    old = api.ingest(user_id=user_id, content="Car is a red Golf").body["memory_id"]
    out = ingest_events({"events": [{"event_id": f"e-{uuid.uuid4()}", "data": {
        "event_type": "message", "content": "Car is a blue Tesla", "user_id": user_id, "supersedes": [old],
        "relations": [{"type": "relates_to", "target_id": old}]}}]})
    new = out["results"][0]["memory_id"]
    assert out["results"][0]["status"] == "created"
    assert api.call("GET", f"/memory/{old}", query={"user_id": user_id}).body["superseded_by"] == new
    bad = ingest_events({"events": [{"event_id": f"e-{uuid.uuid4()}", "data": {
        "event_type": "message", "content": "Car is green", "user_id": user_id, "supersedes": [str(uuid.uuid4())]}}]})
    assert bad["results"][0]["status"] == "rejected" and bad["results"][0]["error"]["code"] == "not_found"


def _export(api, user_id, **query):
    r = api.call("GET", f"/users/{user_id}/export", query=query)
    assert r.status == 200
    return [json.loads(line) for line in r.body.splitlines() if line.strip()]


def test_export_and_import_restore_relations_and_supersession_idempotently(api, user_id, admin_conn):
    a = api.ingest(user_id=user_id, content="Moved to Lisbon in 2019", created_at="2019-01-01T00:00:00Z"
                   ).body["memory_id"]
    b = api.ingest(user_id=user_id, content="Moved to Porto in 2024", supersedes=[a]).body["memory_id"]
    c = api.ingest(user_id=user_id, content="Porto flat has a balcony",
                   relations=[{"type": "extends", "target_id": b}]).body["memory_id"]
    lines = _export(api, user_id, include_superseded="true")
    assert [x["id"] for x in lines] == [a, b, c]
    assert lines[0]["superseded_by"] == b
    assert {(x["source_id"], x["type"], x["target_id"]) for x in lines[1]["links"]} == {
        (b, "supersedes", a), (c, "extends", b)}
    assert [x["id"] for x in _export(api, user_id)] == [b, c]  # superseded left out by default

    # erased, then imported back one line per request, newest first: every link waits for its
    # second end (ids are kept, so the user is restored as it was)
    assert api.call("DELETE", f"/users/{user_id}/memories").status == 200
    for line in reversed(lines):
        r = api.call("POST", f"/users/{user_id}/import", raw_body=(json.dumps(line) + "\n").encode())
        assert r.status == 200 and r.body["created"] == 1, r.body
    assert _export(api, user_id, include_superseded="true") == lines
    # idempotent: the same lines again change nothing
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = api.call("POST", f"/users/{user_id}/import", raw_body=body)
    assert r.body == {"created": 0, "duplicate": 3, "rejected": []}
    history = admin_conn.execute("SELECT action FROM memory_history WHERE user_id = %s AND memory_id = %s "
                                 "ORDER BY version", (user_id, a)).fetchall()
    assert [h[0] for h in history] == ["imported", "superseded"]
