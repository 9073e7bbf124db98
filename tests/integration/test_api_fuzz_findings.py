"""Regression tests for what the schemathesis run (tests/integration/test_openapi_fuzz.py) found, through
the real handlers, real PostgreSQL."""

from __future__ import annotations


def test_tiny_scores_are_stored_not_a_500(api, user_id):
    # 1.6e-239 is within [0, 1] but underflows PostgreSQL's real: the insert failed with
    # "value out of range: underflow" and the API answered 500
    r = api.ingest(user_id=user_id, content="tiny confidence", confidence=1.618550162270424e-239,
                   importance=1e-300)
    assert r.status == 201, r.body
    mid = r.body["memory_id"]
    stored = api.call("GET", f"/memory/{mid}", query={"user_id": user_id})
    assert stored.status == 200
    assert stored.body["confidence"] == 0.0 and stored.body["importance"] == 0.0
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"importance": 5e-324})
    assert r.status == 200 and r.body["importance"] == 0.0
    r = api.search(query="tiny", user_id=user_id, filters={"min_importance": 1e-310})
    assert r.status == 200 and [m["id"] for m in r.body["results"]] == [mid]
    r = api.call("POST", "/context", body={"query": "tiny", "user_id": user_id,
                                           "filters": {"min_importance": 2.2e-308}})
    assert r.status == 200


def test_scores_keep_six_decimals(api, user_id):
    r = api.ingest(user_id=user_id, content="precise importance", importance=0.1234567, confidence=0.9999999)
    stored = api.call("GET", f"/memory/{r.body['memory_id']}", query={"user_id": user_id}).body
    assert stored["importance"] == 0.123457 and stored["confidence"] == 1.0


def test_import_of_embeddings_with_huge_or_tiny_components_is_stored_not_a_500(api, user_id):
    # found probing the import while documenting it: normalising such a vector in float32 made
    # it NaN ("NaN not allowed in vector", a 500)
    import json

    lines = [{"content": f"{name} vector", "content_type": "fact", "embedding": [value] * 383 + [-value]}
             for name, value in (("huge", 1e300), ("tiny", 1e-300), ("subnormal", 5e-324))]
    r = api.call("POST", f"/users/{user_id}/import", raw_body="".join(json.dumps(line) + "\n" for line in lines))
    assert r.status == 200 and r.body == {"created": 3, "duplicate": 0, "rejected": []}
    r = api.search(query="huge vector", user_id=user_id, top_k=3)
    assert r.status == 200 and len(r.body["results"]) == 3
