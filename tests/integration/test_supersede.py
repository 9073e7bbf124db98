"""Superseding through the real handlers and PostgreSQL: ingest, batch, PATCH, every default read,
the include_superseded flags, history, the search structures, bad input and concurrency."""

from __future__ import annotations

import threading
import uuid

import pytest


def _get(api, user_id, mid):
    return api.call("GET", f"/memory/{mid}", query={"user_id": user_id})


def _history(api, user_id, mid):
    return api.call("GET", f"/memory/{mid}/history", query={"user_id": user_id}).body["history"]


def _search_ids(api, user_id, query="where does the user live", **extra):
    r = api.search(query=query, user_id=user_id, top_k=10, **extra)
    assert r.status == 200, r.body
    return [x["id"] for x in r.body["results"]]


def _list_ids(api, user_id, **query):
    r = api.call("GET", "/memories", query={"user_id": user_id, **query})
    assert r.status == 200, r.body
    return [m["id"] for m in r.body["memories"]]


def test_supersedes_hides_the_old_memory_from_every_default_read(api, user_id, admin_conn):
    old = api.ingest(user_id=user_id, content="I live in Lisbon").body["memory_id"]
    new = api.ingest(user_id=user_id, content="I moved to Porto", supersedes=[old])
    assert new.status == 201, new.body
    new_id = new.body["memory_id"]

    memory = _get(api, user_id, old).body
    assert memory["superseded_by"] == new_id and memory["superseded_at"] is not None
    assert _get(api, user_id, new_id).body["superseded_by"] is None
    assert _history(api, user_id, old)[-1]["action"] == "superseded"
    assert _history(api, user_id, old)[-1]["changes"] == {"superseded_by": {"old": None, "new": new_id}}

    assert _search_ids(api, user_id) == [new_id]
    ctx = api.call("POST", "/context", body={"query": "where does the user live", "user_id": user_id})
    assert ctx.body["memory_ids"] == [new_id] and "Lisbon" not in ctx.body["context"]
    assert _list_ids(api, user_id) == [new_id]
    export = api.call("GET", f"/users/{user_id}/export")
    assert [line for line in export.body.splitlines() if old in line and '"id":"' + old in line] == []

    # the flags bring it back
    assert set(_search_ids(api, user_id, include_superseded=True)) == {old, new_id}
    ctx = api.call("POST", "/context", body={"query": "where does the user live", "user_id": user_id,
                                             "include_superseded": True})
    assert set(ctx.body["memory_ids"]) == {old, new_id}
    assert set(_list_ids(api, user_id, include_superseded="true")) == {old, new_id}
    export = api.call("GET", f"/users/{user_id}/export", query={"include_superseded": "true"})
    assert export.body.count("\n") == 2

    # it left the search structures (costs search nothing)
    vectors = admin_conn.execute("SELECT count(*) FROM memory_vectors WHERE user_id = %s AND memory_id = %s",
                                 (user_id, old)).fetchone()[0]
    postings = admin_conn.execute("SELECT count(*) FROM memory_postings WHERE user_id = %s AND memory_id = %s",
                                  (user_id, old)).fetchone()[0]
    docs = admin_conn.execute("SELECT docs FROM memory_lexicon_totals WHERE user_id = %s", (user_id,)).fetchone()[0]
    assert (vectors, postings, docs) == (0, 0, 1)


def test_search_result_says_which_memory_is_superseded(api, user_id):
    old = api.ingest(user_id=user_id, content="My phone number ends in 42").body["memory_id"]
    new = api.ingest(user_id=user_id, content="My new phone number ends in 77", supersedes=[old]).body["memory_id"]
    results = api.search(query="phone number", user_id=user_id, include_superseded=True).body["results"]
    by_id = {r["id"]: r for r in results}
    assert by_id[old]["superseded_by"] == new and by_id[new]["superseded_by"] is None
    assert by_id[old]["archived"] is False


