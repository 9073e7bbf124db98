"""Migrations and row-level security, checked against the real database with raw SQL."""

from __future__ import annotations

import hashlib
import re
import tarfile
import uuid
from pathlib import Path

import psycopg
import pytest

from coda_memory.db.migrate import BASELINE_VERSION, MigrationError, apply_migrations, discover, functions
from tests.dbrows import insert_memory, scratch_database


def _as_user(conn: psycopg.Connection, user: str | None) -> None:
    if user is not None:
        conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))


def test_migrations_are_recorded_and_idempotent(postgres, admin_conn):
    versions = [BASELINE_VERSION] + [m.version for m in discover()]
    assert versions == sorted(versions)
    assert apply_migrations(postgres.admin_url) == []  # second run: nothing to do
    assert apply_migrations(postgres.admin_url) == []
    recorded = [r[0] for r in admin_conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert recorded == versions
    applied = dict(admin_conn.execute("SELECT name, checksum FROM schema_functions").fetchall())
    assert applied == {f.name: f.checksum for f in functions()}


def test_schema_has_no_shared_graph_and_user_leading_keys(admin_conn):
    indexes = dict(
        admin_conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories'"
        ).fetchall()
    )
    # no graph shared by users (migration 0030: searchable vectors live in memory_vectors, a
    # graph per large user); lexical search reads memory_postings
    assert not any("hnsw" in d or "ivfflat" in d for d in indexes.values())
    assert not any("gin" in d and "search_vector" in d for d in indexes.values())
    assert any("gin" in d and "tags" in d for d in indexes.values())
    # Sharding-ready: every index but the vector one leads with user_id -- and memories_id, the
    # global id lookup that keeps an imported id from shadowing another user's memory (on a
    # sharded database: a global index / a lookup on every shard, run only by imports with ids).
    for name, definition in indexes.items():
        if name == "memories_id":
            continue
        cols = definition.split("(", 1)[1]
        assert cols.startswith("user_id"), name
    # the postings have no primary key (migration 0031): their one index is the key
    postings = [r[0] for r in admin_conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'memory_postings'")]
    assert len(postings) == 1 and postings[0].split("(", 1)[1].startswith("user_id")
    for table in ("memories", "memory_audit_log", "user_quotas", "memory_history",
                  "memory_lexicon", "memory_lexicon_totals", "memory_vectors", "memory_vector_graphs"):
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
        id_a, id_b = insert_memory(admin_conn, a, "alpha secret"), insert_memory(admin_conn, b, "bravo secret")
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
            insert_memory(app_conn, b, "forged")
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
        insert_memory(admin_conn, "", "row with empty user")
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
    """memories and memory_vectors are hash-partitioned by user_id: a user's rows and its own
    graph's partial index live in one partition, and every partition is locked to coda_app."""

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
        vector_parts = admin_conn.execute(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                      has_table_privilege('coda_app', c.oid, 'SELECT')
               FROM pg_partition_tree('memory_vectors') t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"""
        ).fetchall()
        assert len(vector_parts) == 32
        assert all(rls and forced and not readable for _, rls, forced, readable in vector_parts)

    def test_service_role_cannot_read_a_partition_directly(self, app_conn, admin_conn):
        user = f"part-{uuid.uuid4().hex[:8]}"
        insert_memory(admin_conn, user, "kept behind the parent's policy")
        partition = admin_conn.execute(
            "SELECT tableoid::regclass::text FROM memories WHERE user_id = %s", (user,)
        ).fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app_conn.transaction():
            _as_user(app_conn, user)
            app_conn.execute(f'SELECT * FROM "{partition}"')

    def test_a_users_vector_search_reads_one_partition(self, app_conn, admin_conn):
        user = f"part-{uuid.uuid4().hex[:8]}"
        insert_memory(admin_conn, user, "one row")
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


def test_state_and_expiry_predicates_are_inlined(app_conn, admin_conn):
    """memory_searchable, memory_visible and memory_expired (the one definition of expiry)
    are plain SQL the planner inlines: a query over them filters on the columns, calls no
    function per row, and still applies expiry."""
    user = f"inline-{uuid.uuid4().hex[:8]}"
    insert_memory(admin_conn, user, "one row")
    with app_conn.transaction():
        _as_user(app_conn, user)
        plan = "\n".join(r[0] for r in app_conn.execute(
            """EXPLAIN (VERBOSE, COSTS OFF)
               SELECT m.id FROM memories m
               WHERE m.user_id = %s AND memory_searchable(m) AND memory_visible(m, NULL::search_filters)""",
            (user,),
        ))
    assert "memory_" not in plan.replace("memories_", "").replace("memories", ""), plan
    assert "expires_at" in plan, plan


# --- the baseline and the function files ------------------------------------------------------

# The numbered migrations 0001-0008 as the releases before the baseline shipped them (frozen).
OLD_MIGRATIONS_ARCHIVE = Path(__file__).parents[1] / "fixtures" / "migrations_0001_0008.tar.gz"


@pytest.fixture(scope="module")
def old_migrations(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("old")
    with tarfile.open(OLD_MIGRATIONS_ARCHIVE) as archive:
        archive.extractall(target, filter="data")
    return target / "migrations_0001_0008"


def _apply_old_release(url: str, old: Path, up_to: int) -> None:
    """What the migrator of the releases before the baseline did: apply 0001..``up_to``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                     "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for path in sorted(old.glob("*.sql")):
            version = int(path.name.split("_", 1)[0])
            if version <= up_to:
                with conn.transaction():
                    conn.execute(path.read_bytes())
                    conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, 'old')", (version, path.stem))


def _catalog(url: str) -> dict[str, object]:
    """What the service depends on: columns, indexes, policies, privileges, storage, functions."""
    queries = {
        "columns": """SELECT table_name, column_name, data_type, column_default, is_nullable, generation_expression
                      FROM information_schema.columns WHERE table_schema = 'public'
                        AND table_name <> 'schema_functions' ORDER BY 1, 2""",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
        "policies": "SELECT tablename, policyname, roles::text, qual, with_check FROM pg_policies ORDER BY 1, 2",
        "tables": """SELECT relname, relkind, relrowsecurity, relforcerowsecurity, reloptions::text, relacl::text
                     FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
                       AND relname <> 'schema_functions' ORDER BY 1""",
        "storage": """SELECT attrelid::regclass::text, attname, attstorage FROM pg_attribute
                      WHERE attrelid = 'memories'::regclass AND attnum > 0 ORDER BY 1, 2""",
        "functions": """SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
                               p.proacl::text
                        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
                          AND NOT EXISTS (SELECT 1 FROM pg_depend d  -- not an extension's own
                                          WHERE d.objid = p.oid AND d.deptype = 'e') ORDER BY 1, 2""",
    }
    with psycopg.connect(url) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}  # type: ignore[arg-type]


