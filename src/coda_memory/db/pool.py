"""The one database access object of a process: a connection pool and its transactions.

Every query against per-user tables runs inside :meth:`Database.user_tx`, which sets
``app.current_user_id`` for that transaction only; row-level security in PostgreSQL does the
isolation, so a bug in Python cannot read another user's rows. Jobs and key lookups use
:meth:`Database.system_tx` (no user: per-user tables read as empty; they go through SECURITY
DEFINER functions). ``coda_memory.runtime`` builds the one instance a process uses.

Proxy-friendly (RDS Proxy multiplexes transactions of many clients over few server
connections, and *pins* a client to one server connection for good when it sees session state):
nothing here changes the session. The statement timeout and pgvector's ``hnsw.iterative_scan``
are set transaction-locally (``set_config(..., true)``) in the transaction's first statement,
together with the user; behind a proxy psycopg's server-side prepared statements are off too
(``prepare_threshold=None``), since a prepared statement is per server connection.
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
        behind_proxy: bool = False,
    ) -> None:
        self._timeout_setting = str(statement_timeout_ms)
        self.behind_proxy = behind_proxy
        kwargs: dict[str, object] = {"connect_timeout": max(1, int(connect_timeout)), "autocommit": False}
        if behind_proxy:
            # psycopg prepares a query server-side after 5 executions on a connection; through
            # a multiplexing proxy the next transaction may run on another server connection,
            # so the proxy must re-prepare or pin. Unnamed statements only.
            kwargs["prepare_threshold"] = None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs=kwargs,
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
        # Type lookup only (a catalog query); no session settings: see the module docstring.
        register_vector(conn)
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
    def user_tx(self, user_id: str, *, pipeline: bool = False, read_only: bool = False) -> Iterator[DictCursor]:
        """A transaction scoped to one user: RLS sees only ``user_id``'s rows.

        With ``pipeline`` the connection is in pipeline mode: statements are sent without
        waiting for each answer, and the client waits only where it reads a result and at
        commit (errors surface there too). BEGIN and the user setting then ride along with
        the first real query instead of costing round trips of their own. ``read_only``
        starts it with ``BEGIN READ ONLY`` (what a reader endpoint can run; a write in it
        fails)."""
        with self.transaction(pipeline=pipeline, user_id=user_id, read_only=read_only) as cur:
            yield cur

    @contextmanager
    def transaction(
        self, *, pipeline: bool = False, user_id: str | None = None, statement_timeout_ms: int | None = None,
        read_only: bool = False,
    ) -> Iterator[DictCursor]:
        """A transaction with no user set yet: per-user tables read as empty until
        :func:`set_user` scopes it (several users one after the other: ingest batches).
        ``statement_timeout_ms`` overrides the pool's timeout for this transaction only.

        Its first statement sets the statement timeout and ``hnsw.iterative_scan`` for this
        transaction only (and the user, when given): one statement, so a user transaction pays
        no extra round trip for them, and no session state is left for a proxy to pin on."""
        timeout = self._timeout_setting if statement_timeout_ms is None else str(statement_timeout_ms)
        with self.connection() as conn, _read_only(conn, read_only), \
                (conn.pipeline() if pipeline else nullcontext()), \
                conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT set_config('statement_timeout', %s, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('app.current_user_id', %s, true)",
                (timeout, user_id or ""),
            )
            yield cur

    @contextmanager
    def system_tx(self, *, statement_timeout_ms: int | None = None) -> Iterator[DictCursor]:
        """A transaction with no user set: per-user tables read as empty (RLS); used for the
        SECURITY DEFINER functions (key lookup, audit of anonymous requests, jobs)."""
        with self.transaction(statement_timeout_ms=statement_timeout_ms) as cur:
            yield cur

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._pool.close()
                self._opened = False


@contextmanager
def _read_only(conn: psycopg.Connection, read_only: bool) -> Iterator[None]:
    """psycopg's ``read_only`` makes its next BEGIN a ``BEGIN READ ONLY`` (a client-side
    attribute, not a session SET: nothing for a proxy to pin on); put back before the
    connection returns to the pool."""
    if not read_only:
        yield
        return
    before = conn.read_only  # None: the server's default (a reader's is read-only anyway)
    conn.read_only = True
    try:
        yield
    finally:
        try:
            conn.read_only = before
        except psycopg.Error:  # still in a transaction or broken: never hand it out again
            conn.close()


def set_user(cur: DictCursor, user_id: str) -> None:
    """Scope the rest of the transaction to ``user_id`` (``app.current_user_id``, transaction-
    local): from the next statement on, row-level security shows only that user's rows."""
    cur.execute("SELECT set_config('app.current_user_id', %s, true)", (user_id,))


def is_proxy_url(url: str) -> bool:
    """True for an RDS Proxy endpoint (``<name>.proxy-<id>.<region>.rds.amazonaws.com``)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        host = str(conninfo_to_dict(url).get("host") or "")
    except Exception:  # a malformed URL fails on connect with a clear error
        return False
    return any(".proxy-" in h for h in host.split(","))