def test_patch_superseded_by_null_reinstates(api, user_id, admin_conn):
    old = api.ingest(user_id=user_id, content="The office is on floor 3").body["memory_id"]
    new = api.ingest(user_id=user_id, content="The office moved to floor 5", supersedes=[old]).body["memory_id"]
    r = api.call("PATCH", f"/memory/{old}", query={"user_id": user_id}, body={"superseded_by": None})
    assert r.status == 200 and r.body["superseded_by"] is None and r.body["superseded_at"] is None
    last = _history(api, user_id, old)[-1]
    assert last["action"] == "reinstated" and last["changes"] == {"superseded_by": {"old": new, "new": None}}
    assert set(_search_ids(api, user_id, query="office floor")) == {old, new}
    assert admin_conn.execute("SELECT count(*) FROM memory_vectors WHERE memory_id = %s", (old,)).fetchone()[0] == 1


def test_patch_superseded_by_an_id_supersedes_and_refuses_a_cycle(api, user_id):
    a = api.ingest(user_id=user_id, content="Favourite colour is blue").body["memory_id"]
    b = api.ingest(user_id=user_id, content="Favourite colour is green").body["memory_id"]
    r = api.call("PATCH", f"/memory/{a}", query={"user_id": user_id}, body={"superseded_by": b})
    assert r.status == 200 and r.body["superseded_by"] == b
    # b superseded by a would close a cycle a -> b -> a
    r = api.call("PATCH", f"/memory/{b}", query={"user_id": user_id}, body={"superseded_by": a})
    assert r.status == 409 and "cycle" in r.body["error"]["message"]
    assert _get(api, user_id, b).body["superseded_by"] is None
    r = api.call("PATCH", f"/memory/{a}", query={"user_id": user_id}, body={"superseded_by": a})
    assert r.status == 422


def test_bad_supersedes_touch_nothing(api, user_id, admin_conn):
    mine = api.ingest(user_id=user_id, content="Dog is called Rex").body["memory_id"]
    theirs = api.ingest(user_id=user_id + "-x", content="Cat is called Tom").body["memory_id"]
    missing = str(uuid.uuid4())

    def count():
        return admin_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user_id,)).fetchone()[0]

    before = count()
    for target in (missing, theirs):
        r = api.ingest(user_id=user_id, content=f"Dog is called Max {target}", supersedes=[target])
        assert r.status == 404 and target in r.body["error"]["message"], r.body
    r = api.ingest(user_id=user_id, content="too many", supersedes=[str(uuid.uuid4()) for _ in range(11)])
    assert r.status == 422 and "supersedes" in r.body["error"]["message"]
    r = api.ingest(user_id=user_id, content="not a uuid", supersedes=["nope"])
    assert r.status == 422
    # the same content as the memory it names: the memory would supersede itself
    r = api.ingest(user_id=user_id, content="Dog is called Rex", supersedes=[mine])
    assert r.status == 422 and "itself" in r.body["error"]["message"]
    assert count() == before
    assert _get(api, user_id, mine).body["superseded_by"] is None
    assert _get(api, user_id + "-x", theirs).body["superseded_by"] is None


def test_superseding_a_superseded_memory_is_a_conflict_naming_its_successor(api, user_id):
    old = api.ingest(user_id=user_id, content="Lives in Lisbon").body["memory_id"]
    porto = api.ingest(user_id=user_id, content="Lives in Porto", supersedes=[old]).body["memory_id"]
    r = api.ingest(user_id=user_id, content="Lives in Madrid", supersedes=[old])
    assert r.status == 409 and r.body["error"]["memory_id"] == porto and porto in r.body["error"]["message"]
    assert _list_ids(api, user_id) == [porto]


def test_batch_rejects_a_bad_item_alone_and_applies_the_others(api, user_id):
    a = api.ingest(user_id=user_id, content="Works at Acme").body["memory_id"]
    b = api.ingest(user_id=user_id, content="Drives a Fiat").body["memory_id"]
    r = api.call("POST", "/ingest/batch", body={"items": [
        {"content": "Works at Globex", "content_type": "fact", "source_type": "t", "user_id": user_id,
         "supersedes": [a]},
        {"content": "Works at Initech", "content_type": "fact", "source_type": "t", "user_id": user_id,
         "supersedes": [a]},  # a is taken by the item before
        {"content": "Drives a Volvo", "content_type": "fact", "source_type": "t", "user_id": user_id,
         "supersedes": [str(uuid.uuid4())]},
        {"content": "Drives a Saab", "content_type": "fact", "source_type": "t", "user_id": user_id,
         "supersedes": [b]},
    ]})
    assert r.status == 200
    statuses = [x["status"] for x in r.body["results"]]
    assert statuses == ["created", "rejected", "rejected", "created"]
    assert [x["error"]["code"] for x in r.body["results"][1:3]] == ["conflict", "not_found"]
    assert _get(api, user_id, a).body["superseded_by"] == r.body["results"][0]["memory_id"]
    assert _get(api, user_id, b).body["superseded_by"] == r.body["results"][3]["memory_id"]


