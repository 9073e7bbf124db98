"""filters.metadata, filters.source_types and min_relevance on /search and /context."""

from __future__ import annotations

import pytest

UNRELATED = [
    "I prefer dark roast coffee",
    "My sister lives in Lisbon",
    "I go running every Tuesday morning",
    "My favourite film is Alien",
    "I am allergic to peanuts",
]


def test_unrelated_memories_do_not_pad_the_context(api, user_id):
    for content in UNRELATED:
        assert api.ingest(user_id=user_id, content=content, content_type="preference").status == 201
    r = api.call("POST", "/context", body={"user_id": user_id, "query": "infrastructure automation"})
    assert r.status == 200
    assert r.body["memory_ids"] == [] and r.body["context"] == "" and "coffee" not in r.body["context"]
    related = api.ingest(user_id=user_id, content="We use Terraform and Ansible to automate our cloud servers")
    r = api.call("POST", "/context", body={"user_id": user_id, "query": "infrastructure automation"})
    assert r.body["memory_ids"] == [related.body["memory_id"]]
    # a request may ask for everything again
    r = api.call("POST", "/context", body={"user_id": user_id, "query": "infrastructure automation",
                                           "min_relevance": 0})
    assert len(r.body["memory_ids"]) == 6


def test_min_relevance_on_search_drops_weak_matches_only(api, user_id):
    for content in UNRELATED:
        api.ingest(user_id=user_id, content=content)
    everything = api.search(user_id=user_id, query="what coffee do I like?").body["results"]
    assert len(everything) == 5  # /search keeps all unless asked
    strong = api.search(user_id=user_id, query="what coffee do I like?", min_relevance=0.3).body["results"]
    assert [r["content"] for r in strong] == ["I prefer dark roast coffee"]
    assert all(r["similarity"] >= 0.3 for r in strong)
    # the scores of the kept result do not change with the threshold
    assert strong[0]["relevance"] == pytest.approx(everything[0]["relevance"], abs=1e-6)


def test_context_default_comes_from_the_setting(api, user_id, settings_env):
    for content in UNRELATED:
        api.ingest(user_id=user_id, content=content)
    settings_env(MEMORY_CONTEXT_MIN_RELEVANCE="0")
    r = api.call("POST", "/context", body={"user_id": user_id, "query": "infrastructure automation"})
    assert len(r.body["memory_ids"]) == 5


def test_metadata_and_source_type_filters(api, user_id):
    a = api.ingest(user_id=user_id, content="Deploy notes for project apollo release",
                   metadata={"project": "apollo", "env": {"name": "prod", "region": "eu"}}, source_type="slack")
    b = api.ingest(user_id=user_id, content="Deploy notes for project gemini release",
                   metadata={"project": "gemini"}, source_type="email")
    c = api.ingest(user_id=user_id, content="Deploy notes for project apollo staging",
                   metadata={"project": "apollo", "env": {"name": "staging"}}, source_type="email")
    ids = {k: v.body["memory_id"] for k, v in (("a", a), ("b", b), ("c", c))}

    def found(filters, path="/search"):
        r = api.call("POST", path, body={"user_id": user_id, "query": "deploy notes release", "filters": filters,
                                         **({"min_relevance": 0} if path == "/context" else {})})
        assert r.status == 200, r.body
        got = [x["id"] for x in r.body["results"]] if path == "/search" else r.body["memory_ids"]
        return sorted(k for k, v in ids.items() if v in got)

    assert found({"metadata": {"project": "apollo"}}) == ["a", "c"]
    assert found({"metadata": {"env": {"name": "prod"}}}) == ["a"]
    assert found({"metadata": {"project": "apollo"}, "source_types": ["email"]}) == ["c"]
    assert found({"source_types": ["slack", "email"]}) == ["a", "b", "c"]
    assert found({"metadata": {"project": "zeus"}}) == []
    assert found({"metadata": {"project": "gemini"}}, "/context") == ["b"]


@pytest.mark.parametrize("body", [
    {"filters": {"metadata": "apollo"}},
    {"filters": {"metadata": {"k": "x" * 20_000}}},
    {"filters": {"source_types": ["has space"]}},
    {"filters": {"source_types": "slack"}},
    {"filters": {"source_types": ["s"] * 101}},
    {"min_relevance": 1.5},
    {"min_relevance": -0.1},
    {"min_relevance": "high"},
])
@pytest.mark.parametrize("path", ["/search", "/context"])
def test_bad_filters_and_thresholds_are_422(api, user_id, body, path):
    r = api.call("POST", path, body={"user_id": user_id, "query": "q", **body})
    assert r.status == 422 and r.error_code == "validation_error", r.body


def test_nan_in_a_metadata_filter_is_refused(api, user_id):
    raw = '{"user_id": "' + user_id + '", "query": "q", "filters": {"metadata": {"k": NaN}}}'
    assert api.call("POST", "/search", raw_body=raw).status == 400