def test_a_database_of_the_old_migrations_upgrades_to_what_the_baseline_builds(postgres, old_migrations):
    """The baseline is migrations 0001-0008 in one file: a database that applied them and a new
    one end up with the same catalog, and the old one only gains the function files."""
    with scratch_database(postgres) as old, scratch_database(postgres) as new:
        _apply_old_release(old, old_migrations, BASELINE_VERSION)
        assert BASELINE_VERSION not in apply_migrations(old)  # nothing before the baseline re-runs
        assert apply_migrations(new)[0] == BASELINE_VERSION
        assert _catalog(old) == _catalog(new)


def test_a_database_older_than_the_baseline_is_refused(postgres, old_migrations):
    with scratch_database(postgres) as url:
        _apply_old_release(url, old_migrations, 6)
        with pytest.raises(MigrationError, match="older than the baseline"):
            apply_migrations(url)


def test_editing_a_function_file_reapplies_it_and_touches_no_table(postgres, tmp_path):
    with scratch_database(postgres) as url:
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            insert_memory(conn, "fn-user", "a memory that must stay as it is")
            before = conn.execute("SELECT id, content, xmin::text FROM memories").fetchall()
        edited = tmp_path / "functions"
        edited.mkdir()
        for f in functions():
            (edited / f"{f.name}.sql").write_text(f.sql)
        target = edited / "or_tsquery.sql"
        target.write_text(target.read_text().replace(
            "CREATE OR REPLACE FUNCTION or_tsquery(q text) RETURNS tsquery",
            "CREATE OR REPLACE FUNCTION or_tsquery(q text) RETURNS tsquery\n-- edited"))
        from coda_memory.db.migrate import MIGRATIONS_DIR

        assert apply_migrations(url, MIGRATIONS_DIR, edited) == []
        with psycopg.connect(url, autocommit=True) as conn:
            body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'or_tsquery'").fetchone()[0]
            recorded = conn.execute("SELECT checksum FROM schema_functions WHERE name = 'or_tsquery'").fetchone()[0]
            assert conn.execute("SELECT id, content, xmin::text FROM memories").fetchall() == before
            # the function still works for the service role's queries
            assert conn.execute("SELECT or_tsquery('zebra crossing')::text").fetchone()[0] == "'cross' | 'zebra'"
        assert recorded == hashlib.sha256(target.read_text().encode()).hexdigest()
        assert "-- edited" not in body  # the comment sits before the body: the body itself is unchanged
        assert apply_migrations(url, MIGRATIONS_DIR, edited) == []  # unchanged files are not re-applied


def test_partitioning_migration_keeps_every_row(postgres, old_migrations):
    """0007 (now part of the baseline) copied the unpartitioned table: rows, generated tsvector,
    flags and policies survived. Kept for databases that still take that step."""
    with scratch_database(postgres) as url:
        _apply_old_release(url, old_migrations, 6)
        with psycopg.connect(url, autocommit=True) as conn:
            ids = {insert_memory(conn, f"user-{i % 7}", f"memory number {i} about tea") for i in range(60)}
            conn.execute("UPDATE memories SET deleted = true, deleted_at = now() WHERE content LIKE '%%number 1%%'")
            snapshot = conn.execute(
                "SELECT id, user_id, content, deleted, search_vector::text FROM memories ORDER BY id"
            ).fetchall()
            conn.execute((old_migrations / "0007_memories_hash_partitions.sql").read_bytes())
            after = conn.execute(
                "SELECT id, user_id, content, deleted, search_vector::text FROM memories ORDER BY id"
            ).fetchall()
            assert after == snapshot and {r[0] for r in after} == ids
            assert conn.execute("SELECT to_regclass('memories_unpartitioned')").fetchone() == (None,)
            policies = {r[0] for r in conn.execute("SELECT policyname FROM pg_policies WHERE tablename = 'memories'")}
            assert policies == {"memories_by_user", "memories_owner"}
