"""Long memories embedded in pieces (opt-in, MEMORY_EMBEDDING_PIECES): a memory longer than the model reads (256 tokens) keeps the
embeddings of the rest of its text, and search finds it by what its end says; the pieces follow
content edits, archiving and restoring."""

from __future__ import annotations

import pytest

# ~400 tokens about a garden, then the one sentence about a passport
_OPENING = " ".join(
    f"In week {i} I watered the tomatoes, pruned the roses and turned the compost heap by the fence."
    for i in range(20)
)
_LONG = _OPENING + " Also, my passport expires in October and I must renew it at the embassy."
_QUERY = "when does my passport expire and where do I renew it?"


def _pieces(admin_conn, user_id: str, memory_id: str) -> int:
    row = admin_conn.execute("SELECT count(*) FROM memory_vectors WHERE user_id = %s AND memory_id = %s",
                             (user_id, memory_id)).fetchone()
    return int(row[0])


@pytest.fixture()
def long_memory(api, user_id, settings_env) -> str:
    settings_env(MEMORY_EMBEDDING_PIECES="8")
    memory_id = api.ingest(user_id=user_id, content=_LONG).body["memory_id"]
    for text in ("I like jazz on Sunday mornings", "The car needs new tyres before winter",
                 "Grandma's birthday is on the fifth of May"):
        api.ingest(user_id=user_id, content=text)
    return str(memory_id)


def _top(api, user_id: str) -> dict:
    r = api.search(query=_QUERY, user_id=user_id, top_k=4)
    assert r.status == 200
    return r.body["results"][0]


def test_a_long_memory_is_found_by_what_its_end_says(api, admin_conn, user_id, settings_env, long_memory):
    settings_env(MEMORY_SEARCH_MODE="vector", MEMORY_EMBEDDING_PIECES="8")
    assert _pieces(admin_conn, user_id, long_memory) > 1
    top = _top(api, user_id)
    assert top["id"] == long_memory
    # scored by the piece that holds the passport sentence, not by the garden opening
    from coda_memory import runtime

    embedder = runtime.embedder()
    opening = float(embedder.embed_one(_QUERY) @ embedder.embed_one(_LONG))
    assert top["similarity"] > opening + 0.1

def test_by_default_only_the_opening_is_stored(api, admin_conn, user_id):
    memory_id = api.ingest(user_id=user_id, content=_LONG).body["memory_id"]
    assert _pieces(admin_conn, user_id, memory_id) == 1


def test_pieces_follow_edits_archiving_and_restoring(api, admin_conn, user_id, long_memory):
    n = _pieces(admin_conn, user_id, long_memory)
    path, who = f"/memory/{long_memory}", {"user_id": user_id}
    assert api.call("PATCH", path, query=who, body={"archived": True}).status == 200
    assert _pieces(admin_conn, user_id, long_memory) == 0
    assert api.call("PATCH", path, query=who, body={"archived": False}).status == 200
    assert _pieces(admin_conn, user_id, long_memory) == n
    assert api.call("PATCH", path, query=who, body={"content": "My passport is at the embassy"}).status == 200
    assert _pieces(admin_conn, user_id, long_memory) == 1
    assert api.call("PATCH", path, query=who, body={"content": _LONG + " Really."}).status == 200
    assert _pieces(admin_conn, user_id, long_memory) == n
