"""Migrations and row-level security, checked against the real database with raw SQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from coda_memory.db.migrate import apply_migrations, discover
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


def test_schema_has_hnsw_fts_and_user_leading_keys(admin_conn):
    indexes = dict(
        admin_conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories'"
        ).fetchall()
    )
    assert any("USING hnsw" in d and "vector_cosine_ops" in d for d in indexes.values())
    assert not any("ivfflat" in d for d in indexes.values())
    assert any("gin" in d and "search_vector" in d for d in indexes.values())
    assert any("gin" in d and "tags" in d for d in indexes.values())
    # Sharding-ready: every index but the vector one leads with user_id.
    for name, definition in indexes.items():
        if "hnsw" in definition:
            continue
        cols = definition.split("(", 1)[1]
        assert cols.startswith("user_id"), name
    for table in ("memories", "memory_audit_log", "user_quotas"):
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
