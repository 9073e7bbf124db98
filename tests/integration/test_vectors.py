"""The compact vector layout of migration 0030: memory_vectors holds exactly the searchable
memories' embeddings (halfvec) on every write path, memory_nearest returns the exact nearest
of the current user (scanned, or walked in the user's own graph) with filters and expiry
applied, and the migration carries an existing database's vectors over."""

from __future__ import annotations

import random
import uuid

import numpy as np
import psycopg
import pytest

from coda_memory.db.filters import filters_param
from coda_memory.models import SearchFilters
from tests.dbrows import insert_memory, new_user, scratch_database, vector_text


def _vec(rng: random.Random) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(384)]


def _add(conn: psycopg.Connection, user: str, content: str, vec: list[float], **cols: object) -> uuid.UUID:
    return insert_memory(conn, user, content, embedding=vec, **cols)


def _vectors(conn: psycopg.Connection, user: str) -> dict[uuid.UUID, str]:
    return dict(conn.execute("SELECT memory_id, embedding::text FROM memory_vectors WHERE user_id = %s AND piece = 0",
                             (user,)).fetchall())


def _searchable(conn: psycopg.Connection, user: str) -> dict[uuid.UUID, str]:
    return dict(conn.execute("SELECT id, embedding::text FROM memories m WHERE user_id = %s AND memory_searchable(m)",
                             (user,)).fetchall())


def test_vectors_follow_every_write_path(admin_conn):
    user, rng = new_user("vec"), random.Random(1)
    ids = [_add(admin_conn, user, f"memory {i}", _vec(rng)) for i in range(6)]
    archived_at_birth = _add(admin_conn, user, "born archived", _vec(rng), archived=True)
    assert _vectors(admin_conn, user) == _searchable(admin_conn, user) and len(_vectors(admin_conn, user)) == 6
    admin_conn.execute("UPDATE memories SET archived = true WHERE id = %s", (ids[0],))  # archive
    admin_conn.execute("UPDATE memories SET deleted = true WHERE id = %s", (ids[1],))  # soft delete
    admin_conn.execute("DELETE FROM memories WHERE id = %s", (ids[2],))  # hard delete
    admin_conn.execute("UPDATE memories SET archived = false WHERE id = %s", (archived_at_birth,))  # restore
    admin_conn.execute("UPDATE memories SET embedding = %s::vector WHERE id = %s", (vector_text(_vec(rng)), ids[3]))  # edit
    admin_conn.execute("UPDATE memories SET access_count = access_count + 1 WHERE user_id = %s", (user,))
    assert _vectors(admin_conn, user) == _searchable(admin_conn, user)
    assert set(_vectors(admin_conn, user)) == {ids[3], ids[4], ids[5], archived_at_birth}
    admin_conn.execute("DELETE FROM memories WHERE user_id = %s", (user,))  # erase
    assert _vectors(admin_conn, user) == {}


def test_another_users_vectors_are_invisible(app_conn, admin_conn):
    a, b = new_user("vec"), new_user("vec")
    insert_memory(admin_conn, a, "a's memory")
    insert_memory(admin_conn, b, "b's memory")
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (a,))
        assert {r[0] for r in app_conn.execute("SELECT user_id FROM memory_vectors")} == {a}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_conn.execute("DELETE FROM memory_vectors")


@pytest.fixture()
def spread_user(admin_conn):
    """300 searchable memories with random vectors (3 tagged 'rare', 2 expired), 50 archived."""
    user, rng = new_user("near"), random.Random(7)
    rows = {}
    for i in range(300):
        v = _vec(rng)
        cols: dict[str, object] = {"tags": ["rare"] if i in (7, 70, 170) else []}
        if i in (11, 12):
            cols["expires_at"] = "2000-01-01T00:00:00Z"
        rows[_add(admin_conn, user, f"live {i}", v, **cols)] = (v, i)
    for i in range(50):
        _add(admin_conn, user, f"archived {i}", _vec(rng), archived=True, tags=["rare"])
    admin_conn.execute("ANALYZE memories, memory_vectors")
    return user, rows, _vec(rng)


