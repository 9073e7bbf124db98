"""Helpers for the subscriber tests: environment for the real ingest handler, subscriber
processes and threads, producers, and database checks."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis

from functions.subscriber.config import SubscriberSettings
from functions.subscriber.consumer import Subscriber
from functions.subscriber.invoker import Invoker

REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "subscriber-test-key-0123456789abcdef"


def load_ingest_handler() -> Callable[[dict[str, Any], Any], Any]:
    """The real ingest ``handler``; ``SUBSCRIBER_TEST_HANDLER=module:attr`` points elsewhere."""
    spec = os.environ.get("SUBSCRIBER_TEST_HANDLER", "functions.ingest.app:handler")
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "handler")


def ingest_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "MEMORY_API_KEY": API_KEY,
        "REDIS_URL": redis_url,
        "MEMORY_DEFAULT_MAX_DAILY_INGESTIONS": "10000000",
        "MEMORY_DEFAULT_MAX_MEMORIES": "10000000",
        "MEMORY_RATE_LIMIT_PER_SECOND": "0",
        "MEMORY_RATE_LIMIT_BURST": "0",
    }


@dataclass
class Names:
    """Per-test stream, group, channel and DLQ names, and a user id, so tests do not interfere."""

    tag: str
    stream: str
    group: str
    channel: str
    dlq: str
    user: str

    @classmethod
    def fresh(cls, label: str) -> Names:
        tag = f"{label}-{uuid.uuid4().hex[:8]}"
        return cls(
            tag=tag,
            stream=f"test.{tag}.stream",
            group="memory-subscriber",
            channel=f"test.{tag}.channel",
            dlq=f"test.{tag}.dlq",
            user=f"user-{tag}",
        )

    def env(self) -> dict[str, str]:
        return {
            "SUBSCRIBER_STREAM": self.stream,
            "SUBSCRIBER_GROUP": self.group,
            "SUBSCRIBER_CHANNEL": self.channel,
            "SUBSCRIBER_DLQ_STREAM": self.dlq,
        }

    def settings(self, redis_url: str, endpoint: str | None = None, **overrides: Any):
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "lambda_endpoint_url": endpoint or "http://127.0.0.1:9",
            "stream": self.stream,
            "group": self.group,
            "channel": self.channel,
            "dlq_stream": self.dlq,
            "name": f"t-{uuid.uuid4().hex[:6]}",
            "claim_idle_ms": 1_000,
            "claim_interval_ms": 200,
            "backoff_base_ms": 20,
            "backoff_max_ms": 300,
            "stats_interval_s": 1,
        }
        values.update(overrides)
        return SubscriberSettings(**values)


def seed_event(user: str, i: int, tag: str, **extra: Any) -> dict[str, Any]:
    event = {
        "event_type": "message",
        "content": f"[{tag}] note number {i}: the user mentioned hobby {i} and city {i * 7}",
        "user_id": user,
        "metadata": {"n": i, "tag": tag},
    }
    event.update(extra)
    return event


def xadd_event(r: redis.Redis, stream: str, event: Any, event_id: str | None = None) -> str:
    fields: dict[str, Any] = {"data": event if isinstance(event, (str, bytes)) else json.dumps(event)}
    if event_id is not None:
        fields["event_id"] = event_id
    return r.xadd(stream, fields).decode()


def rows_by_event(conn: psycopg.Connection, user: str) -> dict[str | None, int]:
    rows = conn.execute(
        "SELECT event_id, count(*) FROM memories WHERE user_id = %s GROUP BY event_id", (user,)
    ).fetchall()
    return {event_id: count for event_id, count in rows}


def count_rows(conn: psycopg.Connection, user: str) -> int:
    return conn.execute("SELECT count(*) FROM memories WHERE user_id = %s", (user,)).fetchone()[0]


def contents(conn: psycopg.Connection, user: str) -> list[str]:
    return [row[0] for row in conn.execute("SELECT content FROM memories WHERE user_id = %s", (user,)).fetchall()]


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition} (last={last!r})")


def pending_count(r: redis.Redis, names: Names) -> int:
    return int(r.xpending(names.stream, names.group)["pending"])


def _has_group(settings: SubscriberSettings) -> bool:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return any(g["name"].decode() == settings.group for g in client.xinfo_groups(settings.stream))
    except redis.ResponseError:  # no stream yet
        return False
    finally:
        client.close()


@contextmanager
def running(settings: SubscriberSettings, invoker: Invoker) -> Iterator[Subscriber]:
    """A subscriber in a background thread of this process."""
    sub = Subscriber(settings, invoker)
    errors: list[BaseException] = []

    def _run() -> None:
        try:
            sub.run()
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    try:
        # Ready once its consumer group exists: asking Redis about the group before that
        # answers NOGROUP (seen on a loaded machine).
        wait_for(lambda: errors or _has_group(settings), 30, what="the subscriber's consumer group")
        yield sub
    finally:
        sub.stop()
        thread.join(30)
        assert not thread.is_alive(), "subscriber thread did not stop"
        if errors:
            raise errors[0]


class SubscriberProcess:
    """``python -m functions.subscriber`` as a child process."""

    def __init__(self, env: dict[str, str], name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        full_env = {**os.environ, **env, "SUBSCRIBER_NAME": name, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "functions.subscriber"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records
