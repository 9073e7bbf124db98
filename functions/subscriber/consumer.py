"""The Redis -> ingest forwarding loop.

Delivery model (at-least-once, no duplicate rows):

* The durable path is the stream ``memory.ingest.stream`` read through the consumer group
  ``memory-subscriber``. An entry is XACKed only after the ingest function reported it stored
  (``created`` or ``duplicate``) or after it was written to the dead-letter stream (XADD + XACK in
  one MULTI). A crash anywhere in between leaves it pending; it is then re-read by this consumer
  name on start (``XREADGROUP ... 0``) or reclaimed by another consumer with XAUTOCLAIM once idle
  for ``claim_idle_ms``. Redelivery is harmless: the ingest function dedups by ``event_id``
  (entries without one get ``stream:<entry id>``), and by content hash.
* The seed's pub/sub channel ``memory.ingest`` is bridged into the stream as each message arrives
  (a Lua script: ``SET NX`` on the message hash + ``XADD``), so several subscribers do not forward
  the same message twice and a message is durable from the moment one subscriber sees it.
  Pub/sub itself stays best-effort: what is published while no subscriber listens is lost.
* Attempts are Redis' delivery counter (XPENDING ``times_delivered``), so they survive restarts.
  Failed batches are redelivered with XCLAIM (which counts). A batch whose function errors reach
  ``max_attempts`` is bisected down to the events at fault, which are dead-lettered. Outages
  (endpoint unreachable, throttled, database down) are retried with capped backoff and never
  dead-letter anything.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import redis.exceptions

from coda_memory.events import event_problem

from .config import SubscriberSettings
from .invoker import IngestError, Invoker

MAX_EVENT_BYTES = 1_000_000  # a single seed event larger than this cannot be valid
MAX_BATCH_BYTES = 5_000_000  # Lambda's synchronous payload limit is 6 MB

REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    ConnectionError,
    OSError,
)

# KEYS[1] dedup key, KEYS[2] stream; ARGV[1] ttl, ARGV[2] data, ARGV[3] source tag
_BRIDGE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'data', ARGV[2], 'source', ARGV[3])
end
return false
"""


def _s(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@dataclass
class Entry:
    """One stream entry on its way to the ingest function."""

    id: str
    data: bytes
    event_id: str | None
    attempts: int
    event: dict[str, Any] | None = None
    problem: str | None = None  # why it is malformed (goes to the DLQ as is)
    size: int = 0

    def request(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "data": self.event}


def parse_entry(entry_id: str, fields: dict[bytes, bytes], attempts: int) -> Entry:
    """Decode and check an entry: not JSON, not an object, or not the seed event's shape
    (``coda_memory.events.SeedEvent``: missing or mistyped fields) make it malformed
    (dead-lettered without invoking). Everything else is the ingest function's call."""
    raw = fields.get(b"data", b"")
    raw_event_id = fields.get(b"event_id")
    event_id: str | None = None
    entry = Entry(id=entry_id, data=raw, event_id=None, attempts=attempts, size=len(raw))
    try:
        if raw_event_id is not None and raw_event_id != b"":
            event_id = raw_event_id.decode("utf-8")
        entry.event_id = event_id or f"stream:{entry_id}"
        if b"data" not in fields:
            entry.problem = "missing field 'data'"
            return entry
        if len(raw) > MAX_EVENT_BYTES:
            entry.problem = f"event too large ({len(raw)} bytes > {MAX_EVENT_BYTES})"
            return entry
        event = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        entry.problem = "not valid UTF-8"
        return entry
    except ValueError as exc:
        entry.problem = f"not JSON: {exc}"
        return entry
    if not isinstance(event, dict):
        entry.problem = f"not a JSON object (got {type(event).__name__})"
        return entry
    entry.problem = event_problem(event)
    if entry.problem is None:
        entry.event = event
    return entry


@dataclass
class Stats:
    received: int = 0  # entries read from the stream (new, history and reclaimed)
    reclaimed: int = 0  # of which taken over from other consumers (XAUTOCLAIM)
    bridged: int = 0  # pub/sub messages appended to the stream
    invokes: int = 0
    stored: int = 0  # created
    duplicates: int = 0  # already stored (redelivery or same content)
    retried: int = 0  # event redeliveries after a failed invoke
    dead_lettered: int = 0
    invoke_failures: int = 0
    redis_errors: int = 0
    lag: int | None = None  # entries not yet delivered to the group
    pending: int | None = None  # delivered, not yet acknowledged
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    COUNTERS = (
        "received",
        "reclaimed",
        "bridged",
        "invokes",
        "stored",
        "duplicates",
        "retried",
        "dead_lettered",
        "invoke_failures",
        "redis_errors",
    )

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int | None]:
        with self._lock:
            values: dict[str, int | None] = {name: getattr(self, name) for name in self.COUNTERS}
            values["lag"] = self.lag
            values["pending"] = self.pending
            return values