def _exact(rows: dict[uuid.UUID, tuple[list[float], int]], q: list[float], n: int,
           keep=lambda i: True) -> list[uuid.UUID]:
    qv = np.array(q, dtype=np.float16).astype(np.float64)
    def dist(v: list[float]) -> float:
        x = np.array(v, dtype=np.float16).astype(np.float64)
        return 1 - float(x @ qv) / (np.linalg.norm(x) * np.linalg.norm(qv))
    live = [(dist(v), mid) for mid, (v, i) in rows.items() if i not in (11, 12) and keep(i)]
    return [mid for _, mid in sorted(live)[:n]]


def _nearest(conn: psycopg.Connection, user: str, q: list[float], n: int,
             filters: SearchFilters | None = None) -> list[uuid.UUID]:
    with conn.transaction():
        conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))
        return [r[0] for r in conn.execute("SELECT id FROM memory_nearest(%s::vector::halfvec, %s, %s::search_filters)",
                                           (vector_text(q), n, filters_param(filters or SearchFilters())))]


def test_the_exact_scan_returns_the_exact_nearest_live_unexpired(app_conn, spread_user):
    user, rows, q = spread_user
    assert _nearest(app_conn, user, q, 50) == _exact(rows, q, 50)
    rare = {i for i in (7, 70, 170)}
    assert _nearest(app_conn, user, q, 50, SearchFilters(tags=["rare"])) == _exact(rows, q, 50, lambda i: i in rare)


def test_a_users_own_graph_serves_its_search_and_a_short_walk_is_completed(app_conn, admin_conn, spread_user):
    user, rows, q = spread_user
    done = admin_conn.execute("SELECT graph_user, action FROM memory_vector_graphs_sync(100)").fetchall()
    assert (user, "created") in done
    index = admin_conn.execute("SELECT index_name FROM memory_vector_graphs WHERE user_id = %s", (user,)).fetchone()[0]
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))
        got = [r[0] for r in app_conn.execute("SELECT id FROM memory_nearest(%s::vector::halfvec, 50)", (vector_text(q),))]
        scans = app_conn.execute("SELECT pg_stat_get_xact_numscans(%s::regclass)", (index,)).fetchone()[0]
        # the walk's settings end with the call: nothing leaks into the caller's transaction
        assert app_conn.execute("SELECT current_setting('enable_sort'), current_setting('plan_cache_mode')"
                                ).fetchone() == ("on", "auto")
    assert scans >= 1  # the walk used the user's own graph
    assert got == _exact(rows, q, 50)  # 300 vectors, ef_search 200: the walk is exact here
    # a walk stopped after 20 tuples finds at most a few of the 3 'rare' memories; the exact
    # re-run returns all 3 and none of the 50 archived 'rare' ones
    with app_conn.transaction():
        app_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))
        app_conn.execute("SET LOCAL hnsw.max_scan_tuples = 20")
        got = [r[0] for r in app_conn.execute("SELECT id FROM memory_nearest(%s::vector::halfvec, 50, %s::search_filters)",
                                               (vector_text(q), filters_param(SearchFilters(tags=["rare"]))))]
    assert sorted(rows[g][1] for g in got) == [7, 70, 170]
    # the user shrinks: the graph goes
    admin_conn.execute("UPDATE memories SET archived = true WHERE user_id = %s", (user,))
    assert (user, "dropped") in admin_conn.execute("SELECT graph_user, action FROM memory_vector_graphs_sync(100)").fetchall()
    assert admin_conn.execute("SELECT to_regclass(%s)", (index,)).fetchone() == (None,)


