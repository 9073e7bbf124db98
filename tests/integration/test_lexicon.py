"""The lexical statistics of migration 0010 (memory_lexicon_totals, memory_lexicon,
memory_postings): BM25 scores equal an exact BM25 computed from scratch, the statistics follow
every write path in the writing transaction, and one user's statistics are invisible to another.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from coda_memory.db.filters import FILTER_ATTRIBUTES, filters_param
from coda_memory.db.pool import Database
from coda_memory.models import SearchFilters
from coda_memory.usecases import jobs
from tests.dbrows import VEC, insert_memory, new_user, scratch_database

K1, B = 1.2, 0.75

CORPUS = [
    "Caroline went to the LGBTQ support group yesterday and it was powerful",
    "Melanie painted a sunset over the lake with her kids",
    "Caroline is researching adoption agencies; Caroline wants to be a mother",
    "Melanie and her family went camping in the mountains last summer",
    "Caroline gave a talk at a school about her transgender journey",
    "Melanie signed up for a pottery class and made a bowl",
    "The kids loved the camping trip and the sunset by the lake",
    "Caroline and Melanie talked about painting, pottery and the lake",
    "Caroline's friends from the support group came to the parade",
    "Melanie reads a book about parenting every night to the kids",
]


def _as(conn: psycopg.Connection, user: str) -> None:
    conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))


def _bm25(conn: psycopg.Connection, user: str, query: str, limit: int = 50, per_term: int = 200,
          filters: SearchFilters | None = None) -> dict[uuid.UUID, float]:
    with conn.transaction():
        _as(conn, user)
        rows = conn.execute(
            "SELECT id, score FROM bm25_candidates(%s, %s, %s::search_filters, 1.2, 0.75, %s)",
            (query, limit, filters_param(filters or SearchFilters()), per_term),
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def _exact_bm25(admin: psycopg.Connection, user: str, query: str) -> dict[uuid.UUID, float]:
    """BM25 from scratch: the live memories' tsvectors (PostgreSQL's English tokenizer, the
    only thing taken from the database), IDF ln(1 + (N - df + 0.5) / (df + 0.5))."""
    docs: dict[uuid.UUID, Counter[str]] = {}
    for mid, lexemes in admin.execute(
        """SELECT id, array_agg(l.lexeme || ':' || coalesce(cardinality(l.positions), 1))
           FROM memories m, unnest(m.search_vector) l
           WHERE user_id = %s AND NOT deleted AND NOT archived GROUP BY id""", (user,)):
        docs[mid] = Counter({x.rsplit(":", 1)[0]: int(x.rsplit(":", 1)[1]) for x in lexemes})
    terms = admin.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", (query,)).fetchone()[0]
    n = len(docs)
    avgdl = sum(len(d) for d in docs.values()) / n
    scores: dict[uuid.UUID, float] = {}
    for term in terms:
        df = sum(1 for d in docs.values() if term in d)
        if not df:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for mid, d in docs.items():
            tf = d.get(term, 0)
            if tf:
                dl = len(d)
                scores[mid] = scores.get(mid, 0.0) + idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))
    return scores


def _stats(conn: psycopg.Connection, user: str) -> tuple[object, ...]:
    totals = conn.execute("SELECT docs, total_length FROM memory_lexicon_totals WHERE user_id = %s",
                          (user,)).fetchone()
    df = dict(conn.execute("SELECT lexeme, df FROM memory_lexicon WHERE user_id = %s AND df > 0",
                           (user,)).fetchall())
    postings = sorted(conn.execute("SELECT memory_id, term, impact FROM memory_postings WHERE user_id = %s",
                                   (user,)).fetchall())
    return (tuple(totals) if totals and totals[0] else (0, 0)), df, postings


def _stats_from_scratch(conn: psycopg.Connection, user: str) -> tuple[object, ...]:
    live = "FROM memories m WHERE m.user_id = %s AND NOT m.deleted AND NOT m.archived"
    totals = conn.execute(f"SELECT count(*), coalesce(sum(length(search_vector)), 0) {live}", (user,)).fetchone()
    df = dict(conn.execute(f"SELECT l.lexeme, count(*) {live.replace('m WHERE', 'm, unnest(m.search_vector) l WHERE')}"
                           " GROUP BY 1", (user,)).fetchall())
    # one posting per (memory, lexeme): the lexeme's hash, and the impact of its tf and the length
    postings = sorted(conn.execute(
        f"SELECT m.id, hashtext(l.lexeme), bm25_impact(coalesce(cardinality(l.positions), 1), length(m.search_vector)) "
        f"{live.replace('m WHERE', 'm, unnest(m.search_vector) l WHERE')}", (user,)).fetchall())
    return tuple(totals), df, postings


def _assert_in_sync(conn: psycopg.Connection, user: str) -> None:
    assert _stats(conn, user) == _stats_from_scratch(conn, user)


@pytest.fixture()
def corpus(admin_conn):
    user = new_user("lex")
    ids = [insert_memory(admin_conn, user, text) for text in CORPUS]
    # archived and deleted memories count for nothing
    gone = [insert_memory(admin_conn, user, "Caroline Caroline lake painting archived"),
            insert_memory(admin_conn, user, "Melanie kids pottery deleted")]
    admin_conn.execute("UPDATE memories SET archived = true, archived_at = now() WHERE id = %s", (gone[0],))
    admin_conn.execute("UPDATE memories SET deleted = true, deleted_at = now() WHERE id = %s", (gone[1],))
    return user, ids


@pytest.mark.parametrize("query", [
    "Caroline support group", "what did Melanie paint at the lake", "camping with the kids",
    "pottery bowl", "Caroline Melanie lake sunset painting kids camping",
])
def test_scores_equal_an_exact_bm25_from_scratch(app_conn, admin_conn, corpus, query):
    user, _ = corpus
    exact = _exact_bm25(admin_conn, user, query)
    got = _bm25(app_conn, user, query)
    assert got.keys() == exact.keys()
    for mid, score in exact.items():
        assert got[mid] == pytest.approx(score, rel=1e-9)
    assert list(got) == sorted(exact, key=lambda i: (-exact[i], str(i)))


def test_reading_few_postings_per_term_still_gives_exact_scores(app_conn, admin_conn, corpus):
    """With 2 postings per lexeme most candidates are found through one lexeme only; the rest
    of their lexemes are probed, so every returned score is still the exact BM25."""
    user, _ = corpus
    query = "Caroline Melanie lake kids camping"
    exact = _exact_bm25(admin_conn, user, query)
    got = _bm25(app_conn, user, query, limit=3, per_term=2)
    assert len(got) == 3
    for mid, score in got.items():
        assert score == pytest.approx(exact[mid], rel=1e-9)
    assert max(exact.values()) == pytest.approx(max(got.values()))


def test_filters_apply_to_lexical_candidates(app_conn, admin_conn, corpus):
    user, ids = corpus
    admin_conn.execute("UPDATE memories SET tags = '{trip}', importance = 0.9 WHERE id = ANY(%s)",
                       ([ids[3], ids[6]],))
    got = _bm25(app_conn, user, "camping lake kids", filters=SearchFilters(tags=["trip"]))
    assert set(got) == {ids[3], ids[6]}
    assert _bm25(app_conn, user, "camping", filters=SearchFilters(min_importance=0.95)) == {}
    later = datetime.now(UTC) + timedelta(days=1)
    assert _bm25(app_conn, user, "camping", filters=SearchFilters(created_after=later)) == {}
    admin_conn.execute("""UPDATE memories SET metadata = '{"trip": {"kind": "camping"}}' WHERE id = %s""", (ids[3],))
    got = _bm25(app_conn, user, "camping lake kids", filters=SearchFilters(metadata={"trip": {"kind": "camping"}}))
    assert set(got) == {ids[3]}
    assert _bm25(app_conn, user, "camping", filters=SearchFilters(source_types=["elsewhere"])) == {}
    assert set(_bm25(app_conn, user, "camping", filters=SearchFilters(source_types=["test"]))) == {ids[3], ids[6]}


def test_search_filters_type_matches_the_model(admin_conn):
    """filters_param sends the filters in the order of the search_filters type, which has the
    API's SearchFilters fields (a filter added to one and not the others fails here)."""
    attrs = [r[0] for r in admin_conn.execute(
        """SELECT attname FROM pg_attribute WHERE attrelid = 'search_filters'::regclass
           AND attnum > 0 AND NOT attisdropped ORDER BY attnum""")]
    assert attrs == list(FILTER_ATTRIBUTES) == list(SearchFilters.model_fields)


