"""Search and context through the real retrieve handler: filters, ranking, budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest


@pytest.fixture()
def corpus(api, user_id):
    """A small, varied memory set for one user."""
    items = [
        ("I love hiking in the Swiss Alps every summer", "preference", ["outdoors"], 0.5, "2024-06-01T10:00:00Z", "trip"),
        ("My dentist appointment is on March 3rd", "event", ["health"], 0.7, "2025-01-10T10:00:00Z", None),
        ("The project deadline for Atlas is Friday", "fact", ["work"], 0.9, "2025-02-01T10:00:00Z", "work"),
        ("I am allergic to peanuts", "fact", ["health"], 1.0, "2023-05-05T10:00:00Z", None),
        ("We talked about the weather being rainy", "conversation", [], 0.1, "2025-03-01T10:00:00Z", None),
        ("My favourite programming language is Rust", "preference", ["work"], 0.6, "2024-11-11T10:00:00Z", "work"),
    ]
    ids = {}
    for content, ctype, tags, imp, created, ctx in items:
        body = {"user_id": user_id, "content": content, "content_type": ctype, "tags": tags,
                "importance": imp, "created_at": created}
        if ctx:
            body["context_id"] = ctx
        ids[content] = api.ingest(**body).body["memory_id"]
    return ids


def _contents(response):
    return [r["content"] for r in response.body["results"]]


def test_search_finds_by_meaning_and_returns_contract_fields(api, user_id, corpus):
    r = api.search(query="what outdoor activities does the user enjoy?", user_id=user_id, top_k=3)
    assert r.status == 200
    top = r.body["results"][0]
    assert top["content"] == "I love hiking in the Swiss Alps every summer"
    assert set(top) >= {"id", "content", "content_type", "source_type", "source_id", "tags", "importance",
                        "created_at", "similarity", "relevance", "metadata"}
    assert -1 <= top["similarity"] <= 1 and top["relevance"] > 0
    assert isinstance(r.body["took_ms"], float | int)
    assert len(r.body["results"]) == 3
    relevances = [x["relevance"] for x in r.body["results"]]
    assert relevances == sorted(relevances, reverse=True)


def test_food_allergy_question_ranks_the_allergy_first(api, user_id, corpus):
    r = api.search(query="Does the user have any food allergies?", user_id=user_id, top_k=6)
    assert _contents(r)[0] == "I am allergic to peanuts"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"content_types": ["preference"]}, {"I love hiking in the Swiss Alps every summer",
                                              "My favourite programming language is Rust"}),
        ({"tags": ["health"]}, {"My dentist appointment is on March 3rd", "I am allergic to peanuts"}),
        ({"min_importance": 0.9}, {"The project deadline for Atlas is Friday", "I am allergic to peanuts"}),
        ({"context_id": "work"}, {"The project deadline for Atlas is Friday",
                                  "My favourite programming language is Rust"}),
        ({"created_after": "2025-01-01T00:00:00Z"}, {"My dentist appointment is on March 3rd",
                                                     "The project deadline for Atlas is Friday",
                                                     "We talked about the weather being rainy"}),
        ({"created_before": "2024-01-01T00:00:00Z"}, {"I am allergic to peanuts"}),
        ({"created_after": "2024-01-01T00:00:00Z", "created_before": "2024-12-31T00:00:00Z",
          "content_types": ["preference"], "tags": ["work"]}, {"My favourite programming language is Rust"}),
    ],
)
def test_each_filter_returns_exactly_the_matching_memories(api, user_id, corpus, filters, expected):
    r = api.search(query="anything at all about me", user_id=user_id, top_k=100, filters=filters)
    assert r.status == 200
    assert set(_contents(r)) == expected


def test_filters_never_shrink_results_below_available(api, user_id, corpus):
    # top_k larger than what exists: everything live comes back, nothing more.
    r = api.search(query="rain", user_id=user_id, top_k=100)
    assert len(r.body["results"]) == len(corpus)


def test_deleted_and_archived_memories_never_appear(api, user_id, corpus, admin_conn):
    hiking = corpus["I love hiking in the Swiss Alps every summer"]
    rust = corpus["My favourite programming language is Rust"]
    api.call("DELETE", f"/memory/{hiking}", query={"user_id": user_id})
    admin_conn.execute("UPDATE memories SET archived = true, archived_at = now() WHERE id = %s", (rust,))
    r = api.search(query="hiking mountains programming rust", user_id=user_id, top_k=100)
    ids = {x["id"] for x in r.body["results"]}
    assert hiking not in ids and rust not in ids and len(ids) == len(corpus) - 2


def test_importance_and_recency_count_in_relevance(api, user_id):
    now = datetime.now(UTC)
    old = (now - timedelta(days=2000)).isoformat()
    same = "The meeting room is on the third floor"
    api.ingest(user_id=user_id, content=same, importance=0.2, created_at=old)
    api.ingest(user_id=user_id + "x", content=same)  # other user: must not interfere
    api.ingest(user_id=user_id, content=same + ".", importance=0.9, created_at=now.isoformat())
    r = api.search(query="where is the meeting room", user_id=user_id, top_k=2)
    first, second = r.body["results"]
    assert first["importance"] == pytest.approx(0.9) and second["importance"] == pytest.approx(0.2)
    assert first["relevance"] > second["relevance"]


def test_search_updates_access_statistics(api, user_id, corpus, admin_conn):
    r = api.search(query="peanuts allergy", user_id=user_id, top_k=1)
    mid = r.body["results"][0]["id"]
    row = admin_conn.execute("SELECT access_count, accessed_at FROM memories WHERE id = %s", (mid,)).fetchone()
    assert row[0] == 1 and row[1] is not None


def test_context_respects_budget_and_relevance_order(api, user_id, corpus):
    # min_relevance 0: every candidate, as /search returns them (the default leaves out weak matches)
    full = api.call("POST", "/context", body={"query": "health", "user_id": user_id, "max_tokens": 4000, "top_k": 6,
                                              "min_relevance": 0})
    assert full.status == 200 and full.body["truncated"] is False
    assert len(full.body["memory_ids"]) == 6
    assert full.body["token_count"] == -(-len(full.body["context"]) // 4)
    lines = full.body["context"].split("\n")
    assert all(line.startswith("[") and "] " in line for line in lines)
    assert lines[0].startswith("[2023-05-05 fact] I am allergic")
    search = api.search(query="health", user_id=user_id, top_k=6)
    assert full.body["memory_ids"] == [x["id"] for x in search.body["results"]]

    small = api.call("POST", "/context", body={"query": "health", "user_id": user_id, "max_tokens": 20, "top_k": 6,
                                               "min_relevance": 0})
    assert small.body["token_count"] <= 20 and small.body["truncated"] is True
    assert small.body["memory_ids"] and set(small.body["memory_ids"]) <= set(full.body["memory_ids"])


def test_context_for_user_without_memories_is_empty(api, user_id):
    r = api.call("POST", "/context", body={"query": "anything", "user_id": user_id, "max_tokens": 100})
    assert r.status == 200
    assert r.body == {"context": "", "token_count": 0, "memory_ids": [], "truncated": False}


def test_search_with_only_stop_words_still_works(api, user_id, corpus):
    r = api.search(query="the of and", user_id=user_id, top_k=3)
    assert r.status == 200 and len(r.body["results"]) == 3


@pytest.mark.parametrize("mode, fusion", [("vector", "convex"), ("hybrid", "convex"), ("hybrid", "rrf")])
def test_relevance_is_the_documented_blend(api, user_id, settings_env, mode, fusion):
    """relevance = 0.6 * match + 0.3 * importance + 0.1 / (1 + age_days * decay), match in
    [0, 1]; a memory that is the best by meaning and by words has match 1 in every mode."""
    settings_env(MEMORY_SEARCH_MODE=mode, MEMORY_FUSION=fusion)
    from coda_memory.config import get_settings

    decay = get_settings().recency_decay
    now = datetime.now(UTC)
    exact = "zebra crossing safety rules"
    for i, (content, days) in enumerate([
        (exact, 3), ("pedestrian crossings need care", 40), ("zebras live in Africa", 400),
        ("the weekly grocery list", 10),
    ]):
        api.ingest(user_id=user_id, content=content, importance=0.1 + 0.2 * i,
                   created_at=(now - timedelta(days=days)).isoformat())
    results = api.search(query=exact, user_id=user_id, top_k=10).body["results"]
    assert len(results) == 4
    best = next(r for r in results if r["content"] == exact)

    def rest(r: dict) -> float:
        age = (datetime.now(UTC) - datetime.fromisoformat(r["created_at"])).total_seconds() / 86_400
        return 0.3 * r["importance"] + 0.1 / (1 + age * decay)

    assert best["relevance"] == pytest.approx(0.6 + rest(best), abs=1e-4)
    for r in results:
        match = (r["relevance"] - rest(r)) / 0.6
        assert -1e-6 <= match <= 1 + 1e-6
        if mode == "vector":
            assert match == pytest.approx(max(r["similarity"], 0.0), abs=1e-4)
