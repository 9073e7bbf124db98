"""Shared benchmark plumbing: backing services, environment, in-process handler calls,
percentiles and a description of the machine.

Benchmarks run against their own embedded PostgreSQL data dir (``.local/pg-bench``) so they
never disturb the test or local-run databases.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from local.apigw import InProcessApi, make_event

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BENCH_PG_DIR = REPO / ".local" / "pg-bench"
BENCH_KEY = "bench-service-key-0123456789abcdef"


def bench_env(app_url: str) -> dict[str, str]:
    """Environment of the functions under benchmark (quotas and rate limit out of the way)."""
    return {
        "DATABASE_URL": app_url,
        "MEMORY_API_KEY": BENCH_KEY,
        "MEMORY_RATE_LIMIT_BURST": "0",
        "MEMORY_DEFAULT_MAX_MEMORIES": "1000000",
        "MEMORY_DEFAULT_MAX_DAILY_INGESTIONS": "1000000",
        "MEMORY_DB_POOL_MAX": "8",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "LOG_LEVEL": "WARNING",
    }


def apply_env(env: Mapping[str, str]) -> None:
    os.environ.update(env)
    from coda_memory import runtime

    runtime.reset()


@contextmanager
def settings_override(**values: Any) -> Iterator[None]:
    """Temporarily set ``MEMORY_<NAME>`` settings; the DB pool and model stay loaded."""
    from coda_memory.config import reset_settings

    names = {f"MEMORY_{k.upper()}": str(v) for k, v in values.items()}
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    reset_settings()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()


def apigw_event(method: str, path: str, body: Any = None, key: str = BENCH_KEY) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as API Gateway sends it to the function."""
    return make_event(method, path, body=body, api_key=key, source_ip="127.0.0.1")


class Handlers:
    """The functions' real ``handler(event, context)``, each request sent to the function the
    template routes it to."""

    def __init__(self) -> None:
        self._api = InProcessApi()

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> tuple[int, Any]:
        result = self._api(method, path, body=body, query=query, api_key=BENCH_KEY, source_ip="127.0.0.1")
        raw = result.get("body") or ""
        return int(result["statusCode"]), json.loads(raw) if raw else None

    def ingest_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        status, body = self.call("POST", "/ingest/batch", {"items": items})
        if status != 200:
            raise RuntimeError(f"/ingest/batch answered {status}: {body}")
        results: list[dict[str, Any]] = body["results"]
        return results

    def store(self, items: list[dict[str, Any]]) -> None:
        """Ingest a batch that must be stored whole (a load): any rejected item is an error."""
        for res in self.ingest_batch(items):
            if res["status"] == "rejected":
                raise RuntimeError(f"load item rejected: {res['error']}")

    def search(self, query: str, user_id: str, top_k: int = 10) -> list[dict[str, Any]]:
        status, body = self.call("POST", "/search", {"query": query, "user_id": user_id, "top_k": top_k})
        if status != 200:
            raise RuntimeError(f"/search answered {status}: {body}")
        results: list[dict[str, Any]] = body["results"]
        return results


def backend_cpu(admin: Any, database: str) -> float:
    """CPU seconds (user + system, from /proc) of the app role's backends on ``database``: the
    PostgreSQL side of what a benchmark's requests cost, whatever the wall clock says."""
    total = 0.0
    for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND usename = 'coda_app'", (database,)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / 100  # clock ticks (USER_HZ 100)
        except (OSError, IndexError, ValueError):
            continue
    return total


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (``q`` in 0..100) of ``samples`` (not empty): the
    smallest sample with at least q% of the samples at or below it. Every benchmark uses this."""
    s = sorted(samples)
    return s[max(0, min(len(s), math.ceil(q / 100 * len(s))) - 1)]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    if not samples_ms:
        return {"n": 0}
    return {"n": len(samples_ms), **{f"p{q}": round(percentile(samples_ms, q), 2) for q in (50, 95, 99)},
            "mean": round(statistics.fmean(samples_ms), 2), "max": round(max(samples_ms), 2)}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gb": mem_gb, "python": platform.python_version(),
            "platform": platform.platform()}


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    (RESULTS / f"{name}-latest.json").write_text(json.dumps(payload, indent=2, default=str))
    return path
