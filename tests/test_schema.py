"""Migrations and row-level security, checked against the real database with raw SQL."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from coda_memory.db.migrate import MIGRATIONS_DIR, apply_migrations, discover
from tests.dbrows import insert_memory as _insert


def _as_user(conn: psycopg.Connection, user: str | None) -> None:
    if user is not None:
        conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))


def test_migrations_are_recorded_and_idempotent(postgres, admin_conn):
    versions = [m.version for m in discover()]
    assert versions == sorted(versions) and versions[0] == 1
    assert apply_migrations(postgres.admin_url) == []  # second run: nothing to do
    assert apply_migrations(postgres.admin_url) == []
    recorded = [r[0] for r in admin_conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert recorded == versions


def test_schema_has_live_only_hnsw_and_user_leading_keys(admin_conn):
    indexes = dict(
        admin_conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories'"
        ).fetchall()
    )
    # the graph holds live memories only (migration 0010); lexical search reads memory_postings
    assert any("USING hnsw" in d and "vector_cosine_ops" in d and "WHERE ((NOT deleted) AND (NOT archived))" in d
               for d in indexes.values())
    assert not any("ivfflat" in d for d in indexes.values())
    assert not any("gin" in d and "search_vector" in d for d in indexes.values())
    assert any("gin" in d and "tags" in d for d in indexes.values())
    # Sharding-ready: every index but the vector one leads with user_id.
    for name, definition in indexes.items():
        if "hnsw" in definition:
            continue
        cols = definition.split("(", 1)[1]
        assert cols.startswith("user_id"), name
    for table in ("memories", "memory_audit_log", "user_quotas", "memory_postings", "memory_lexicon",
                  "memory_lexicon_totals"):
        pk = admin_conn.execute(
            """SELECT a.attname FROM pg_index i JOIN pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = %s::regclass AND i.indisprimary""",
            (table,),
        ).fetchone()
        assert pk == ("user_id",), table


def test_service_role_is_unprivileged(admin_conn):
    row = admin_conn.execute(
        "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = 'coda_app'"
    ).fetchone()
    assert row == (False, False, False)
    forced = admin_conn.execute(
        """SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
           WHERE relname IN ('memories', 'memory_audit_log', 'user_quotas', 'api_keys')"""
    ).fetchall()
    assert len(forced) == 4 and all(r[1] and r[2] for r in forced)


class TestRowLevelSecurity:
    """As the service role, with user A set, raw SQL cannot touch user B's rows."""

    @pytest.fixture()
    def rows(self, admin_conn):
        a, b = f"rls-a-{uuid.uuid4().hex[:8]}", f"rls-b-{uuid.uuid4().hex[:8]}"
        id_a, id_b = _insert(admin_conn, a, "alpha secret"), _insert(admin_conn, b, "bravo secret")
        return a, b, id_a, id_b

    def test_reads_only_own_rows(self, app_conn, rows):
        a, b, id_a, id_b = rows
        with app_conn.transaction():
            _as_user(app_conn, a)
            seen = {r[0] for r in app_conn.execute("SELECT id FROM memories")}
            assert id_a in seen and id_b not in seen
            assert app_conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (b,)).fetchone() == (0,)
            assert app_conn.execute("SELECT count(*) FROM memories WHERE id = %s", (id_b,)).fetchone() == (0,)

    def test_cannot_update_or_delete_other_users_rows(self, app_conn, admin_conn, rows):
        a, b, _, id_b = rows
        with app_conn.transaction():
            _as_user(app_conn, a)
            assert app_conn.execute("UPDATE memories SET content = 'pwned' WHERE id = %s", (id_b,)).rowcount == 0
            assert app_conn.execute("DELETE FROM memories WHERE user_id = %s", (b,)).rowcount == 0
        assert admin_conn.execute("SELECT content FROM memories WHERE id = %s", (id_b,)).fetchone() == ("bravo secret",)

    def test_cannot_insert_as_other_user_or_move_rows(self, app_conn, rows):
        a, b, id_a, _ = rows
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app_conn.transaction():
            _as_user(app_conn, a)
            _insert(app_conn, b, "forged")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app_conn.transaction():
            _as_user(app_conn, a)
            app_conn.execute("UPDATE memories SET user_id = %s WHERE id = %s", (b, id_a))

    def test_no_user_set_sees_nothing(self, app_conn, rows):
        with app_conn.transaction():
            assert app_conn.execute("SELECT count(*) FROM memories").fetchone() == (0,)
            assert app_conn.execute("SELECT count(*) FROM user_quotas").fetchone() == (0,)
            assert app_conn.execute("SELECT count(*) FROM memory_audit_log").fetchone() == (0,)
        # After a transaction the setting reads '' (not NULL): still nothing.
        a = rows[0]
        with app_conn.transaction():
            _as_user(app_conn, a)
        with app_conn.transaction():
            assert app_conn.execute("SELECT current_setting('app.current_user_id', true)").fetchone() == ("",)
            assert app_conn.execute("SELECT count(*) FROM memories").fetchone() == (0,)

    def test_empty_user_id_is_not_a_wildcard(self, app_conn, admin_conn):
        _insert(admin_conn, "", "row with empty user")
        with app_conn.transaction():
            _as_user(app_conn, "")
            assert app_conn.execute("SELECT count(*) FROM memories").fetchone() == (0,)

    def test_api_keys_unreadable_except_through_resolver(self, app_conn, admin_conn):
        admin_conn.execute(
            "INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, 'someone', 't') ON CONFLICT DO NOTHING",
            ("f" * 64,),
        )
        with app_conn.transaction():
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app_conn.execute("SELECT * FROM api_keys")
        with app_conn.transaction():
            assert app_conn.execute("SELECT user_id FROM resolve_api_key(%s)", ("f" * 64,)).fetchone() == ("someone",)


