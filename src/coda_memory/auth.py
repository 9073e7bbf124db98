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
from dataclasses import dataclass

from .config import get_settings
from .errors import Forbidden, Unauthorized

_CACHE_TTL_S = 60.0
_cache: dict[str, tuple[float, Principal | None]] = {}
_cache_lock = threading.Lock()
_service_digests: list[bytes] | None = None


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``key_id`` for audit, ``user_id`` when the key is bound to one user."""

    key_id: str
    user_id: str | None = None

    @property
    def is_service(self) -> bool:
        return self.user_id is None

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


def _load_service_digests() -> list[bytes]:
    global _service_digests
    if _service_digests is None:
        settings = get_settings()
        keys: list[str] = []
        if settings.api_key is not None and settings.api_key.get_secret_value():
            keys.append(settings.api_key.get_secret_value())
        if settings.api_key_secret:
            from aws_lambda_powertools.utilities.parameters import get_secret

            raw = get_secret(settings.api_key_secret, max_age=300)
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            keys.extend([parsed] if isinstance(parsed, str) else [str(k) for k in parsed])
        _service_digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]
    return _service_digests


def authenticate(api_key: str | None) -> Principal:
    """Resolve ``X-API-Key`` to a :class:`Principal`, or raise 401."""
    if not api_key:
        raise Unauthorized("missing X-API-Key header")
    if len(api_key) > 512:
        raise Unauthorized("invalid API key")
    digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()
    # Compare against every service key without early exit.
    matched = False
    for candidate in _load_service_digests():
        matched |= hmac.compare_digest(digest, candidate)
    if matched:
        return Principal(key_id="service:" + digest.hex()[:12])
    principal = _lookup_stored_key(digest.hex())
    if principal is None:
        raise Unauthorized("invalid API key")
    return principal


def _lookup_stored_key(key_hash: str) -> Principal | None:
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key_hash)
        if hit and hit[0] > now:
            return hit[1]
    from .runtime import database

    with database().system_tx() as cur:
        cur.execute("SELECT key_id, user_id FROM resolve_api_key(%s)", (key_hash,))
        row = cur.fetchone()
    principal = Principal(key_id=str(row["key_id"]), user_id=row["user_id"]) if row else None
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        # Unknown keys are remembered briefly, so a key created a moment ago works soon.
        _cache[key_hash] = (now + (_CACHE_TTL_S if principal else 5.0), principal)
    return principal


def clear_cache() -> None:
    global _service_digests
    with _cache_lock:
        _cache.clear()
    _service_digests = None