def test_statistics_are_invisible_to_other_users(app_conn, admin_conn, corpus):
    assert corpus  # another user with memories exists
    other = new_user("lex")
    insert_memory(admin_conn, other, "nothing in common")
    with app_conn.transaction():
        _as(app_conn, other)
        for table in ("memory_lexicon_totals", "memory_lexicon", "memory_postings"):
            owners = {r[0] for r in app_conn.execute(f"SELECT DISTINCT user_id FROM {table}")}
            assert owners == {other}, table
        assert _bm25(app_conn, other, "Caroline") == {}
    with app_conn.transaction():  # no user: nothing
        assert app_conn.execute("SELECT count(*) FROM memory_postings").fetchone() == (0,)
    with app_conn.transaction(), pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(app_conn, other)
        app_conn.execute("UPDATE memory_lexicon SET df = df + 1")


# --- every write path keeps the statistics, in the writing transaction -----------------------


def test_ingest_and_batch_keep_the_statistics(api, admin_conn, user_id):
    assert api.ingest(user_id=user_id, content="Caroline went to the support group").status == 201
    _assert_in_sync(admin_conn, user_id)
    items = [{"user_id": user_id, "content": t, "content_type": "fact", "source_type": "test"} for t in CORPUS]
    r = api.call("POST", "/ingest/batch", body={"items": items})
    assert r.status == 200 and [x["status"] for x in r.body["results"]] == ["created"] * len(CORPUS), r.body
    _assert_in_sync(admin_conn, user_id)
    assert _stats(admin_conn, user_id)[0][0] == len(CORPUS) + 1