class Subscriber:
    def __init__(
        self,
        settings: SubscriberSettings,
        invoker: Invoker,
        *,
        logger: Any = None,
        metrics: Any = None,
        health_file: Path | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.invoker = invoker
        self.stats = Stats()
        self.stopping = threading.Event()
        self.log = logger or _null_logger()
        self.metrics = metrics
        self.health_file = health_file
        self._wait = sleep or self.stopping.wait
        self.redis = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=10,
            socket_connect_timeout=3,
            health_check_interval=15,
            retry_on_timeout=False,
        )
        self._bridge = self.redis.register_script(_BRIDGE_LUA)
        self._read_history = True
        self._claim_cursor = "0-0"
        self._last_claim = 0.0
        self._last_stats = time.monotonic()
        self._flushed: dict[str, int] = {}
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        """Stop reading; the batch being forwarded is finished and acknowledged first."""
        self.stopping.set()

    def run(self) -> None:
        self.log.info(
            "subscriber starting",
            extra={
                "consumer": self.settings.name,
                "stream": self.settings.stream,
                "group": self.settings.group,
                "channel": self.settings.channel or None,
                "function": self.settings.ingest_function_name,
                "endpoint": self.settings.lambda_endpoint_url,
            },
        )
        if self.settings.channel:
            thread = threading.Thread(target=self._pubsub_loop, name="pubsub", daemon=True)
            thread.start()
            self._threads.append(thread)
        failures = 0
        group_ready = False
        while not self.stopping.is_set():
            try:
                if not group_ready:
                    self._ensure_group()
                    group_ready = True
                self._step()
                failures = 0
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.log.warning("consumer group missing, recreating", extra={"error": str(exc)})
                group_ready = False
            except REDIS_DOWN as exc:
                failures += 1
                delay = self._redis_down(exc, failures, "redis unavailable, reconnecting")
                group_ready = False
                self._read_history = True  # replay our pending entries after reconnect
                self.stopping.wait(delay)
            self._maybe_report()
        for thread in self._threads:
            thread.join(timeout=2)
        self._report(final=True)
        self.log.info("subscriber stopped", extra={"consumer": self.settings.name})

    # ---------------------------------------------------------------- stream side
    def _ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.settings.stream, self.settings.group, id="0", mkstream=True)
            self.log.info("consumer group created", extra={"group": self.settings.group})
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _step(self) -> None:
        entries: list[Entry] = []
        if self._read_history:
            entries = self._read("0", block_ms=None)
            if not entries:
                self._read_history = False
        if not entries and time.monotonic() - self._last_claim >= self.settings.claim_interval_ms / 1000:
            entries = self._autoclaim()
        if not entries:
            entries = self._read_new()
        if entries:
            self._process(entries)
        self._touch_health()

    def _read(self, stream_id: str, block_ms: int | None, count: int | None = None) -> list[Entry]:
        reply = self.redis.xreadgroup(
            self.settings.group,
            self.settings.name,
            {self.settings.stream: stream_id},
            count=count or self.settings.batch_size,
            block=block_ms,
        )
        if not reply:
            return []
        raw_entries = reply[0][1]
        history = stream_id != ">"
        attempts = self._delivery_counts([_s(i) for i, _ in raw_entries]) if history else {}
        entries = []
        for raw_id, fields in raw_entries:
            entry_id = _s(raw_id)
            if not fields:
                # Deleted (XDEL/trimmed) while pending: nothing to forward.
                self.redis.xack(self.settings.stream, self.settings.group, entry_id)
                continue
            entries.append(parse_entry(entry_id, fields, attempts.get(entry_id, 1)))
        self.stats.add("received", len(raw_entries))
        return entries

    def _read_new(self) -> list[Entry]:
        block = max(1, min(1_000, self.settings.claim_interval_ms))
        entries = self._read(">", block_ms=block)
        if not entries or self.settings.batch_window_ms <= 0:
            return entries
        deadline = time.monotonic() + self.settings.batch_window_ms / 1000
        while len(entries) < self.settings.batch_size and not self.stopping.is_set():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = self._read(">", block_ms=remaining_ms, count=self.settings.batch_size - len(entries))
            if not more:
                break
            entries.extend(more)
        return entries

    def _autoclaim(self) -> list[Entry]:
        self._last_claim = time.monotonic()
        reply = self.redis.xautoclaim(
            self.settings.stream,
            self.settings.group,
            self.settings.name,
            min_idle_time=self.settings.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.settings.batch_size,
        )
        cursor, claimed = _s(reply[0]), reply[1]
        self._claim_cursor = cursor or "0-0"
        if len(reply) > 2 and reply[2]:
            # Redis 7: ids pending but deleted from the stream were dropped from the PEL.
            self.log.info("dropped deleted pending entries", extra={"count": len(reply[2])})
        if any(entry_id is None or not fields for entry_id, fields in claimed):
            # Redis 6.2 returns deleted entries as nil but claims them: ack them via history.
            self._read_history = True
        claimed = [(i, f) for i, f in claimed if i is not None and f]
        if not claimed:
            return []
        attempts = self._delivery_counts([_s(i) for i, _ in claimed])
        entries = [parse_entry(_s(i), f, attempts.get(_s(i), 1)) for i, f in claimed]
        self.stats.add("received", len(entries))
        self.stats.add("reclaimed", len(entries))
        self.log.info(
            "reclaimed idle entries",
            extra={"count": len(entries), "min_idle_ms": self.settings.claim_idle_ms},
        )
        return entries

    def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = self.redis.xpending_range(
            self.settings.stream,
            self.settings.group,
            min=min(ids, key=_id_key),
            max=max(ids, key=_id_key),
            count=max(len(ids), 1) * 2 + 10,
            consumername=self.settings.name,
        )
        return {_s(row["message_id"]): int(row["times_delivered"]) for row in rows}

    # ---------------------------------------------------------------- forwarding
    def _process(self, entries: list[Entry]) -> None:
        valid: list[Entry] = []
        for entry in entries:
            if entry.problem:
                self._dead_letter(entry, f"malformed: {entry.problem}")
            else:
                valid.append(entry)
        for chunk in _chunks(valid, self.settings.batch_size, MAX_BATCH_BYTES):
            self._deliver(chunk)

    def _deliver(self, chunk: list[Entry]) -> None:
        failures = 0
        while chunk:
            try:
                self.stats.add("invokes")
                results = self.invoker([e.request() for e in chunk])
            except IngestError as exc:
                failures += 1
                self.stats.add("invoke_failures")
                attempts = max(e.attempts for e in chunk)
                if not exc.outage and attempts >= self.settings.max_attempts:
                    if len(chunk) == 1:
                        self._dead_letter(chunk[0], f"failed after {attempts} attempts: {exc}")
                        return
                    # Find the events at fault: each half gets its own (last) chance.
                    half = len(chunk) // 2
                    self.log.warning(
                        "batch keeps failing, bisecting",
                        extra={"events": len(chunk), "attempts": attempts, "error": str(exc)},
                    )
                    self._deliver(chunk[:half])
                    self._deliver(chunk[half:])
                    return
                delay = self._backoff(
                    max(attempts, failures),
                    self.settings.backoff_base_ms,
                    self.settings.backoff_max_ms,
                )
                self.log.warning(
                    "ingest failed, will retry",
                    extra={
                        "events": len(chunk),
                        "attempts": attempts,
                        "outage": exc.outage,
                        "error": str(exc),
                        "retry_in_s": round(delay, 2),
                    },
                )
                if not self._hold(chunk, delay):
                    return  # stopping: entries stay pending and will be redelivered
                chunk = self._redeliver(chunk)
                continue
            self._apply_results(chunk, results)
            return

    def _hold(self, chunk: list[Entry], delay: float) -> bool:
        """Wait ``delay`` seconds while keeping the entries ours (XCLAIM JUSTID resets their idle
        time without counting a delivery). False when asked to stop."""
        deadline = time.monotonic() + delay
        step = max(0.05, self.settings.claim_idle_ms / 3000)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return not self.stopping.is_set()
            if self._wait(min(step, remaining)):
                return False
            self._touch_health()
            self._maybe_report()  # lag keeps being reported during an outage
            if remaining > step:
                self.redis.xclaim(
                    self.settings.stream,
                    self.settings.group,
                    self.settings.name,
                    0,
                    [e.id for e in chunk],
                    justid=True,
                )

    def _redeliver(self, chunk: list[Entry]) -> list[Entry]:
        """Count a new delivery of each entry (XCLAIM increments the delivery counter)."""
        claimed = self.redis.xclaim(
            self.settings.stream, self.settings.group, self.settings.name, 0, [e.id for e in chunk]
        )
        still_ours = {_s(i) for i, f in claimed if i is not None and f}
        kept = []
        for entry in chunk:
            if entry.id in still_ours:
                entry.attempts += 1
                kept.append(entry)
        self.stats.add("retried", len(kept))
        if len(kept) < len(chunk):
            self._read_history = True  # deleted ones are acked from history
        return kept

    def _apply_results(self, chunk: list[Entry], results: list[dict[str, Any]]) -> None:
        done: list[str] = []
        stored = duplicates = 0
        for entry, result in zip(chunk, results, strict=True):
            status = result.get("status")
            if status == "created":
                stored += 1
                done.append(entry.id)
            elif status == "duplicate":
                duplicates += 1
                done.append(entry.id)
            elif status == "rejected":
                error = result.get("error") or {}
                code = error.get("code", "rejected") if isinstance(error, dict) else "rejected"
                message = error.get("message", "") if isinstance(error, dict) else str(error)
                self._dead_letter(entry, f"rejected: {code}: {message}"[:1000])
            else:
                self._dead_letter(entry, f"unexpected ingest result status {status!r}")
        if done:
            self.redis.xack(self.settings.stream, self.settings.group, *done)
        self.stats.add("stored", stored)
        self.stats.add("duplicates", duplicates)

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            self.settings.dlq_stream,
            {
                "data": entry.data,
                "event_id": entry.event_id or "",
                "reason": reason,
                "attempts": str(entry.attempts),
                "source_id": entry.id,
                "source_stream": self.settings.stream,
                "consumer": self.settings.name,
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            },
        )
        pipe.xack(self.settings.stream, self.settings.group, entry.id)
        pipe.execute()
        self.stats.add("dead_lettered")
        self.log.warning(
            "event dead-lettered",
            extra={"source_id": entry.id, "event_id": entry.event_id, "reason": reason[:300]},
        )

    # ---------------------------------------------------------------- pub/sub bridge
    def _pubsub_loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            pubsub = None
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.settings.channel)
                failures = 0
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        self.bridge(message["data"])
            except REDIS_DOWN as exc:
                failures += 1
                self.stopping.wait(self._redis_down(exc, failures, "pub/sub connection lost, resubscribing"))
            except Exception:
                self.log.exception("pub/sub loop error")
                self.stopping.wait(1)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: S110 - closing a broken connection
                        pass

    def bridge(self, data: bytes | str) -> bool:
        """Append one pub/sub message to the stream, once across all subscribers."""
        raw = data.encode() if isinstance(data, str) else data
        key = f"{self.settings.channel}:seen:{hashlib.sha256(raw).hexdigest()}"
        for attempt in range(1, 6):
            try:
                added = self._bridge(
                    keys=[key, self.settings.stream],
                    args=[self.settings.pubsub_dedup_ttl_s, raw, "pubsub"],
                )
                if added:
                    self.stats.add("bridged")
                return bool(added)
            except REDIS_DOWN:
                if self.stopping.wait(self._backoff(attempt, base_ms=50, max_ms=1_000)):
                    break
        self.log.error("pub/sub message could not be appended to the stream; lost")
        return False

    # ---------------------------------------------------------------- observability
    def _redis_down(self, exc: BaseException, failures: int, message: str) -> float:
        """Count and log a lost Redis connection; the delay before the next attempt."""
        self.stats.add("redis_errors")
        delay = self._backoff(failures, base_ms=100, max_ms=5_000)
        self.log.warning(message, extra={"error": type(exc).__name__, "retry_in_s": round(delay, 2)})
        return delay

    def _maybe_report(self) -> None:
        if time.monotonic() - self._last_stats >= self.settings.stats_interval_s:
            self._report()

    def _report(self, final: bool = False) -> None:
        self._last_stats = time.monotonic()
        try:
            self._update_lag()
        except REDIS_DOWN:
            pass
        except redis.exceptions.ResponseError:
            pass
        snapshot = self.stats.snapshot()
        self.log.info(
            "subscriber stopped, final counters" if final else "subscriber counters",
            extra={"consumer": self.settings.name, "counters": snapshot},
        )
        if self.metrics is not None:
            try:
                self._emit_metrics(snapshot)
            except Exception:
                self.log.exception("metrics flush failed")

    def _update_lag(self) -> None:
        for group in self.redis.xinfo_groups(self.settings.stream):
            if _s(group.get("name")) != self.settings.group:
                continue
            pending = int(group.get("pending") or 0)
            lag = group.get("lag")
            if lag is None:
                # Redis < 7 has no lag field: count what lies past last-delivered-id (bounded).
                last = _s(group.get("last-delivered-id")) or "0-0"
                lag = len(self.redis.xrange(self.settings.stream, min="(" + last, count=10_000))
            with self.stats._lock:
                self.stats.pending = pending
                self.stats.lag = int(lag)

    def _emit_metrics(self, snapshot: dict[str, int | None]) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        for name in Stats.COUNTERS:
            value = int(snapshot[name] or 0)
            delta = value - self._flushed.get(name, 0)
            self._flushed[name] = value
            self.metrics.add_metric(name=_metric_name(name), unit=MetricUnit.Count, value=delta)
        for name in ("lag", "pending"):
            if snapshot[name] is not None:
                self.metrics.add_metric(name=_metric_name(name), unit=MetricUnit.Count, value=int(snapshot[name] or 0))
        self.metrics.flush_metrics()

    def _touch_health(self) -> None:
        if self.health_file is not None:
            try:
                self.health_file.touch()
            except OSError:
                pass

    @staticmethod
    def _backoff(attempt: int, base_ms: int, max_ms: int) -> float:
        """Exponential backoff with jitter, in seconds: uniform in [d/2, d], d = base * 2^(n-1)."""
        ceiling = min(max_ms, base_ms * 2 ** min(max(attempt, 1) - 1, 30)) / 1000
        return random.uniform(ceiling / 2, ceiling)


def _metric_name(counter: str) -> str:
    return "Subscriber" + "".join(part.capitalize() for part in counter.split("_"))


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _chunks(entries: list[Entry], max_items: int, max_bytes: int) -> Iterable[list[Entry]]:
    chunk: list[Entry] = []
    size = 0
    for entry in entries:
        if chunk and (len(chunk) >= max_items or size + entry.size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


class _NullLogger:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _null_logger() -> Any:
    return _NullLogger()
