"""The connection pool against the real server: idle connections are checked before use and a
dead one is replaced without failing the request; a connection that just worked is handed out
without the check's round trip."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from coda_memory.db import pool as pool_module
from coda_memory.db.pool import Database


@pytest.fixture()
def checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = ConnectionPool.check_connection

    def counting(conn: psycopg.Connection) -> None:
        calls.append(1)
        real(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counting))
    monkeypatch.setattr(pool_module, "CHECK_AFTER_IDLE_S", 0.3)
    return calls


def _backend_pid(db: Database, user: str) -> int:
    with db.user_tx(user) as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        row = cur.fetchone()
    assert row is not None
    return int(row["pid"])


def test_recently_used_connection_skips_the_check(postgres, checks):
    db = Database(postgres.app_url, max_size=1)
    try:
        first = _backend_pid(db, "pool-user")
        checks.clear()
        assert _backend_pid(db, "pool-user") == first  # same connection, used just now
        assert checks == []
        time.sleep(0.4)
        assert _backend_pid(db, "pool-user") == first
        assert checks == [1]  # idle past the window: checked
    finally:
        db.close()


def test_dead_idle_connection_is_replaced_without_an_error(postgres, admin_conn, checks):
    db = Database(postgres.app_url, max_size=1)
    try:
        first = _backend_pid(db, "pool-user")
        admin_conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        time.sleep(0.4)
        second = _backend_pid(db, "pool-user")  # the check finds it dead; the pool reconnects
        assert second != first
    finally:
        db.close()


# --- proxy-friendly sessions (RDS Proxy pins a client on session state) ------------------------


def _settings(conn: psycopg.Connection) -> tuple[str, str]:
    row = conn.execute("SELECT current_setting('statement_timeout'), "
                       "current_setting('hnsw.iterative_scan', true)").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def test_timeout_and_iterative_scan_hold_inside_transactions_and_never_for_the_session(postgres):
    db = Database(postgres.app_url, max_size=1, statement_timeout_ms=1234)
    try:
        with db.user_tx("pool-user") as cur:
            cur.execute("SELECT current_setting('statement_timeout') AS t, "
                        "current_setting('hnsw.iterative_scan') AS s, "
                        "current_setting('app.current_user_id') AS u")
            assert cur.fetchone() == {"t": "1234ms", "s": "relaxed_order", "u": "pool-user"}
        with db.system_tx() as cur:
            cur.execute("SELECT current_setting('statement_timeout') AS t")
            assert cur.fetchone() == {"t": "1234ms"}
        with db.connection() as conn:  # the same server session, outside our transactions
            timeout, scan = _settings(conn)
            conn.rollback()
        assert timeout != "1234ms"
        assert scan in ("", "off")
    finally:
        db.close()


def test_statement_timeout_still_cancels_a_long_statement(postgres):
    from coda_memory.errors import ServiceUnavailable

    db = Database(postgres.app_url, max_size=1, statement_timeout_ms=150)
    try:
        with pytest.raises(ServiceUnavailable), db.user_tx("pool-user") as cur:
            cur.execute("SELECT pg_sleep(2)")
        with db.user_tx("pool-user") as cur:  # the connection is usable afterwards
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == {"one": 1}
    finally:
        db.close()


@pytest.mark.parametrize("behind_proxy", [False, True])
def test_no_server_side_prepared_statements_behind_a_proxy(postgres, behind_proxy):
    db = Database(postgres.app_url, max_size=1, behind_proxy=behind_proxy)
    try:
        for _ in range(8):  # psycopg prepares a statement on its 5th execution by default
            with db.user_tx("pool-user") as cur:
                cur.execute("SELECT count(*) AS n FROM memories WHERE content_type = %s", ("fact",))
        with db.connection() as conn:
            prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
            conn.rollback()
        assert prepared is not None
        assert (prepared[0] == 0) is behind_proxy
    finally:
        db.close()
