"""End-to-end subscriber benchmark: XADD -> stored and searchable, through the real local stack.

    python -m bench.subscriber_e2e [--latency-events 300] [--rate 20] [--throughput-events 5000]

Starts ``python -m local.run`` (its own embedded PostgreSQL in ``.local/pg-bench-subscriber``, a
private Redis, the in-process functions behind the Lambda Invoke endpoint, and the subscriber as
a child process, exactly as ``make run`` does), then

1. latency: XADDs events at a steady rate and polls PostgreSQL every few ms for their rows; the
   delay is XADD -> row committed (a committed row is what /search reads: the HNSW and full-text
   indexes are updated in the same transaction). A sample is then confirmed through ``POST
   /search`` on the API.
2. throughput: appends a backlog of events as fast as Redis takes them and measures how long the
   subscriber takes to store all of them (sustained events/s through one subscriber).

Results are printed and written to ``bench/results/subscriber_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import redis

from bench.common import percentile
from local.services import free_port

REPO = Path(__file__).resolve().parents[1]
PG_DIR = REPO / ".local" / "pg-bench-subscriber"
RESULTS = REPO / "bench" / "results"
STREAM = "memory.ingest.stream"


def start_stack(key: str) -> tuple[subprocess.Popen[str], str, str]:
    api_port, invoke_port = free_port(), free_port()
    env = {
        **os.environ,
        "LOCAL_PG_DIR": str(PG_DIR),
        "MEMORY_API_KEY": key,
        "LOCAL_SCHEDULER": "0",
        "MEMORY_RATE_LIMIT_BURST": "0",
        "MEMORY_DEFAULT_MAX_DAILY_INGESTIONS": "10000000",
        "MEMORY_DEFAULT_MAX_MEMORIES": "10000000",
        "SUBSCRIBER_STATS_INTERVAL_S": "5",
    }
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.pop("DATABASE_ADMIN_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.run", "--port", str(api_port), "--invoke-port", str(invoke_port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    redis_url = api_url = None
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"local.run exited early with code {proc.wait()}")
        if m := re.search(r"Redis\s+(redis://\S+)", line):
            redis_url = m.group(1)
        if m := re.search(r"API Gateway \(REST\)\s+(http://\S+)", line):
            api_url = m.group(1)
        if "Ctrl-C stops everything" in line:
            break
    if not redis_url or not api_url:
        proc.kill()
        raise RuntimeError("local.run did not print its banner")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
    return proc, redis_url, api_url


def event(user: str, i: int, tag: str) -> dict:
    topics = ["hiking in the alps", "sourdough baking", "rust compilers", "jazz piano", "chess"]
    return {
        "event_type": "message",
        "content": f"[{tag} {i}] I spent the weekend on {topics[i % len(topics)]}; note {i}.",
        "user_id": user,
        "metadata": {"i": i},
    }


def measure_latency(r: redis.Redis, conn: psycopg.Connection, n: int, rate: float) -> dict:
    users = [f"lat-user-{k}" for k in range(10)]
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            waiting = [eid for eid in list(sent) if eid not in seen]
            if waiting:
                rows = conn.execute(
                    "SELECT event_id FROM memories WHERE user_id = ANY(%s) AND event_id = ANY(%s)",
                    (users, waiting),
                ).fetchall()
                now = time.perf_counter()
                for (eid,) in rows:
                    seen.setdefault(eid, now)
            time.sleep(0.003)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    interval = 1 / rate
    start = time.perf_counter()
    for i in range(n):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        eid = f"lat-{i}"
        ev = event(users[i % len(users)], i, "lat")
        t = time.perf_counter()
        r.xadd(STREAM, {"data": json.dumps(ev), "event_id": eid})
        sent[eid] = t
    deadline = time.monotonic() + 60
    while len(seen) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    poller.join()
    delays = [(seen[e] - sent[e]) * 1000 for e in sent if e in seen]
    return {
        "events": n,
        "rate_per_s": rate,
        "stored": len(delays),
        "p50_ms": round(percentile(delays, 50), 1),
        "p95_ms": round(percentile(delays, 95), 1),
        "p99_ms": round(percentile(delays, 99), 1),
        "max_ms": round(max(delays), 1),
        "mean_ms": round(statistics.fmean(delays), 1),
    }


def measure_throughput(r: redis.Redis, conn: psycopg.Connection, n: int) -> dict:
    users = [f"tp-user-{k}" for k in range(50)]
    before = conn.execute("SELECT count(*) FROM memories WHERE user_id = ANY(%s)", (users,)).fetchone()[0]
    t0 = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(STREAM, {"data": json.dumps(event(users[i % len(users)], i, "tp")), "event_id": f"tp-{i}"})
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    t_added = time.perf_counter()
    stored = 0
    first_at = None
    while True:
        stored = conn.execute("SELECT count(*) FROM memories WHERE user_id = ANY(%s)", (users,)).fetchone()[0] - before
        if stored and first_at is None:
            first_at = time.perf_counter()
        if stored >= n or time.perf_counter() - t0 > 600:
            break
        time.sleep(0.05)
    t_done = time.perf_counter()
    return {
        "events": n,
        "stored": stored,
        "xadd_s": round(t_added - t0, 2),
        "total_s": round(t_done - t0, 2),
        "events_per_s": round(stored / (t_done - t0), 1),
        "events_per_s_after_first": round(stored / (t_done - first_at), 1) if first_at else None,
    }


def measure_subscriber_only(redis_url: str, n: int) -> dict:
    """The subscriber's own ceiling: same Redis work (read, batch, ack), a no-op ingest."""
    from functions.subscriber.config import SubscriberSettings
    from functions.subscriber.consumer import Subscriber

    stream = "bench.noop.stream"
    r = redis.Redis.from_url(redis_url)
    r.delete(stream)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"data": json.dumps(event("noop-user", i, "noop")), "event_id": f"n-{i}"})
    pipe.execute()
    settings = SubscriberSettings(
        redis_url=redis_url, stream=stream, channel="", name="noop", lambda_endpoint_url="http://x:1"
    )
    sub = Subscriber(settings, lambda events: [{"status": "created"} for _ in events])
    thread = threading.Thread(target=sub.run, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    while sub.stats.stored < n and time.perf_counter() - t0 < 300:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    sub.stop()
    thread.join(10)
    r.delete(stream)
    return {"events": n, "seconds": round(elapsed, 2), "events_per_s": round(sub.stats.stored / elapsed)}


def confirm_search(api_url: str, key: str) -> bool:
    body = json.dumps({"query": "sourdough baking weekend", "user_id": "lat-user-1", "top_k": 3}).encode()
    req = urllib.request.Request(
        f"{api_url}/search",
        data=body,
        method="POST",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bool(json.load(resp)["results"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--throughput-events", type=int, default=5000)
    args = parser.parse_args()
    key = secrets.token_urlsafe(24)
    proc, redis_url, api_url = start_stack(key)
    try:
        r = redis.Redis.from_url(redis_url)
        admin = f"postgresql://postgres@/coda_memory?host={PG_DIR}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DELETE FROM memories WHERE user_id LIKE 'lat-user-%' OR user_id LIKE 'tp-user-%'")
            # Warm-up: first invoke loads the model and opens the pool.
            r.xadd(STREAM, {"data": json.dumps(event("lat-user-0", -1, "warm")), "event_id": "warm"})
            deadline = time.monotonic() + 120
            while (
                time.monotonic() < deadline
                and not conn.execute(
                    "SELECT 1 FROM memories WHERE user_id = 'lat-user-0' AND event_id = 'warm'"
                ).fetchone()
            ):
                time.sleep(0.05)
            latency = measure_latency(r, conn, args.latency_events, args.rate)
            searchable = confirm_search(api_url, key)
            throughput = measure_throughput(r, conn, args.throughput_events)
        overhead = measure_subscriber_only(redis_url, 20_000)
        result = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "path": "XADD -> subscriber (1 process, batch 100 / "
            + os.environ.get("SUBSCRIBER_BATCH_WINDOW_MS", "100")
            + " ms) -> Lambda Invoke (local) "
            "-> ingest handler -> PostgreSQL",
            "latency": latency,
            "search_confirms": searchable,
            "throughput": throughput,
            "subscriber_only_noop_ingest": overhead,
        }
        print(json.dumps(result, indent=2))
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "subscriber_e2e.json").write_text(json.dumps(result, indent=2))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