def test_soft_and_hard_delete_and_erase_keep_the_statistics(api, admin_conn, user_id):
    ids = [api.ingest(user_id=user_id, content=t).body["memory_id"] for t in CORPUS[:4]]
    assert api.call("DELETE", f"/memory/{ids[0]}", query={"user_id": user_id}).status == 200
    _assert_in_sync(admin_conn, user_id)
    assert api.call("DELETE", f"/memory/{ids[1]}", query={"user_id": user_id, "hard": "true"}).status == 200
    _assert_in_sync(admin_conn, user_id)
    # hard delete of a soft-deleted memory: nothing left to remove
    assert api.call("DELETE", f"/memory/{ids[0]}", query={"user_id": user_id, "hard": "true"}).status == 200
    _assert_in_sync(admin_conn, user_id)
    assert _stats(admin_conn, user_id)[0][0] == 2
    assert api.call("DELETE", f"/users/{user_id}/memories").status == 200
    _assert_in_sync(admin_conn, user_id)
    assert _stats(admin_conn, user_id) == ((0, 0), {}, [])


def test_patch_keeps_the_statistics(api, admin_conn, user_id):
    mid = api.ingest(user_id=user_id, content="Caroline went to the support group").body["memory_id"]
    api.ingest(user_id=user_id, content="Melanie painted the lake")
    r = api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id},
                 body={"content": "Caroline went camping by the lake with the kids"})
    assert r.status == 200
    _assert_in_sync(admin_conn, user_id)
    assert api.call("PATCH", f"/memory/{mid}", query={"user_id": user_id}, body={"importance": 0.9}).status == 200
    _assert_in_sync(admin_conn, user_id)
    assert ("support",) not in {(lex,) for lex in _stats(admin_conn, user_id)[1]}


def test_archive_and_purge_jobs_keep_the_statistics(postgres, admin_conn):
    user = new_user("lexjob")
    old = datetime.now(UTC) - timedelta(days=800)
    for i, text in enumerate(CORPUS):
        mid = insert_memory(admin_conn, user, text)
        admin_conn.execute("UPDATE memories SET created_at = %s WHERE id = %s", (old if i % 2 else datetime.now(UTC), mid))
    admin_conn.execute("UPDATE memories SET deleted = true, deleted_at = now() - interval '40 days' "
                       "WHERE user_id = %s AND content LIKE 'Melanie%%'", (user,))
    _assert_in_sync(admin_conn, user)
    db = Database(postgres.app_url)
    try:
        jobs.archive(db, after_days=365, max_access_count=5, batch_size=2)
        _assert_in_sync(admin_conn, user)
        assert admin_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s AND archived",
                                  (user,)).fetchone()[0] > 0
        jobs.purge(db, after_days=30, batch_size=2)
        _assert_in_sync(admin_conn, user)
    finally:
        db.close()
    # restoring an archived memory and editing a live one's text (later update paths) too
    admin_conn.execute("UPDATE memories SET archived = false WHERE user_id = %s AND archived", (user,))
    _assert_in_sync(admin_conn, user)
    admin_conn.execute("UPDATE memories SET content = content || ' and a new painting' WHERE user_id = %s", (user,))
    _assert_in_sync(admin_conn, user)


