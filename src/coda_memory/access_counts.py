"""Access statistics counted in Redis, for searches that run as read-only transactions (on the
writer or an Aurora reader): one pipelined round trip per search instead of an UPDATE of the
returned rows, and a scheduled fold (``usecases/access.py``) that adds the counts to the
writer's ``access_count`` / ``accessed_at``.

Keys (one Redis for the deployment, shared by every function):

* ``coda:access:pending`` -- a hash ``<memory id>:<user id>`` -> accesses not folded yet
  (``HINCRBY``), and ``coda:access:pending:at`` -> the last access, epoch seconds (``HSET``);
* ``coda:access:folding`` / ``coda:access:folding:at`` -- what a fold took: both pending hashes
  renamed at once (``MULTI``), so counts arriving during a fold go to a new pending hash;
* ``coda:access:fold-lock`` -- one fold at a time (``SET NX PX``).

A fold removes a user's fields from the folding hash only after the transaction that added them
committed, so a fold that dies half-way leaves the rest for the next one (which finds the
folding hash and finishes it before taking new counts): every access reaches the database at
least once; a crash between a commit and its ``HDEL`` counts that user's accesses twice.
"""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

PENDING = "coda:access:pending"
FOLDING = "coda:access:folding"
LOCK = "coda:access:fold-lock"
_AT = ":at"
_UUID_LEN = 36

# Deletes the lock only if this fold still holds it (a fold that outlived the lock's expiry
# must not release the next fold's lock).
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class UserCounts:
    """One user's pending accesses: memory id -> count, and the last access time."""

    user_id: str
    counts: dict[uuid.UUID, int] = field(default_factory=dict)
    last_at: dict[uuid.UUID, datetime] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)


def _field(user_id: str, memory_id: uuid.UUID) -> str:
    # the id first: a UUID has a fixed length, so any user id (colons included) splits back
    return f"{memory_id}:{user_id}"


class CounterUnavailable(Exception):
    """Redis did not take the counts (down, timed out)."""


class AccessCounter:
    """The Redis side of the access statistics (``MEMORY_ACCESS_STATS=redis``)."""

    def __init__(self, redis_url: str, *, timeout_s: float = 0.5) -> None:
        import redis

        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True)
        self._unlock = self._redis.register_script(_UNLOCK)

    def close(self) -> None:
        self._redis.close()

    def add(self, user_id: str, ids: Iterable[uuid.UUID]) -> None:
        """Count one access of each of ``ids`` (one round trip); :class:`CounterUnavailable`
        when Redis fails."""
        ids = list(ids)
        if not ids:
            return
        now = int(datetime.now(UTC).timestamp())
        import redis

        pipe = self._redis.pipeline(transaction=False)
        for memory_id in ids:
            key = _field(user_id, memory_id)
            pipe.hincrby(PENDING, key, 1)
            pipe.hset(PENDING + _AT, key, now)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise CounterUnavailable(type(exc).__name__) from exc

    # --- the fold -----------------------------------------------------------------------

    def lock(self, ttl_s: float) -> str | None:
        """Take the fold lock for ``ttl_s``; its token, or None when another fold holds it."""
        token = secrets.token_hex(8)
        return token if self._redis.set(LOCK, token, nx=True, px=int(ttl_s * 1000)) else None

    def unlock(self, token: str) -> None:
        self._unlock(keys=[LOCK], args=[token])

    def take(self) -> list[UserCounts]:
        """The counts to fold, by user: what a crashed fold left in the folding hash, else all
        pending counts (moved to the folding hash atomically)."""
        if not self._redis.exists(FOLDING):
            pipe = self._redis.pipeline(transaction=True)
            pipe.renamenx(PENDING, FOLDING)
            # the times of a fold that finished are gone with its counts; leftovers are stale
            pipe.rename(PENDING + _AT, FOLDING + _AT)
            pipe.execute(raise_on_error=False)  # "no such key" when nothing is pending
        counts: dict[str, str] = dict(self._redis.hgetall(FOLDING))  # type: ignore[arg-type]
        stamps: dict[str, str] = dict(self._redis.hgetall(FOLDING + _AT))  # type: ignore[arg-type]
        users, foreign = _by_user(counts, stamps)
        if foreign:  # not written by add(): dropped, or the folding hash would never empty
            self._redis.hdel(FOLDING, *foreign)
        return users

    def done(self, user: UserCounts) -> None:
        """Forget ``user``'s counts: they are committed to the database."""
        if user.fields:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(FOLDING, *user.fields)
            pipe.hdel(FOLDING + _AT, *user.fields)
            pipe.execute()

    def pending(self) -> dict[str, int]:
        """Every count not folded yet (``<memory id>:<user id>`` -> n), for tests and checks."""
        out: dict[str, int] = defaultdict(int)
        for key in (FOLDING, PENDING):
            for f, n in self._redis.hgetall(key).items():
                out[str(f)] += int(n)
        return dict(out)


def _by_user(counts: dict[str, str], stamps: dict[str, str]) -> tuple[list[UserCounts], list[str]]:
    users: dict[str, UserCounts] = {}
    foreign: list[str] = []
    for key, n in counts.items():
        try:
            memory_id = uuid.UUID(key[:_UUID_LEN])
            count = int(n)
        except ValueError:
            foreign.append(key)
            continue
        user_id = key[_UUID_LEN + 1:]
        entry = users.setdefault(user_id, UserCounts(user_id))
        entry.counts[memory_id] = entry.counts.get(memory_id, 0) + count
        entry.fields.append(key)
        at = stamps.get(key)
        if at is not None:
            entry.last_at[memory_id] = datetime.fromtimestamp(int(at), UTC)
    return [users[u] for u in sorted(users)], foreign
