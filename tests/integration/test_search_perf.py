"""bm25_candidates (db/functions/bm25_candidates.sql): the SECURITY DEFINER BM25 step of search.

It runs as the schema owner, so RLS does not restrict it: these tests pin that it scopes itself
to the transaction's ``app.current_user_id`` and offers no way to name another user.
"""

from __future__ import annotations

import math
import uuid

import psycopg
import pytest

from coda_memory.db.filters import filters_param, where_clause
from coda_memory.db.search import _LEXICAL_SQL, _SEARCH_SQL
from coda_memory.models import SearchFilters
from tests.dbrows import insert_memory


@pytest.fixture()
def users(admin_conn):
    a, b = f"bm25-a-{uuid.uuid4().hex[:8]}", f"bm25-b-{uuid.uuid4().hex[:8]}"
    ids_a = [insert_memory(admin_conn, a, t) for t in ("zebra migration notes", "zebra zebra stripes",
                                                   "unrelated grocery list")]
    ids_b = [insert_memory(admin_conn, b, t) for t in ("zebra secret of bravo", "bravo zebra plans")]
    return a, b, ids_a, ids_b


def _candidates(conn: psycopg.Connection, query: str, **filters: object) -> list[tuple[uuid.UUID, float]]:
    rows = conn.execute(
        "SELECT id, score FROM bm25_candidates(%s, 50, %s::search_filters)",
        (query, filters_param(SearchFilters.model_validate(filters))),
    )
    return [(r[0], r[1]) for r in rows]


def test_returns_only_the_current_users_rows(app_conn, users):
    a, b, ids_a, ids_b = users
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (a,))
        got = _candidates(app_conn, "zebra")
    assert {i for i, _ in got} == set(ids_a[:2])
    assert all(s > 0 and math.isfinite(s) for _, s in got)
    assert got[0][0] == ids_a[1]  # tf 2 ranks first
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (b,))
        assert {i for i, _ in _candidates(app_conn, "zebra bravo secret")} == set(ids_b)


def test_nothing_without_a_user_or_with_an_empty_one(app_conn, admin_conn, users):
    insert_memory(admin_conn, "", "zebra row with empty user")
    with app_conn.transaction():
        assert _candidates(app_conn, "zebra") == []
    with app_conn.transaction():  # after a transaction the setting reads '' (not NULL)
        app_conn.execute("SELECT set_config('app.current_user_id', '', true)")
        assert _candidates(app_conn, "zebra") == []
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', 'nobody-' || gen_random_uuid(), true)")
        assert _candidates(app_conn, "zebra") == []


def test_no_argument_can_name_a_user(app_conn, admin_conn, users):
    a, b, _, ids_b = users
    args = admin_conn.execute(
        """SELECT p.proargnames, p.proargtypes::regtype[]::text[], p.prosecdef, p.proconfig
           FROM pg_proc p WHERE p.proname = 'bm25_candidates'"""
    ).fetchall()
    assert len(args) == 1  # no overload with a user argument
    names, types, secdef, config = args[0]
    assert secdef and "search_path=pg_catalog, public" in config
    assert not any("user" in n for n in names)
    assert types == ["text", "integer", "search_filters", "double precision", "double precision", "integer"]
    # Every text argument is a query or a filter: passing B's id anywhere finds none of B's rows.
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (a,))
        assert _candidates(app_conn, b) == []
        assert _candidates(app_conn, "zebra", context_id=b) == []
        assert not {i for i, _ in _candidates(app_conn, "zebra bravo")} & set(ids_b)
    # Setting the user is the only way in, and it is the caller's own transaction's setting:
    # what coda_app can do anyway under RLS (the API sets it from the authenticated key).
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (b,))
        assert {i for i, _ in _candidates(app_conn, "zebra")} == set(ids_b)


def test_execute_granted_to_the_app_role_only(admin_conn):
    grants = admin_conn.execute(
        """SELECT coalesce(r.rolname, 'PUBLIC') FROM pg_proc p, aclexplode(p.proacl) x
           LEFT JOIN pg_roles r ON r.oid = x.grantee
           WHERE p.proname = 'bm25_candidates' AND x.privilege_type = 'EXECUTE'"""
    ).fetchall()
    owner = admin_conn.execute(
        "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'bm25_candidates'"
    ).fetchone()
    assert owner is not None
    assert {g[0] for g in grants} == {"coda_app", owner[0]}


