"""Process-wide resources, created once per execution environment and reused by every
invocation: the database pool, the ONNX embedder, the rate limiter."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from .config import Settings, get_settings
from .errors import ServiceUnavailable

if TYPE_CHECKING:
    from .db.pool import Database
    from .embedder import Embedder
    from .ratelimit import RateLimiter

T = TypeVar("T")


class _Once(Generic[T]):
    """A lazily built singleton; concurrent first calls build it exactly once."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
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
            self._value = None


def _resolve_database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if settings.database_url_secret:
        from aws_lambda_powertools.utilities.parameters import get_secret

        value = get_secret(settings.database_url_secret, max_age=300)
        return value.decode() if isinstance(value, bytes) else str(value)
    raise ServiceUnavailable("database is not configured (set DATABASE_URL)")


def _build_database() -> Database:
    from .db.pool import Database

    settings = get_settings()
    return Database(
        _resolve_database_url(settings),
        max_size=settings.db_pool_max,
        connect_timeout=settings.db_connect_timeout_s,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )


def _build_embedder() -> Embedder:
    from .embedder import get_embedder

    settings = get_settings()
    return get_embedder(settings.model_dir, settings.embed_threads)


def _build_rate_limiter() -> RateLimiter:
    from .ratelimit import RateLimiter

    settings = get_settings()
    return RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, settings.redis_url)


database: _Once[Database] = _Once(_build_database)
embedder: _Once[Embedder] = _Once(_build_embedder)
rate_limiter: _Once[RateLimiter] = _Once(_build_rate_limiter)


def prewarm() -> None:
    """Build the embedder and the database pool in a background thread, so that loading the
    model overlaps the rest of the cold start (Lambda init, local runner start-up). On by
    default on Lambda, else with ``MEMORY_PREWARM=1``; failures are left for the first
    request to report."""
    import os

    wanted = os.environ.get("MEMORY_PREWARM", "1" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "0")
    if wanted.lower() not in ("1", "true", "yes"):
        return

    def work() -> None:
        for once in (embedder, database):
            try:
                once()
            except Exception:  # noqa: S112 - reported by the request that needs it
                continue

    threading.Thread(target=work, name="coda-prewarm", daemon=True).start()


def reset() -> None:
    """Drop every cached resource (tests switch configuration between cases)."""
    from . import auth
    from .config import reset_settings

    db = database.peek()
    if db is not None:
        db.close()
    for once in (database, embedder, rate_limiter):
        once.clear()
    reset_settings()
    auth.clear_cache()
