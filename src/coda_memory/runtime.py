"""Process-wide resources, created once per execution environment and reused by every
invocation: settings, the database pool, the ONNX embedder, the rate limiter."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

from .config import Settings, get_settings
from .errors import ServiceUnavailable

if TYPE_CHECKING:
    from .db.pool import Database
    from .embedder import Embedder
    from .ratelimit import RateLimiter

_lock = threading.Lock()


def _resolve_database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if settings.database_url_secret:
        from aws_lambda_powertools.utilities.parameters import get_secret

        value = get_secret(settings.database_url_secret, max_age=300)
        return value.decode() if isinstance(value, bytes) else str(value)
    raise ServiceUnavailable("database is not configured (set DATABASE_URL)")


@lru_cache(maxsize=1)
def database() -> Database:
    from .db.pool import Database

    settings = get_settings()
    with _lock:
        return Database(
            _resolve_database_url(settings),
            max_size=settings.db_pool_max,
            connect_timeout=settings.db_connect_timeout_s,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )


@lru_cache(maxsize=1)
def embedder() -> Embedder:
    from .embedder import get_embedder

    settings = get_settings()
    with _lock:
        return get_embedder(settings.model_dir, settings.embed_threads)


@lru_cache(maxsize=1)
def rate_limiter() -> RateLimiter:
    from .ratelimit import RateLimiter

    settings = get_settings()
    return RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, settings.redis_url)


def reset() -> None:
    """Drop every cached resource (tests switch configuration between cases)."""
    from .config import reset_settings

    if database.cache_info().currsize:
        database().close()
    for cached in (database, embedder, rate_limiter):
        cached.cache_clear()
    reset_settings()
    from . import auth

    auth.clear_cache()