def test_filters_deleted_and_archived(app_conn, admin_conn, users):
    a, _, ids_a, _ = users
    admin_conn.execute("UPDATE memories SET archived = true WHERE id = %s", (ids_a[1],))
    admin_conn.execute("UPDATE memories SET importance = 0.9, tags = '{t1}' WHERE id = %s", (ids_a[0],))
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (a,))
        assert [i for i, _ in _candidates(app_conn, "zebra")] == [ids_a[0]]
        assert _candidates(app_conn, "zebra", min_importance=0.95) == []
        assert [i for i, _ in _candidates(app_conn, "zebra", tags=["t1"])] == [ids_a[0]]
        assert _candidates(app_conn, "zebra", content_types=["preference"]) == []
        assert _candidates(app_conn, "the of and") == []  # only stop words: no tsquery
    admin_conn.execute("UPDATE memories SET deleted = true, deleted_at = now() WHERE id = %s", (ids_a[0],))
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (a,))
        assert _candidates(app_conn, "zebra") == []


def test_search_sql_uses_the_definer_function():
    assert "bm25_candidates(" in _LEXICAL_SQL
    assert "@@" not in _LEXICAL_SQL and "@@" not in _SEARCH_SQL
    assert filters_param(SearchFilters(tags=None, content_types=None)) == (None,) * len(SearchFilters.model_fields)
    where, params = where_clause(SearchFilters())
    assert "m.user_id" in where and "memory_visible(m, " in where and "memory_searchable(m)" in where
    assert "memory_rank(" in _SEARCH_SQL  # ranked in the database (memory_nearest: the compact vectors)
    assert params == {"filters": (None,) * len(SearchFilters.model_fields)}


@pytest.mark.parametrize("graph", [False, True], ids=["exact vector scan", "own graph"])
def test_a_search_reads_its_candidates_by_key_not_every_row_of_the_user(app_conn, admin_conn, graph):
    """The lexical, vector and ranking steps run on plans cached per connection (generic: the
    planner does not know the user): each candidate must still be one primary-key lookup. A plan that
    scanned the user's rows instead costs in proportion to the user's memory (measured: 100+ ms
    at 10,000 memories); counted here as rows fetched from the user's partition."""
    user = f"bm25-keys-{uuid.uuid4().hex[:8]}"
    admin_conn.execute(
        "INSERT INTO memories (user_id, content, content_type, source_type, content_hash, embedding) "
        "SELECT %s, 'zebra note ' || g || ' about topic ' || (g %% 11), 'fact', 'test', md5(%s || g), "
        "       (SELECT array_agg(sin(g * 0.37 + i))::vector FROM generate_series(1, 384) i) "
        "FROM generate_series(1, 1000) g", (user, user))
    if graph:
        admin_conn.execute("SELECT memory_vector_graphs_sync(500)")
        assert admin_conn.execute("SELECT 1 FROM memory_vector_graphs WHERE user_id = %s", (user,)).fetchone()
    part = admin_conn.execute("SELECT tableoid FROM memories WHERE user_id = %s LIMIT 1", (user,)).fetchone()[0]
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))

        def fetched() -> int:
            return app_conn.execute("SELECT pg_stat_get_xact_tuples_fetched(%s)", (part,)).fetchone()[0]

        for _ in range(3):  # the cached plans are the ones measured
            before = fetched()
            lexical = app_conn.execute("SELECT id, score FROM bm25_candidates('zebra topic note', 20)").fetchall()
            ranked = app_conn.execute(
                "SELECT id FROM memory_rank('zebra topic note', (SELECT embedding::halfvec FROM memories "
                "WHERE user_id = %s LIMIT 1), 20, NULL, %s::uuid[], %s::float8[], 'convex', 0.8, 0.1, 0.1, 0.01, "
                "0.5, 60, 1.2, 0.75, 10)", (user, [r[0] for r in lexical], [r[1] for r in lexical])).fetchall()
            assert len(lexical) == 20 and len(ranked) == 10
            # lexical: 30 candidates scored; vector step: the 20 nearest; ranking: <= 40
            # candidates and the row the query's vector is read from
            assert fetched() - before <= 80
