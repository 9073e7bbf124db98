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
