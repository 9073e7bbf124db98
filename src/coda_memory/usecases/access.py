"""Access statistics (access_count, accessed_at) recorded off the request path.

Searches hand the returned ids to a background thread that writes them in small batches, so
an answer never waits for the UPDATE. On Lambda the thread runs while the environment is
warm (usually within the same invocation); :func:`flush` writes everything pending now.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence

log = logging.getLogger(__name__)

_queue: queue.Queue[tuple[str, list[uuid.UUID]] | None] = queue.Queue(maxsize=10_000)
_worker: threading.Thread | None = None
_lock = threading.Lock()
_idle = threading.Condition()
_pending = 0


def record_access(user_id: str, ids: Sequence[uuid.UUID]) -> None:
    """Queue an access of ``ids`` by ``user_id`` (dropped, with a log line, if the queue is full)."""
    global _pending
    if not ids:
        return
    _ensure_worker()
    with _idle:
        _pending += 1
    try:
        _queue.put_nowait((user_id, list(ids)))
    except queue.Full:
        with _idle:
            _pending -= 1
            _idle.notify_all()
        log.warning("access statistics queue full; dropping one update")


def flush(timeout: float = 5.0) -> bool:
    """Wait until every queued access is written; False on timeout."""
    with _idle:
        return _idle.wait_for(lambda: _pending == 0, timeout)


def _ensure_worker() -> None:
    global _worker
    if _worker is None or not _worker.is_alive():
        with _lock:
            if _worker is None or not _worker.is_alive():
                _worker = threading.Thread(target=_run, name="coda-access-stats", daemon=True)
                _worker.start()


def _run() -> None:
    global _pending
    from .. import runtime
    from ..db import memories as memory_sql

    while True:
        first = _queue.get()
        batch = [first]
        while len(batch) < 200:
            try:
                batch.append(_queue.get_nowait())
            except queue.Empty:
                break
        merged: dict[str, Counter[uuid.UUID]] = defaultdict(Counter)
        for entry in batch:
            if entry is not None:
                merged[entry[0]].update(entry[1])  # Counter: one per access
        for user_id, ids in merged.items():
            try:
                with runtime.database().user_tx(user_id) as cur:
                    memory_sql.touch(cur, user_id, ids)
            except Exception as exc:  # statistics must never break anything
                log.warning("could not record access statistics: %s", type(exc).__name__)
        with _idle:
            _pending -= len(batch)
            _idle.notify_all()
