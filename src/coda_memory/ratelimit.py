"""Per-key token bucket. Shared through Redis when ``REDIS_URL`` is set (all Lambda
environments see one bucket per key); in-process otherwise, and as the fallback when Redis is
unreachable (rate limiting must not take the API down)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from .errors import RateLimited

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV rate/s, burst, cost. Uses the server clock so every caller agrees.
_LUA = """
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local cost = tonumber(ARGV[3])
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst; local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


@dataclass
class _Bucket:
    tokens: float
    ts: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, redis_url: str | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.enabled = rate > 0 and burst > 0
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._redis = None
        self._script = None
        self._redis_down_until = 0.0
        if self.enabled and redis_url:
            import redis

            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=0.2, socket_connect_timeout=0.2
            )
            self._script = self._redis.register_script(_LUA)

    def close(self) -> None:
        """Close the Redis connections (the limiter is not used afterwards)."""
        if self._redis is not None:
            self._redis.close()

    def check(self, key: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``key``'s bucket or raise :class:`RateLimited`."""
        if not self.enabled:
            return
        wait = self._take_shared(key, cost)
        if wait is None:
            wait = self._take_local(key, cost)
        if wait > 0:
            raise RateLimited("rate limit exceeded for this API key; retry later", retry_after=wait)

    def _take_shared(self, key: str, cost: float) -> float | None:
        if self._script is None or time.monotonic() < self._redis_down_until:
            return None
        try:
            return float(self._script(keys=[f"coda:rl:{key}"], args=[self.rate, self.burst, cost]))
        except Exception as exc:  # any Redis failure: fall back to the local bucket
            log.warning("rate limiter: redis unavailable (%s), using in-process buckets", type(exc).__name__)
            self._redis_down_until = time.monotonic() + 5
            return None

    def _take_local(self, key: str, cost: float) -> float:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.ts) * self.rate)
            bucket.ts = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate
