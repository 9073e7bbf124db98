"""API keys. Service keys (``MEMORY_API_KEY`` or a Secrets Manager secret) may act for any
user; keys stored hashed in ``api_keys`` may be bound to one user. Keys are compared as SHA-256
digests in constant time and never logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .aws_secrets import secret_value
from .config import Settings
from .db import keys
from .errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from .db.pool import Database

_CACHE_TTL_S = 60.0
_UNKNOWN_TTL_S = 5.0
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``key_id`` for audit, ``user_id`` when the key is bound to one user."""

    key_id: str
    user_id: str | None = None

    def authorize(self, user_id: str) -> None:
        """Raise 403 unless this key may act for ``user_id``."""
        if self.user_id is not None and not hmac.compare_digest(
            self.user_id.encode(), user_id.encode()
        ):
            raise Forbidden(
                "this API key is not allowed to act for that user_id", details={"user_id": user_id}
            )


@dataclass(frozen=True)
class Caller:
    """Who asked, for authorisation and the audit log (never the key itself)."""

    principal: Principal
    ip: str | None = None
    request_id: str | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key() -> str:
    """A new random key (256 bits), URL-safe."""
    return "cm_" + secrets.token_urlsafe(32)


def service_keys(settings: Settings) -> list[str]:
    """The service keys: ``MEMORY_API_KEY`` and/or the secret ``MEMORY_API_KEY_SECRET`` (a
    string, or a JSON list of strings)."""
    keys: list[str] = []
    if settings.api_key is not None and settings.api_key.get_secret_value():
        keys.append(settings.api_key.get_secret_value())
    if settings.api_key_secret:
        text = secret_value(settings.api_key_secret)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        keys.extend([parsed] if isinstance(parsed, str) else [str(k) for k in parsed])
    return [k for k in keys if k]


class Authenticator:
    """Resolves ``X-API-Key`` to a :class:`Principal`: service keys from the settings, else a
    key stored hashed in the database (looked up through ``resolve_api_key`` and cached for a
    minute; unknown keys for a few seconds, so a key created a moment ago works soon).
    ``coda_memory.runtime.authenticator()`` holds the process's one instance."""

    def __init__(self, service_keys: list[str], database: Callable[[], Database]) -> None:
        self._service_digests = [hashlib.sha256(k.encode()).digest() for k in service_keys]
        self._database = database
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, api_key: str | None) -> Principal:
        """The caller behind ``api_key``, or raise 401."""
        if not api_key:
            raise Unauthorized("missing X-API-Key header")
        if len(api_key) > 512:
            raise Unauthorized("invalid API key")
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()
        # Compare against every service key without early exit.
        matched = False
        for candidate in self._service_digests:
            matched |= hmac.compare_digest(digest, candidate)
        if matched:
            return Principal(key_id="service:" + digest.hex()[:12])
        principal = self._stored(digest.hex())
        if principal is None:
            raise Unauthorized("invalid API key")
        return principal

    def _stored(self, key_hash: str) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_hash)
            if hit and hit[0] > now:
                return hit[1]
        with self._database().system_tx() as cur:
            found = keys.resolve(cur, key_hash)
        principal = Principal(key_id=found[0], user_id=found[1]) if found else None
        with self._lock:
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            self._cache[key_hash] = (now + (_CACHE_TTL_S if principal else _UNKNOWN_TTL_S), principal)
        return principal
