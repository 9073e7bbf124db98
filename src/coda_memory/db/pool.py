"""The one database access object of a process: a connection pool and its transactions.

Every query against per-user tables runs inside :meth:`Database.user_tx`, which sets
``app.current_user_id`` for that transaction only; row-level security in PostgreSQL does the
isolation, so a bug in Python cannot read another user's rows. Jobs and key lookups use
:meth:`Database.system_tx` (no user: per-user tables read as empty; they go through SECURITY
DEFINER functions). ``coda_memory.runtime`` builds the one instance a process uses.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import ServiceUnavailable

DictCursor = psycopg.Cursor[DictRow]

CHECK_AFTER_IDLE_S = 1.0


class Database:
    """A small psycopg pool. Lambda handles one request at a time per environment, so the
    pool stays tiny there; the local runner and benchmarks call handlers from many threads."""

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 4,
        connect_timeout: float = 5.0,
        statement_timeout_ms: int = 10_000,
    ) -> None:
        self._statement_timeout_ms = statement_timeout_ms
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"connect_timeout": max(1, int(connect_timeout)), "autocommit": False},
            configure=self._configure,
            check=self._check,
            timeout=connect_timeout,
            open=False,
            name="coda-memory",
        )
        self._opened = False
        self._lock = threading.Lock()
        # when each pooled connection last finished a transaction cleanly
        self._last_ok: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()

    def _check(self, conn: psycopg.Connection) -> None:
        """Check a connection before handing it out -- unless it finished a transaction less
        than ``CHECK_AFTER_IDLE_S`` ago. The check is a round trip (0.2-0.8 ms on the bench
        machine, more across a network) on every request; a connection that just worked is
        alive, while one that sat idle (a Lambda environment thawed after minutes, a server
        restart, an idle-timeout kill) is checked and, if dead, replaced by the pool."""
        last = self._last_ok.get(conn)
        if last is not None and time.monotonic() - last < CHECK_AFTER_IDLE_S:
            return
        ConnectionPool.check_connection(conn)

    def _configure(self, conn: psycopg.Connection) -> None:
        register_vector(conn)
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', false)",
            (str(self._statement_timeout_ms),),
        )
        conn.commit()

    def _ensure_open(self) -> None:
        if not self._opened:
            with self._lock:
                if not self._opened:
                    self._pool.open(wait=False)
                    self._opened = True

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; database outages become :class:`ServiceUnavailable`."""
        self._ensure_open()
        try:
            with self._pool.connection() as conn:
                yield conn
                self._last_ok[conn] = time.monotonic()
        # PoolTimeout: no connection came in time (not an OperationalError)
        except (psycopg.OperationalError, psycopg.errors.QueryCanceled, PoolTimeout) as exc:
            raise ServiceUnavailable("database unavailable") from exc

    @contextmanager
    def user_tx(self, user_id: str, *, pipeline: bool = False) -> Iterator[DictCursor]:
        """A transaction scoped to one user: RLS sees only ``user_id``'s rows.

        With ``pipeline`` the connection is in pipeline mode: statements are sent without
        waiting for each answer, and the client waits only where it reads a result and at
        commit (errors surface there too). BEGIN and the user setting then ride along with
        the first real query instead of costing round trips of their own."""
        with self.transaction(pipeline=pipeline) as cur:
            set_user(cur, user_id)
            yield cur

    @contextmanager
    def transaction(self, *, pipeline: bool = False, statement_timeout_ms: int | None = None) -> Iterator[DictCursor]:
        """A transaction with no user set yet: per-user tables read as empty until
        :func:`set_user` scopes it (several users one after the other: ingest batches).
        ``statement_timeout_ms`` overrides the pool's timeout for this transaction only."""
        with self.connection() as conn, (conn.pipeline() if pipeline else nullcontext()), \
                conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            if statement_timeout_ms is not None:
                cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(statement_timeout_ms),))
            yield cur

    @contextmanager
    def system_tx(self, *, statement_timeout_ms: int | None = None) -> Iterator[DictCursor]:
        """A transaction with no user set: per-user tables read as empty (RLS); used for the
        SECURITY DEFINER functions (key lookup, audit of anonymous requests, jobs)."""
        with self.transaction(statement_timeout_ms=statement_timeout_ms) as cur:
            yield cur

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False


def set_user(cur: DictCursor, user_id: str) -> None:
    """Scope the rest of the transaction to ``user_id`` (``app.current_user_id``, transaction-
    local): from the next statement on, row-level security shows only that user's rows."""
    cur.execute("SELECT set_config('app.current_user_id', %s, true)", (user_id,))