def test_duplicate_content_still_records_its_supersedes(api, user_id):
    old = api.ingest(user_id=user_id, content="Uses vim").body["memory_id"]
    kept = api.ingest(user_id=user_id, content="Uses emacs").body["memory_id"]
    r = api.ingest(user_id=user_id, content="Uses emacs", supersedes=[old])
    assert r.status == 200 and r.body["memory_id"] == kept
    assert _get(api, user_id, old).body["superseded_by"] == kept


def test_concurrent_supersedes_of_one_memory_one_wins(api, user_id, admin_conn):
    old = api.ingest(user_id=user_id, content="Team lead is Ana").body["memory_id"]
    barrier = threading.Barrier(2)
    answers = {}

    def go(name):
        barrier.wait()
        answers[name] = api.ingest(user_id=user_id, content=f"Team lead is {name}", supersedes=[old])

    threads = [threading.Thread(target=go, args=(n,)) for n in ("Bea", "Carl")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status for a in answers.values())
    assert statuses == [201, 409]
    winner = next(a.body["memory_id"] for a in answers.values() if a.status == 201)
    loser = next(a for a in answers.values() if a.status == 409)
    assert loser.body["error"]["memory_id"] == winner
    assert _get(api, user_id, old).body["superseded_by"] == winner
    actions = [h["action"] for h in _history(api, user_id, old)]
    assert actions == ["created", "superseded"]
    # nothing lost: the old memory, the winner; the loser wrote nothing
    rows = admin_conn.execute("SELECT content FROM memories WHERE user_id = %s ORDER BY content",
                              (user_id,)).fetchall()
    assert [r[0] for r in rows] == sorted(["Team lead is Ana", next(
        f"Team lead is {n}" for n, a in answers.items() if a.status == 201)])


def test_hard_deleting_the_successor_gives_the_old_memory_back(api, user_id):
    old = api.ingest(user_id=user_id, content="Gym on Mondays").body["memory_id"]
    new = api.ingest(user_id=user_id, content="Gym on Tuesdays", supersedes=[old]).body["memory_id"]
    assert api.call("DELETE", f"/memory/{new}", query={"user_id": user_id, "hard": "true"}).status == 200
    assert _get(api, user_id, old).body["superseded_by"] is None
    assert _search_ids(api, user_id, query="gym") == [old]


def test_erasing_the_user_erases_supersession_and_relations(api, user_id, admin_conn):
    a = api.ingest(user_id=user_id, content="Plays chess").body["memory_id"]
    b = api.ingest(user_id=user_id, content="Plays chess online", supersedes=[a],
                   relations=[{"type": "extends", "target_id": a}]).body["memory_id"]
    assert b
    assert api.call("DELETE", f"/users/{user_id}/memories").status == 200
    left = admin_conn.execute("SELECT (SELECT count(*) FROM memory_relations WHERE user_id = %s),"
                              " (SELECT count(*) FROM memories WHERE user_id = %s)", (user_id, user_id)).fetchone()
    assert left == (0, 0)


@pytest.mark.parametrize("archived", [True, False])
def test_include_archived_ranks_archived_memories(api, user_id, archived):
    mid = api.ingest(user_id=user_id, content="The boat is moored in Sines harbour").body["memory_id"]
    api.ingest(user_id=user_id, content="Bought bread today")
    if archived:
        assert api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"archived": True}).status == 200
    plain = _search_ids(api, user_id, query="where is the boat moored")
    wide = _search_ids(api, user_id, query="where is the boat moored", include_archived=True)
    assert (mid in plain) is (not archived)
    assert wide[0] == mid