def test_a_graph_walk_never_answers_an_expired_memory(app_conn, admin_conn, spread_user):
    """Without filters the walk reads the vectors alone and checks expiry after it: asked for the
    vector of an expired memory, it must walk again with the check inside and answer the live
    nearest, never the expired one."""
    user, rows, _ = spread_user
    admin_conn.execute("SELECT memory_vector_graphs_sync(100)")
    assert admin_conn.execute("SELECT 1 FROM memory_vector_graphs WHERE user_id = %s", (user,)).fetchone()
    expired = next(v for v, i in rows.values() if i == 11)
    got = _nearest(app_conn, user, expired, 50)
    assert got == _exact(rows, expired, 50)  # 300 vectors, ef_search 200: the walk is exact here
    assert not {rows[g][1] for g in got} & {11, 12}


def test_nothing_without_a_user(app_conn, spread_user):
    _, _, q = spread_user
    with app_conn.transaction():
        assert app_conn.execute("SELECT count(*) FROM memory_nearest(%s::vector::halfvec, 50)", (vector_text(q),)).fetchone() == (0,)


def test_migration_0030_copies_the_searchable_vectors_of_an_existing_database(postgres, tmp_path):
    """A database in the old layout (fp32 embeddings in memories, shared HNSW graphs), with live,
    archived and deleted memories, comes out with every searchable memory's vector in
    memory_vectors (halfvec of the same values), no shared graph, and triggers that carry on."""
    from coda_memory.db.migrate import apply_migrations

    empty = tmp_path / "none"
    empty.mkdir()
    rng = random.Random(3)
    with scratch_database(postgres) as url:
        apply_migrations(url, empty, empty)  # the baseline only: the old layout
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'memories'::regclass "
                                "AND attname = 'embedding'").fetchone() == ("vector",)
            user, other = new_user("vec"), new_user("vec")
            fp32 = {_add(conn, u, f"memory {u} {i}", _vec(rng)): u for u in (user, other) for i in range(20)}
            conn.execute("UPDATE memories SET archived = true WHERE content LIKE '%% 1_'")
            conn.execute("UPDATE memories SET deleted = true WHERE content LIKE '%% 2'")
            original = dict(conn.execute("SELECT id, embedding::text FROM memories").fetchall())
            live = {r[0] for r in conn.execute("SELECT id FROM memories WHERE NOT deleted AND NOT archived")}
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            got = dict(conn.execute("SELECT memory_id, embedding::text FROM memory_vectors").fetchall())
            assert set(got) == live and len(live) == 2 * (20 - 10 - 1)
            for mid, text in got.items():
                old = np.array(original[mid].strip("[]").split(","), dtype=np.float32)
                new = np.array(text.strip("[]").split(","), dtype=np.float32)
                assert np.allclose(new, old.astype(np.float16), atol=0, rtol=0), mid  # the halfvec of the fp32
            assert conn.execute("SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'memories'::regclass "
                                "AND attname = 'embedding'").fetchone() == ("halfvec",)
            assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%%USING hnsw%%'").fetchone() == (0,)
            user_rows = {m for m, u in fp32.items() if u == user}
            new_id = _add(conn, user, "after the migration", _vec(rng))
            assert set(_vectors(conn, user)) == (user_rows & live) | {new_id}


def test_the_archival_run_builds_the_graphs_of_large_users(postgres, admin_conn, spread_user):
    """The nightly archival run also gives users past the threshold a graph of their own."""
    from coda_memory.config import Settings
    from coda_memory.db.pool import Database
    from coda_memory.usecases import jobs

    user, _, _ = spread_user
    db = Database(postgres.app_url)
    try:
        jobs.run_job("archival", db, Settings(vector_graph_min_memories=250))
    finally:
        db.close()
    index = admin_conn.execute("SELECT index_name FROM memory_vector_graphs WHERE user_id = %s", (user,)).fetchone()
    assert index is not None
    assert admin_conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (index[0],)).fetchone()[0] \
        .endswith(f"WHERE (user_id = '{user}'::text)")
