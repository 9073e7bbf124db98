"""GET /users/{user_id}/export and POST /users/{user_id}/import through the real handlers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from local.apigw import response_headers

FUTURE = (datetime.now(UTC) + timedelta(days=10)).isoformat()


def _export_all(api, user_id, **query):
    lines, cursor, pages = [], None, 0
    while True:
        q = dict(query, **({"cursor": cursor} if cursor else {}))
        r = api.call("GET", f"/users/{user_id}/export", query=q or None)
        assert r.status == 200, r.body
        assert r.headers["content-type"].startswith("application/x-ndjson")
        pages += 1
        lines += [json.loads(line) for line in r.body.splitlines()]
        cursor = r.headers.get("x-next-cursor")
        if not cursor:
            return lines, pages


def _ndjson(lines) -> str:
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def test_export_has_every_field_and_round_trips_into_another_user(api, user_id, admin_conn):
    a = api.ingest(user_id=user_id, content="alpha fact", tags=["x"], metadata={"k": [1]}, context_id="c",
                   source_id="s-1", importance=0.25, confidence=0.5, created_at="2023-01-01T00:00:00Z",
                   expires_at=FUTURE).body["memory_id"]
    b = api.ingest(user_id=user_id, content="beta fact").body["memory_id"]
    admin_conn.execute("UPDATE memories SET archived = true WHERE id = %s", (b,))
    gone = api.ingest(user_id=user_id, content="deleted fact").body["memory_id"]
    api.call("DELETE", f"/memory/{gone}", query={"user_id": user_id})

    lines, pages = _export_all(api, user_id)
    assert pages == 1 and [x["id"] for x in lines] == [a, b]  # oldest first; deleted left out
    first = lines[0]
    assert set(first) == {"id", "content", "content_type", "source_type", "source_id", "context_id", "event_id",
                          "tags", "metadata", "importance", "confidence", "created_at", "expires_at", "archived",
                          "superseded_by", "superseded_at", "links"}
    assert first["tags"][0] == "x" and first["metadata"] == {"k": [1]} and first["importance"] == 0.25
    assert lines[1]["archived"] is True and "embedding" not in first

    other = user_id + "-copy"
    # the ids belong to user_id: importing them for another user is refused line by line, neutrally
    r = api.call("POST", f"/users/{other}/import", raw_body=_ndjson(lines))
    assert r.status == 200 and r.body["created"] == 0
    assert [x["line"] for x in r.body["rejected"]] == [1, 2]
    assert all(user_id not in x["error"]["message"] for x in r.body["rejected"])
    # without ids they are new memories with everything else kept
    r = api.call("POST", f"/users/{other}/import", raw_body=_ndjson([{k: v for k, v in x.items() if k != "id"}
                                                                      for x in lines]))
    assert r.body == {"created": 2, "duplicate": 0, "rejected": []}
    copied, _ = _export_all(api, other)
    strip = lambda xs: [{k: v for k, v in x.items() if k != "id"} for x in xs]  # noqa: E731
    assert strip(copied) == strip(lines)
    hist = admin_conn.execute("SELECT DISTINCT action FROM memory_history WHERE user_id = %s", (other,)).fetchall()
    assert hist == [("imported",)]


def test_import_keeps_ids_and_is_idempotent(api, user_id):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    lines = [{"id": ids[i], "content": f"imported memory {i}", "content_type": "fact",
              "created_at": f"2022-0{i + 1}-01T00:00:00Z"} for i in range(3)]
    r = api.call("POST", f"/users/{user_id}/import", raw_body=_ndjson(lines))
    assert r.status == 200 and r.body == {"created": 3, "duplicate": 0, "rejected": []}
    got = api.call("GET", f"/memory/{ids[1]}", query={"user_id": user_id}).body
    assert got["content"] == "imported memory 1" and got["created_at"].startswith("2022-02-01")
    assert got["source_type"] == "import"
    again = api.call("POST", f"/users/{user_id}/import", raw_body=_ndjson(lines))
    assert again.body == {"created": 0, "duplicate": 3, "rejected": []}
    listed = api.call("GET", "/memories", query={"user_id": user_id}).body["memories"]
    assert [m["id"] for m in listed] == list(reversed(ids))


def test_import_takes_the_lines_as_json_too(api, user_id, settings_env):
    """{"memories": [...]} sent as application/json: the same lines, memories[i] reported as
    line i + 1; NDJSON labelled application/json (one line or several) is still NDJSON."""
    memories = [{"content": "json import one", "content_type": "fact"},
                {"content": "", "content_type": "fact"},
                {"content": "json import two", "content_type": "event", "user_id": user_id}]
    r = api.call("POST", f"/users/{user_id}/import", body={"memories": memories})
    assert r.status == 200 and r.body["created"] == 2 and [x["line"] for x in r.body["rejected"]] == [2]
    assert r.body["rejected"][0]["error"]["code"] == "validation_error"
    r = api.call("POST", f"/users/{user_id}/import", body={"content": "one line labelled json", "content_type": "fact"})
    assert r.body == {"created": 1, "duplicate": 0, "rejected": []}
    r = api.call("POST", f"/users/{user_id}/import", raw_body=_ndjson(memories[::2]))
    assert r.body == {"created": 0, "duplicate": 2, "rejected": []}
    # the body as a whole: a 422 that touches nothing
    settings_env(MEMORY_MAX_IMPORT_LINES="2")
    for body, message in [({"memories": []}, "memories must not be empty"),
                          ({"memories": memories}, "at most 2 memories per import request"),
                          ({"memories": memories[:1], "extra": 1}, "extra")]:
        r = api.call("POST", f"/users/{user_id}/import", body=body)
        assert r.status == 422 and message in r.body["error"]["message"], (body, r.body)
    assert len(api.call("GET", "/memories", query={"user_id": user_id}).body["memories"]) == 3


def test_import_rejects_bad_lines_alone(api, user_id):
    body = "\n".join([
        json.dumps({"content": "good one", "content_type": "fact"}),
        "{not json",
        json.dumps(["an", "array"]),
        json.dumps({"content": "", "content_type": "fact"}),
        json.dumps({"content": "x", "content_type": "fact", "user_id": "someone-else"}),
        json.dumps({"content": "x", "content_type": "fact", "unknown": 1}),
        json.dumps({"content": "x", "content_type": "fact", "id": "not-a-uuid"}),
        json.dumps({"content": "x", "content_type": "fact", "expires_at": "2001-01-01T00:00:00Z"}),
        json.dumps({"content": "x", "content_type": "fact", "embedding": [0.1] * 3}),
        '{"content": "x", "content_type": "fact", "importance": NaN}',
        "",
        json.dumps({"content": "good two", "content_type": "event", "user_id": user_id}),
    ])
    r = api.call("POST", f"/users/{user_id}/import", raw_body=body)
    assert r.status == 200 and r.body["created"] == 2 and r.body["duplicate"] == 0
    assert [x["line"] for x in r.body["rejected"]] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert all(x["error"]["code"] == "validation_error" for x in r.body["rejected"])


def test_import_with_embeddings_uses_them(api, user_id, admin_conn):
    mid = api.ingest(user_id=user_id, content="The user collects vintage maps").body["memory_id"]
    lines, _ = _export_all(api, user_id, embeddings="true")
    assert len(lines[0]["embedding"]) == 384
    other = user_id + "-emb"
    line = {k: v for k, v in lines[0].items() if k != "id"}
    assert api.call("POST", f"/users/{other}/import", raw_body=_ndjson([line])).body["created"] == 1
    sim = admin_conn.execute(
        """SELECT 1 - (a.embedding <=> b.embedding) FROM memories a, memories b
           WHERE a.id = %s AND b.user_id = %s""", (mid, other)).fetchone()[0]
    assert sim == pytest.approx(1.0, abs=1e-4)
    found = api.search(user_id=other, query="old maps collection").body["results"]
    assert found and found[0]["content"] == "The user collects vintage maps"


def test_export_pages_by_size(api, user_id, settings_env):
    for i in range(5):
        api.ingest(user_id=user_id, content=f"page test memory {i} " + "words " * 700)
    settings_env(MEMORY_EXPORT_PAGE_BYTES="10000")
    lines, pages = _export_all(api, user_id)
    assert len(lines) == 5 and pages == 3  # ~4.4 kB per line: two per page
    assert len({x["id"] for x in lines}) == 5


def test_import_applies_quotas(api, user_id, settings_env):
    settings_env(MEMORY_DEFAULT_MAX_MEMORIES="2")
    lines = [{"content": f"quota line {i}", "content_type": "fact"} for i in range(3)]
    r = api.call("POST", f"/users/{user_id}/import", raw_body=_ndjson(lines))
    assert r.body["created"] == 2 and r.body["rejected"][0]["line"] == 3
    assert r.body["rejected"][0]["error"]["code"] == "quota_exceeded"


@pytest.mark.parametrize("body,status", [
    ("", 422),
    ("\n\n", 422),
    ("x" * 1_100_000, 413),
    ("\n".join(['{"content": "a", "content_type": "fact"}'] * 501), 422),
])
def test_import_rejects_bad_bodies(api, user_id, body, status):
    r = api.call("POST", f"/users/{user_id}/import", raw_body=body)
    assert r.status == status, r.body
    assert api.call("GET", "/memories", query={"user_id": user_id}).body["memories"] == []


def test_export_rejects_bad_input(api, user_id):
    assert api.call("GET", f"/users/{user_id}/export", query={"cursor": "garbage"}).status == 400
    assert api.call("GET", f"/users/{user_id}/export", query={"cursor": "x" * 300}).status == 422
    r = api.call("GET", "/users/bad%20user/export")
    assert (r.status, r.error_code) == (422, "validation_error") and "user_id" in r.body["error"]["message"]
    assert api.call("GET", f"/users/{user_id}/export", query={"embeddings": "perhaps"}).status == 422


def test_export_and_import_are_audited(api, user_id, admin_conn):
    api.call("POST", f"/users/{user_id}/import", raw_body='{"content": "audited", "content_type": "fact"}')
    api.call("GET", f"/users/{user_id}/export")
    rows = admin_conn.execute(
        "SELECT action, details FROM memory_audit_log WHERE user_id = %s AND action IN ('import', 'export') "
        "ORDER BY id", (user_id,)).fetchall()
    assert rows == [("import", {"created": 1, "duplicate": 0, "rejected": 0}),
                    ("export", {"memories": 1, "embeddings": False})]


# --- python -m coda_memory.cli.transfer, over the real handlers -------------------------------------


def _in_process_transport(api):
    from coda_memory.cli.transfer import HttpResponse

    def call(method, path, query, body):
        from tests.apigw import SERVICE_KEY

        result = api.gateway(method, path, query=query or None, api_key=SERVICE_KEY,
                             raw_body=body.decode() if body is not None else None)
        return HttpResponse(result["statusCode"], response_headers(result), (result.get("body") or "").encode())

    return call


def test_transfer_cli_walks_pages_and_chunks(api, user_id, settings_env, tmp_path):
    import io

    from coda_memory.cli import transfer

    settings_env(MEMORY_EXPORT_PAGE_BYTES="10000")
    for i in range(7):
        api.ingest(user_id=user_id, content=f"transfer memory {i} " + "filler " * 400)
    transport = _in_process_transport(api)
    out = io.BytesIO()
    progress = transfer.Progress("export", None, out=io.StringIO())
    assert transfer.export_user(transport, user_id, out, progress=progress) == 7
    assert progress.done == 7
    data = out.getvalue()
    target = user_id + "-moved"
    stripped = b"".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "id"}).encode() + b"\n"
                        for line in data.splitlines())
    bad = stripped + b"{broken\n"
    totals = transfer.import_user(transport, target, io.BytesIO(bad), max_bytes=6000, max_lines=2)
    assert totals.created == 7 and totals.duplicate == 0
    assert [r["line"] for r in totals.rejected] == [8]  # numbered in the file, across chunks
    again = transfer.import_user(transport, target, io.BytesIO(stripped), max_lines=3)
    assert (again.created, again.duplicate, again.rejected) == (0, 7, [])
