"""The one owner of process-wide state: everything an execution environment builds once and
reuses across invocations -- the database pool (and the search database's, when searches run
on a reader), the ONNX embedder, the rate limiter, the Redis access counter, the API key
authenticator (with its cache) and the worker threads of the search path.

Each resource is created lazily on first use, and :func:`reset` closes and forgets all of
them (tests switching configuration; a SnapStart restore). Nothing else in the package keeps
module-level caches, pools or threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .config import get_settings, reset_settings

if TYPE_CHECKING:
    from .access_counts import AccessCounter
    from .auth import Authenticator
    from .db.pool import Database
    from .embedder import Embedder
    from .ratelimit import RateLimiter

T = TypeVar("T")


class _Once(Generic[T]):
    """A lazily built singleton; concurrent first calls build it exactly once. ``close`` is
    how :func:`reset` releases what the value holds (connections, threads)."""

    def __init__(self, factory: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._factory = factory
        self._close = close
        self._value: T | None = None
        self._lock = threading.Lock()

    def __call__(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value

    def peek(self) -> T | None:
        return self._value

    def clear(self) -> None:
        with self._lock:
            value, self._value = self._value, None
        if value is not None and self._close is not None:
            self._close(value)


def _database_at(url: str) -> Database:
    from .db.pool import Database, is_proxy_url

    settings = get_settings()
    return Database(
        url,
        max_size=settings.db_pool_max,
        connect_timeout=settings.db_connect_timeout_s,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        behind_proxy=settings.db_proxy if settings.db_proxy is not None else is_proxy_url(url),
    )


def _build_database() -> Database:
    from .aws_secrets import database_url

    return _database_at(database_url(get_settings()))


class _SearchDatabase:
    """Where searches run: a pool of its own for ``MEMORY_SEARCH_DATABASE_URL`` (e.g. an Aurora
    reader endpoint), else the writer's pool (``own`` is None)."""

    def __init__(self) -> None:
        from .aws_secrets import search_database_url

        url = search_database_url(get_settings())
        self.own = _database_at(url) if url else None

    def get(self) -> Database:
        return self.own if self.own is not None else database()

    def close(self) -> None:
        if self.own is not None:
            self.own.close()


class _AccessCounterSlot:
    """The Redis access counter when ``MEMORY_ACCESS_STATS=redis`` and ``REDIS_URL`` are set,
    else None (access statistics are then written in the search's transaction)."""

    def __init__(self) -> None:
        settings = get_settings()
        self.counter: AccessCounter | None = None
        if settings.access_stats == "redis" and settings.redis_url:
            from .access_counts import AccessCounter

            self.counter = AccessCounter(settings.redis_url)

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()


def _build_embedder() -> Embedder:
    from .embedder import load_embedder

    settings = get_settings()
    return load_embedder(settings.model_dir, settings.embed_threads, settings.embed_parallel)


def _build_rate_limiter() -> RateLimiter:
    from .ratelimit import RateLimiter

    settings = get_settings()
    return RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, settings.redis_url)


def _build_authenticator() -> Authenticator:
    from .auth import Authenticator, service_keys

    return Authenticator(service_keys(get_settings()), lambda: database())


def _build_search_workers() -> ThreadPoolExecutor:
    # The lexical query of a search runs here while the request thread embeds the query; one
    # worker per pooled connection, since every search in flight holds one of those.
    return ThreadPoolExecutor(max_workers=get_settings().db_pool_max, thread_name_prefix="coda-lexical")


database: _Once[Database] = _Once(_build_database, lambda db: db.close())
embedder: _Once[Embedder] = _Once(_build_embedder, lambda e: e.close())
rate_limiter: _Once[RateLimiter] = _Once(_build_rate_limiter, lambda r: r.close())
authenticator: _Once[Authenticator] = _Once(_build_authenticator)
search_workers: _Once[ThreadPoolExecutor] = _Once(_build_search_workers, lambda p: p.shutdown(wait=True))
_search_database: _Once[_SearchDatabase] = _Once(_SearchDatabase, lambda s: s.close())
_access_counter: _Once[_AccessCounterSlot] = _Once(_AccessCounterSlot, lambda s: s.close())


def search_database() -> Database:
    """The pool searches run on: the search (reader) database if configured, else the writer."""
    return _search_database().get()


def access_counter() -> AccessCounter | None:
    """The Redis access counter, or None when access statistics are written in-transaction."""
    return _access_counter().counter

# In the order reset() releases them: users of the pool before the pool.
_RESOURCES: tuple[_Once[Any], ...] = (
    search_workers, authenticator, rate_limiter, _access_counter, embedder, _search_database, database)
# What holds a socket or a cache timed by the monotonic clock (drop_connections).
_PER_ENVIRONMENT: tuple[_Once[Any], ...] = (authenticator, rate_limiter, _access_counter, _search_database, database)


def prewarm() -> None:
    """Build the embedder and the database pool in a background thread, so that loading the
    model overlaps the rest of the cold start (Lambda init, local runner start-up). On by
    default on Lambda, else with ``MEMORY_PREWARM=1``; failures are left for the first
    request to report."""
    from .config import on_lambda

    global _prewarm_thread
    wanted = os.environ.get("MEMORY_PREWARM", "1" if on_lambda() else "0")
    if wanted.lower() not in ("1", "true", "yes"):
        return
    # A SnapStart init runs once, at publish time, for a snapshot: a pool opened then would be
    # closed before the snapshot anyway (snapstart.before_snapshot), so load the model only.
    snap_init = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start"
    targets: tuple[_Once[Any], ...] = (embedder,) if snap_init else (embedder, database)

    def work() -> None:
        for once in targets:
            try:
                once()
            except Exception:  # noqa: S112 - reported by the request that needs it
                continue

    _prewarm_thread = threading.Thread(target=work, name="coda-prewarm", daemon=True)
    _prewarm_thread.start()


_prewarm_thread: threading.Thread | None = None


def wait_prewarm(timeout_s: float = 60.0) -> None:
    """Wait for :func:`prewarm`'s thread (before a SnapStart snapshot: the loaded model goes
    into the snapshot, not a half-loaded one)."""
    thread = _prewarm_thread
    if thread is not None:
        thread.join(timeout_s)


def drop_connections() -> None:
    """Close and forget what holds a socket or a cache timed by ``time.monotonic()`` -- the
    database pool, the rate limiter's Redis client and local buckets, the authenticator's key
    cache -- so the next use builds new ones. For a SnapStart restore: every environment
    restored from one snapshot would otherwise share the same (dead) connections, and a
    restored environment's monotonic clock does not continue the snapshot's. The model, the
    search workers and the settings stay."""
    for once in _PER_ENVIRONMENT:
        once.clear()


def reset() -> None:
    """Close and forget every resource and the settings: the next use rebuilds them from the
    environment as it is now."""
    for once in _RESOURCES:
        once.clear()
    reset_settings()
