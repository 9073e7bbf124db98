"""Process-wide resources, created once per execution environment and reused by every
invocation: the database pool, the ONNX embedder, the rate limiter."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote, urlencode

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


def database_url_from_secret(value: str) -> str:
    """The PostgreSQL URL in a secret's value: a plain URL, ``{"url": ...}``, or the RDS shape
    ``{"username", "password", "host", "port", "dbname"[, "sslmode"]}`` (what the stack's
    migration function writes for the app role, and what rotation functions keep)."""
    value = value.strip()
    if not value.startswith("{"):
        return value
    data = json.loads(value)
    if "url" in data:
        return str(data["url"])
    user, password, host, dbname = (quote(str(data.get(k, d)), safe="") for k, d in (
        ("username", ""), ("password", ""), ("host", ""), ("dbname", "coda_memory")))
    url = f"postgresql://{user}:{password}@{host}:{data.get('port', 5432)}/{dbname}"
    if data.get("sslmode"):
        url += "?" + urlencode({"sslmode": data["sslmode"]})
    return url


def database_url(settings: Settings | None = None) -> str:
    """``DATABASE_URL``, else the Secrets Manager secret named by ``DATABASE_URL_SECRET``."""
    settings = settings or get_settings()
    if settings.database_url is not None and settings.database_url.get_secret_value():
        return settings.database_url.get_secret_value()
    if settings.database_url_secret:
        from aws_lambda_powertools.utilities.parameters import get_secret

        value = get_secret(settings.database_url_secret, max_age=300)
        return database_url_from_secret(value.decode() if isinstance(value, bytes) else str(value))
    raise ServiceUnavailable("database is not configured (set DATABASE_URL)")


def is_proxy_url(url: str) -> bool:
    """True for an RDS Proxy endpoint (``<name>.proxy-<id>.<region>.rds.amazonaws.com``)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        host = str(conninfo_to_dict(url).get("host") or "")
    except Exception:  # a malformed URL fails on connect with a clear error
        return False
    return any(".proxy-" in h for h in host.split(","))


def _build_database() -> Database:
    from .db.pool import Database

    settings = get_settings()
    url = database_url(settings)
    return Database(
        url,
        max_size=settings.db_pool_max,
        connect_timeout=settings.db_connect_timeout_s,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        behind_proxy=settings.db_proxy if settings.db_proxy is not None else is_proxy_url(url),
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
    """Close and forget what holds a socket or a per-environment identity -- the database pool
    and the rate limiter's Redis client -- so the next use opens new ones. For a SnapStart
    restore: every environment restored from one snapshot would otherwise share the same
    (dead) connections. The model and the settings stay."""
    db = database.peek()
    database.clear()
    if db is not None:
        db.close()
    limiter = rate_limiter.peek()
    rate_limiter.clear()
    if limiter is not None:
        try:
            limiter.close()
        except Exception:  # noqa: S110 - a dead socket may fail to close; it is dropped anyway
            pass


def reset() -> None:
    """Drop every cached resource (tests switch configuration between cases)."""
    from . import auth
    from .config import reset_settings

    drop_connections()
    embedder.clear()
    reset_settings()
    auth.clear_cache()