class TestPartitions:
    """memories is hash-partitioned by user_id (0007): one HNSW graph per partition, so a
    search walks one partition's graph instead of every user's."""

    def test_memories_is_hash_partitioned_by_user_and_every_partition_is_locked(self, admin_conn):
        strategy, key = admin_conn.execute(
            """SELECT p.partstrat, a.attname FROM pg_partitioned_table p
               JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
               WHERE p.partrelid = 'memories'::regclass"""
        ).fetchone()
        assert (strategy, key) == ("h", "user_id")
        parts = admin_conn.execute(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                      has_table_privilege('coda_app', c.oid, 'SELECT')
               FROM pg_partition_tree('memories') t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"""
        ).fetchall()
        assert len(parts) == 32
        assert all(rls and forced and not readable for _, rls, forced, readable in parts)
        hnsw_leaves = admin_conn.execute(
            """SELECT count(*) FROM pg_partition_tree('memories_embedding_hnsw') t
               JOIN pg_class c ON c.oid = t.relid JOIN pg_am am ON am.oid = c.relam
               WHERE t.isleaf AND am.amname = 'hnsw'"""
        ).fetchone()
        assert hnsw_leaves == (32,)

    def test_service_role_cannot_read_a_partition_directly(self, app_conn, admin_conn):
        user = f"part-{uuid.uuid4().hex[:8]}"
        _insert(admin_conn, user, "kept behind the parent's policy")
        partition = admin_conn.execute(
            "SELECT tableoid::regclass::text FROM memories WHERE user_id = %s", (user,)
        ).fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app_conn.transaction():
            _as_user(app_conn, user)
            app_conn.execute(f'SELECT * FROM "{partition}"')

    def test_a_users_vector_search_reads_one_partition(self, app_conn, admin_conn):
        user = f"part-{uuid.uuid4().hex[:8]}"
        _insert(admin_conn, user, "one row")
        with app_conn.transaction():
            _as_user(app_conn, user)
            plan = "\n".join(r[0] for r in app_conn.execute(
                """EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
                   SELECT id FROM memories WHERE user_id = %s AND NOT deleted
                   ORDER BY embedding <=> %s::vector LIMIT 5""",
                (user, "[" + ",".join(["0.1"] * 384) + "]"),
            ))
        # scans name a partition ("on memories_p03") or one of its indexes ("on memories_p03_...")
        scanned = set(re.findall(r" on (memories_p\d{2})(?:\b|_)", plan))
        assert len(scanned) == 1, plan


def test_partitioning_migration_keeps_every_row(postgres, tmp_path):
    """0007 copies the unpartitioned table: rows, generated tsvector, flags and policies survive."""
    database = f"coda_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = psycopg.conninfo.make_conninfo(postgres.admin_url, dbname=database)
    try:
        before = tmp_path / "before"
        before.mkdir()
        for path in MIGRATIONS_DIR.glob("*.sql"):
            if int(path.name.split("_", 1)[0]) < 7:
                (before / path.name).write_text(path.read_text())
        assert apply_migrations(url, before) == [1, 2, 3, 4, 5, 6]
        with psycopg.connect(url, autocommit=True) as conn:
            ids = {_insert(conn, f"user-{i % 7}", f"memory number {i} about tea") for i in range(60)}
            conn.execute("UPDATE memories SET deleted = true, deleted_at = now() WHERE content LIKE '%%number 1%%'")
            snapshot = conn.execute(
                "SELECT id, user_id, content, deleted, search_vector::text FROM memories ORDER BY id"
            ).fetchall()
        applied = apply_migrations(url)
        assert applied[0] == 7
        with psycopg.connect(url, autocommit=True) as conn:
            after = conn.execute(
                "SELECT id, user_id, content, deleted, search_vector::text FROM memories ORDER BY id"
            ).fetchall()
            assert after == snapshot and {r[0] for r in after} == ids
            assert conn.execute("SELECT to_regclass('memories_unpartitioned')").fetchone() == (None,)
            policies = {r[0] for r in conn.execute("SELECT policyname FROM pg_policies WHERE tablename = 'memories'")}
            assert policies == {"memories_by_user", "memories_owner"}
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
