"""The statistics are counted on write (memory_tallies, migration 0050): whatever path changes a
memory, GET /users/{user_id}/stats must equal a count of the user's rows done from scratch.

The reference below recomputes the document in Python from the rows themselves, so it shares
nothing with the SQL it checks."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from coda_memory.db.migrate import FUNCTIONS_DIR, MIGRATIONS_DIR, apply_migrations
from tests.dbrows import insert_memory, new_user, scratch_database

COLUMNS = "deleted, archived, superseded_by, expires_at, content_type, source_type, tags, access_count, created_at"


def recount(conn: psycopg.Connection, user: str, days: int = 90, top: int = 10) -> dict[str, Any]:
    """The stats document's counted parts, from the user's rows."""
    now = datetime.now(UTC)
    counts: Counter[str] = Counter()
    types: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    recall: Counter[str] = Counter()
    per_day: Counter[str] = Counter()
    first_day = (now.date() - timedelta(days=days - 1)).isoformat()
    for deleted, archived, superseded_by, expires_at, ctype, source, mtags, access, created in conn.execute(
            f"SELECT {COLUMNS} FROM memories WHERE user_id = %s", (user,)):
        expired = expires_at is not None and expires_at <= now
        state = ("deleted" if deleted else "expired" if expired else "archived" if archived
                 else "superseded" if superseded_by else "live")
        counts[state] += 1
        if not deleted and created.astimezone(UTC).date().isoformat() >= first_day:
            per_day[created.astimezone(UTC).date().isoformat()] += 1
        if state == "live":
            types[ctype] += 1
            sources[source] += 1
            tags.update(set(mtags))
            recall["never" if access == 0 else "one_to_four" if access < 5 else "five_plus"] += 1
    return {
        "counts": {k: counts[k] for k in ("live", "archived", "superseded", "expired", "deleted")},
        "recall": {k: recall[k] for k in ("never", "one_to_four", "five_plus")},
        "content_types": dict(types), "source_types": dict(sources),
        "top_tags": [{"tag": t, "count": n} for t, n in sorted(tags.items(), key=lambda x: (-x[1], x[0]))[:top]],
        "created_per_day": [{"day": d, "count": per_day[d]} for d in sorted(per_day)],
    }


def served(api: Any, user: str) -> dict[str, Any]:
    r = api.call("GET", f"/users/{user}/stats")
    assert r.status == 200, r.body
    return {k: r.body[k] for k in ("counts", "recall", "content_types", "source_types", "top_tags", "created_per_day")}


def _id(r: Any) -> str:
    assert r.status == 201, r.body  # created
    return str(r.body["memory_id"])


def test_every_write_path_keeps_the_counts_exact(api, admin_conn):
    user = new_user("tally")
    other = new_user("tally")
    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    a = _id(api.ingest(user_id=user, content="Alice drinks green tea", tags=["food", "morning"],
                       content_type="preference"))
    b = _id(api.ingest(user_id=user, content="Alice runs on Sundays", tags=["sport"], source_type="chat",
                       created_at=old))
    r = api.call("POST", "/ingest/batch", body={"items": [
        {"user_id": user, "content": f"Batch note {i} about the garden", "content_type": "fact",
         "source_type": "batch", "tags": ["garden", f"t{i % 3}"]} for i in range(12)]})
    assert r.status == 200, r.body
    batch = [x["memory_id"] for x in r.body["results"]]
    assert served(api, user) == recount(admin_conn, user)

    # edits: type and tags move between keys; a duplicate changes nothing
    assert api.call("PATCH", f"/memory/{batch[0]}", query={"user_id": user},
                    body={"content_type": "event", "tags": ["garden", "spring"]}).status == 200
    assert api.ingest(user_id=user, content="Alice drinks green tea").status == 200
    # soft delete, archive, restore, supersede (on ingest and by PATCH), reinstate
    assert api.call("DELETE", f"/memory/{batch[1]}", query={"user_id": user}).status == 200
    assert api.call("PATCH", f"/memory/{batch[2]}", query={"user_id": user}, body={"archived": True}).status == 200
    assert api.call("PATCH", f"/memory/{batch[3]}", query={"user_id": user}, body={"archived": True}).status == 200
    assert api.call("PATCH", f"/memory/{batch[3]}", query={"user_id": user}, body={"archived": False}).status == 200
    newer = _id(api.ingest(user_id=user, content="Alice now drinks black coffee", supersedes=[a]))
    assert api.call("PATCH", f"/memory/{batch[4]}", query={"user_id": user}, body={"superseded_by": newer}).status == 200
    assert api.call("PATCH", f"/memory/{batch[4]}", query={"user_id": user}, body={"superseded_by": None}).status == 200
    # hard delete; searches count accesses (the first and the fifth move a memory between buckets)
    assert api.call("DELETE", f"/memory/{batch[5]}", query={"user_id": user, "hard": "true"}).status == 200
    for _ in range(5):
        assert api.search(query="garden", user_id=user, top_k=3).status == 200
    admin_conn.execute("UPDATE memories SET access_count = access_count + 5 WHERE id = %s", (b,))
    # expiry passes without a write to the tallies: the read moves the row to "expired"
    admin_conn.execute("UPDATE memories SET expires_at = now() + interval '1 hour' WHERE id = %s", (batch[6],))
    admin_conn.execute("UPDATE memories SET expires_at = now() - interval '1 minute' WHERE id = %s", (batch[7],))
    admin_conn.execute("UPDATE memories SET expires_at = now() - interval '1 minute', archived = true WHERE id = %s",
                       (batch[8],))
    # import, and another user's writes and erasure leave this user's counts alone
    lines = "\n".join(f'{{"content": "Imported memory {i}", "content_type": "fact", "tags": ["imported"]}}'
                      for i in range(4))
    r = api.call("POST", f"/users/{user}/import", raw_body=lines, headers={"Content-Type": "application/x-ndjson"})
    assert r.status == 200 and r.body["created"] == 4, r.body
    _id(api.ingest(user_id=other, content="Someone else's note", tags=["garden"]))
    assert api.call("DELETE", f"/users/{other}/memories").status == 200
    assert served(api, user) == recount(admin_conn, user)
    assert admin_conn.execute("SELECT count(*) FROM memory_tallies WHERE user_id = %s AND n <> 0",
                              (other,)).fetchone() == (0,)

    # the whole user erased: nothing left to count
    assert api.call("DELETE", f"/users/{user}/memories").status == 200
    assert served(api, user) == recount(admin_conn, user)
    assert recount(admin_conn, user)["counts"] == dict.fromkeys(("live", "archived", "superseded", "expired",
                                                                 "deleted"), 0)


def test_the_jobs_keep_the_counts_exact(api, admin_conn, postgres):
    from coda_memory.config import Settings
    from coda_memory.db.pool import Database
    from coda_memory.usecases import jobs

    user = new_user("tally")
    old = (datetime.now(UTC) - timedelta(days=800)).isoformat()
    for i in range(6):
        _id(api.ingest(user_id=user, content=f"An old note number {i} about taxes", created_at=old, importance=0.2,
                       tags=["old"]))
    gone = _id(api.ingest(user_id=user, content="A note deleted long ago"))
    assert api.call("DELETE", f"/memory/{gone}", query={"user_id": user}).status == 200
    admin_conn.execute("UPDATE memories SET deleted_at = now() - interval '400 days' WHERE id = %s", (gone,))
    db = Database(postgres.app_url)
    try:
        for job in ("archival", "retention_purge", "consolidation"):
            jobs.run_job(job, db, Settings())
    finally:
        db.close()
    expected = recount(admin_conn, user)
    assert expected["counts"]["archived"] == 6  # the archival job ran
    assert served(api, user) == expected


def test_concurrent_writers_of_one_user_lose_no_count(api, admin_conn):
    user = new_user("tally")
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(10):
                r = api.call("POST", "/ingest/batch", body={"items": [
                    {"user_id": user, "content": f"worker {worker} batch {i} item {j}", "content_type": "fact",
                     "source_type": "test", "tags": sorted({"shared", f"w{worker}", f"j{j}"}, reverse=worker % 2 == 1)}
                    for j in range(5)]})
                assert r.status == 200, r.body
        except BaseException as error:  # reported below, in the test thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    expected = recount(admin_conn, user)
    assert expected["counts"]["live"] == 150
    assert served(api, user) == expected


def test_migration_0050_counts_an_existing_database(postgres, tmp_path: Path):
    """A database with memories in every state before the tallies existed comes out of the
    migration with tallies that give the same document as a count from scratch, and the
    triggers carry on from there."""
    before = tmp_path / "migrations"
    functions = tmp_path / "functions"
    before.mkdir()
    functions.mkdir()
    for f in MIGRATIONS_DIR.glob("*.sql"):
        if f.name < "0050":
            shutil.copy(f, before)
    for f in FUNCTIONS_DIR.glob("*.sql"):
        if f.name not in ("memory_tallies_sync.sql", "memory_stats.sql"):
            shutil.copy(f, functions)
    with scratch_database(postgres) as url:
        apply_migrations(url, before, functions)
        user = new_user("tally")
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('memory_tallies')").fetchone() == (None,)
            ids = [insert_memory(conn, user, f"memory {i}", tags=["a", f"t{i % 2}"], access_count=i,
                                 content_type="fact" if i % 3 else "event") for i in range(12)]
            conn.execute("UPDATE memories SET deleted = true WHERE id = %s", (ids[0],))
            conn.execute("UPDATE memories SET archived = true WHERE id = %s", (ids[1],))
            conn.execute("UPDATE memories SET superseded_by = %s WHERE id = %s", (ids[11], ids[2]))
            conn.execute("UPDATE memories SET expires_at = now() - interval '1 day' WHERE id = %s", (ids[3],))
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            def stats() -> dict[str, Any]:
                with conn.transaction():
                    conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))
                    doc = conn.execute("SELECT memory_stats(false, 365, 5, 0.8)").fetchone()[0]
                return {k: doc[k] for k in ("counts", "recall", "content_types", "source_types", "top_tags",
                                            "created_per_day")}

            assert stats() == recount(conn, user)
            insert_memory(conn, user, "after the migration", tags=["a"])
            conn.execute("UPDATE memories SET archived = true WHERE id = %s", (ids[4],))
            assert stats() == recount(conn, user)