def test_statistics_change_with_the_writing_transaction(admin_conn):
    user = new_user("lex")
    insert_memory(admin_conn, user, "kept memory about tea")
    before = _stats(admin_conn, user)
    with admin_conn.transaction(force_rollback=True):
        insert_memory(admin_conn, user, "rolled back memory about coffee")
        admin_conn.execute("DELETE FROM memories WHERE user_id = %s AND content LIKE 'kept%%'", (user,))
        _assert_in_sync(admin_conn, user)  # visible inside the transaction
    assert _stats(admin_conn, user) == before  # and gone with it


def test_access_statistics_updates_leave_the_statistics_alone(admin_conn):
    user = new_user("lex")
    mid = insert_memory(admin_conn, user, "memory about tea")
    before = _stats(admin_conn, user)
    admin_conn.execute("UPDATE memories SET access_count = access_count + 1, accessed_at = now() WHERE id = %s", (mid,))
    assert _stats(admin_conn, user) == before


def test_statements_over_many_users_keep_each_users_statistics(admin_conn):
    users = [new_user("lex") for _ in range(3)]
    admin_conn.execute(
        """INSERT INTO memories (user_id, content, content_type, embedding, source_type, content_hash)
           SELECT u, t || ' ' || u, 'fact', %s::vector, 'test', md5(t || u)
           FROM unnest(%s::text[]) u, unnest(%s::text[]) t""", (VEC, users, CORPUS[:5]))
    for u in users:
        _assert_in_sync(admin_conn, u)
    admin_conn.execute("DELETE FROM memories WHERE user_id = ANY(%s) AND content LIKE 'Caroline%%'", (users,))
    for u in users:
        _assert_in_sync(admin_conn, u)


def test_migrations_0010_and_0031_backfill_the_statistics_of_existing_memories(postgres, tmp_path):
    """A database at the baseline with memories (live, archived, deleted) gets statistics equal
    to the from-scratch ones (0010), its postings converted to the compact layout with exactly
    the impacts the triggers compute (0031), so the triggers can delete them afterwards."""
    from coda_memory.db.migrate import apply_migrations

    empty = tmp_path / "none"
    empty.mkdir()
    with scratch_database(postgres) as url:
        apply_migrations(url, empty, empty)  # the baseline only
        with psycopg.connect(url, autocommit=True) as conn:
            user = new_user("lex")
            for text in CORPUS:
                insert_memory(conn, user, text)
            conn.execute("UPDATE memories SET archived = true WHERE content LIKE 'Melanie%%'")
            conn.execute("UPDATE memories SET deleted = true WHERE content LIKE 'The kids%%'")
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            _assert_in_sync(conn, user)
            insert_memory(conn, user, "Caroline painted the lake")  # the triggers carry on from there
            conn.execute("UPDATE memories SET deleted = true WHERE user_id = %s AND content LIKE 'Caroline went%%'",
                         (user,))
            _assert_in_sync(conn, user)
            assert conn.execute("SELECT count(*) FROM memory_postings WHERE user_id = %s", (user,)).fetchone()[0] > 0


def test_bm25_scores_is_scoped_to_the_current_user(app_conn, admin_conn, corpus):
    """bm25_scores / bm25_query_terms take no user; another user's ids score nothing."""
    user, ids = corpus
    other = new_user("lex")
    insert_memory(admin_conn, other, "Caroline lake")
    for fn in ("bm25_scores", "bm25_query_terms"):
        names = admin_conn.execute("SELECT proargnames FROM pg_proc WHERE proname = %s", (fn,)).fetchone()[0]
        assert not any("user" in n for n in names), fn
    with app_conn.transaction():
        _as(app_conn, other)
        assert app_conn.execute("SELECT * FROM bm25_scores('Caroline lake', %s)", (ids,)).fetchall() == []
        _as(app_conn, user)
        got = dict(app_conn.execute("SELECT * FROM bm25_scores('Caroline lake', %s)", (ids,)).fetchall())
    exact = _exact_bm25(admin_conn, user, "Caroline lake")
    assert {i: pytest.approx(s, rel=1e-9) for i, s in exact.items()} == {i: s for i, s in got.items() if s is not None}
