"""Latency, throughput and cold start of the memory API (``make bench``).

    python -m bench.run [--users 10] [--per-user 10000] [--seconds 30] [--reload]
                        [--skip-http] [--skip-cold] [--quick]

1. **Load** ``--users`` x ``--per-user`` synthetic memories (``bench/synth.py``, fixed seed)
   into the database ``coda_bench`` of the bench's own embedded PostgreSQL (``.local/pg-bench``)
   through ``POST /ingest/batch`` -- the real handler, 100 items per call, two callers. The
   per-user vector graphs are built once at the end (``memory_vector_graphs_sync``, what the
   nightly archival run does). A loaded database is reused on the next run (``--reload``
   forces a new load).
2. **Handler level** (in-process ``handler(event, context)``, one client): ``/search``
   (top_k=10, random user and query) and ``POST /ingest`` (one memory) p50/p95/p99.
3. **Bulk ingest** through ``/ingest/batch`` (100 per call), one caller and two callers.
4. **HTTP level** through the local gateway (``python -m local.run``, SAM's local API Gateway
   in front of the same handlers): one client, then ``50`` concurrent clients for ``--seconds``
   with 80% search / 20% ingest: throughput, p50/p95/p99, errors.
5. **Cold start**: a new process from interpreter start to the first ``/search`` answered
   by the handler, int8 ONNX (as shipped) vs the same handler on sentence-transformers/torch.

6. **Growth** (``bench/growth.py``): one user growing to 1k, 10k and 50k memories of
   conversation text, then mostly archived: search/ingest latency over HTTP against a
   ``MEMORY_SEARCH_MODE=vector`` baseline, PostgreSQL CPU per search, 50 clients.

Memories written by the measurements (source_type ``bench-write``) are erased afterwards, so
the loaded table stays at users x per-user rows. Results: a table on stdout and JSON in
``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import synth
from bench.common import (
    BENCH_KEY,
    BENCH_PG_DIR,
    REPO,
    Handlers,
    apply_env,
    bench_env,
    machine,
    percentiles,
    settings_override,
    write_json,
)
from local.services import free_port

DATABASE = "coda_bench"
SEED = 20251125
DATASET_VERSION = "synth-v1"
WRITE_SOURCE = "bench-write"

TARGETS = {
    "search_handler_p95": 8, "search_http_p95": 12, "ingest_handler_p95": 10, "ingest_http_p95": 15,
    "mixed_rps": 200, "mixed_p95": 150, "bulk_per_s": 1000, "cold_start_s": 1.0,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done = total, label, 0
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._last = 0.0

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last < 0.5 and self.done < self.total:
                return
            self._last = now
            rate = self.done / max(1e-9, now - self.t0)
            eta = (self.total - self.done) / rate if rate else 0
            width = 30
            filled = int(width * self.done / self.total)
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} "
                f"{rate:,.0f}/s eta {eta:,.0f}s "
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


# --- loading ----------------------------------------------------------------------------------


def user_ids(n: int) -> list[str]:
    return [f"bench-user-{i:02d}" for i in range(n)]


def _admin(pg: Any) -> Any:
    import psycopg

    return psycopg.connect(pg.admin_url, autocommit=True)


def settle(pg: Any) -> None:
    """Vacuum what the last run's writes and deletes left and flush dirty pages, so the
    measurements do not race autovacuum and the checkpointer (seen: handler p50 +20%)."""
    with _admin(pg) as conn:
        conn.execute("VACUUM (ANALYZE) memories, user_quotas")
        conn.execute("CHECKPOINT")


def cleanup_writes(pg: Any, users: Sequence[str]) -> None:
    """Erase what measurements wrote and re-align the users' quota counters."""
    with _admin(pg) as conn:
        conn.execute("DELETE FROM memories WHERE source_type = %s", (WRITE_SOURCE,))
        conn.execute(
            """UPDATE user_quotas q SET memory_count = c.n, daily_ingestions = 0
               FROM (SELECT user_id, count(*) AS n FROM memories WHERE NOT deleted GROUP BY user_id) c
               WHERE q.user_id = c.user_id AND q.user_id = ANY(%s)""",
            (list(users),),
        )


# The embedded server starts with PostgreSQL's default shared_buffers (128MB): smaller than the
# 100k-row working set, so every search read thousands of pages back from the OS cache (the
# vector step 5-10 ms instead of ~3). A managed database sizes it
# to ~25% of RAM; the bench asks for 1GB (applies from the next server start) and prewarms.
BENCH_SHARED_BUFFERS = "1GB"


def server_memory(pg: Any) -> dict[str, Any]:
    with _admin(pg) as conn:
        current = conn.execute("SHOW shared_buffers").fetchone()[0]
        wanted = conn.execute(
            "SELECT setting::bigint * 8192 < pg_size_bytes(%s) FROM pg_settings WHERE name = 'shared_buffers'",
            (BENCH_SHARED_BUFFERS,),
        ).fetchone()[0]
        if wanted:
            conn.execute(f"ALTER SYSTEM SET shared_buffers = '{BENCH_SHARED_BUFFERS}'")
            log(f"shared_buffers is {current}: set to {BENCH_SHARED_BUFFERS} for the next server start "
                "(stop the server in .local/pg-bench and re-run for representative numbers)")
        prewarmed = False
        if not wanted:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            # memories is partitioned (migration 0007): warm every partition and partition index
            for rel in ("memories", "memories_pkey", "memory_vectors", "memory_vectors_pkey", "memory_postings",
                        "memory_postings_impact", "memory_lexicon_pkey"):
                conn.execute("SELECT pg_prewarm(relid) FROM pg_partition_tree(%s::regclass) WHERE isleaf", (rel,))
            conn.execute("SELECT pg_prewarm(index_name::regclass) FROM memory_vector_graphs")
            prewarmed = True
    return {"shared_buffers": current, "prewarmed": prewarmed}


def ensure_loaded(pg: Any, users: list[str], per_user: int, reload: bool) -> dict[str, Any]:
    fingerprint = f"{DATASET_VERSION}:{SEED}:{len(users)}x{per_user}"
    with _admin(pg) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)")
        row = conn.execute("SELECT value FROM bench_meta WHERE key = 'dataset'").fetchone()
        counts = dict(conn.execute(
            "SELECT user_id, count(*) FROM memories WHERE source_type = 'bench' GROUP BY user_id"
        ).fetchall())
    if (not reload and row and row[0] == fingerprint
            and all(counts.get(u) == per_user for u in users)):
        log(f"reusing loaded database {DATABASE} ({fingerprint})")
        return {"reused": True, "fingerprint": fingerprint}

    log(f"loading {len(users)} users x {per_user:,} memories into {DATABASE} through /ingest/batch")
    with _admin(pg) as conn:
        conn.execute("DELETE FROM bench_meta")
        conn.execute("TRUNCATE memories, memory_audit_log, user_quotas CASCADE")  # and what references them
        conn.execute("TRUNCATE memory_vectors, memory_lexicon_totals, memory_lexicon, memory_postings")
        conn.execute("SELECT memory_vector_graphs_sync()")  # the emptied users' graphs go
    api = Handlers()
    progress = Progress(len(users) * per_user, "load")
    errors: list[BaseException] = []

    def load(mine: list[str]) -> None:
        try:
            for user in mine:
                for batch in synth.memory_batches(user, per_user, SEED):
                    api.store(batch)
                    progress.add(len(batch))
        except BaseException as exc:  # surfaced after join
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=load, args=(users[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    load_s = time.perf_counter() - t0
    log("building the per-user vector graphs and analysing ...")
    t1 = time.perf_counter()
    with _admin(pg) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SELECT memory_vector_graphs_sync(p_limit => 100000)")
        conn.execute("VACUUM ANALYZE memories, memory_vectors, memory_postings, memory_lexicon")
        conn.execute("INSERT INTO bench_meta VALUES ('dataset', %s)", (fingerprint,))
    index_s = time.perf_counter() - t1
    total = len(users) * per_user
    log(f"loaded {total:,} memories in {load_s:.0f}s ({total / load_s:,.0f}/s), index {index_s:.0f}s")
    return {"reused": False, "fingerprint": fingerprint, "load_seconds": round(load_s, 1),
            "load_per_s": round(total / load_s), "index_seconds": round(index_s, 1)}


# --- measurements -----------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def _write_items(rng: random.Random, users: Sequence[str], n: int, tag: str) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        user = rng.choice(users)
        item = next(synth.memories(user, 1, rng.randrange(1 << 30), source_type=WRITE_SOURCE))
        item["content"] += f" ({tag} {i})"  # never a duplicate of the loaded rows
        items.append(item)
    return items


def handler_level(api: Handlers, users: list[str], n_search: int, n_ingest: int) -> dict[str, Any]:
    rng = random.Random(1)
    queries = synth.queries(n_search + 50, SEED)
    for q in queries[:50]:  # warm-up: model, pool, plans
        api.search(q, rng.choice(users))
    # Baseline in the same run, interleaved so both see the same machine: the seed's ranking
    # (cosine only, search_mode=vector) through the same handler.
    search: list[float] = []
    seed_search: list[float] = []
    for i, q in enumerate(queries[50:]):
        user = rng.choice(users)
        for seed_mode in ((False, True) if i % 2 else (True, False)):
            if seed_mode:
                with settings_override(search_mode="vector"):
                    seed_search.append(_timed(lambda q=q, user=user: api.search(q, user)))
            else:
                search.append(_timed(lambda q=q, user=user: api.search(q, user)))
    items = _write_items(rng, users, n_ingest + 20, "handler")

    def one(item: dict[str, Any]) -> None:
        status, body = api.call("POST", "/ingest", item)
        if status != 201:
            raise RuntimeError(f"/ingest answered {status}: {body}")

    for item in items[:20]:
        one(item)
    ingest = [_timed(lambda it=it: one(it)) for it in items[20:]]
    return {"search_ms": percentiles(search), "search_seed_vector_ms": percentiles(seed_search),
            "ingest_ms": percentiles(ingest)}


def bulk_ingest(api: Handlers, users: list[str], batches: int) -> dict[str, Any]:
    rng = random.Random(2)
    out: dict[str, Any] = {}
    for callers in (1, 2):
        # one user per batch: a batch is one user's import (the realistic bulk case)
        work = []
        for b in range(batches):
            items = _write_items(rng, users[b % len(users): b % len(users) + 1], 100, f"bulk{callers}-{b}")
            work.append(items)
        t0 = time.perf_counter()

        def run(mine: list[list[dict[str, Any]]]) -> None:
            for items in mine:
                api.store(items)

        threads = [threading.Thread(target=run, args=(work[i::callers],)) for i in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        out[f"{callers}_caller"] = {"memories": batches * 100, "seconds": round(dt, 2),
                                    "per_s": round(batches * 100 / dt)}
    return out


# --- HTTP -------------------------------------------------------------------------------------


def start_gateway(pg: Any, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    api_port, invoke_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(bench_env(pg.app_url))
    env.update(extra_env or {})
    env.update({
        "DATABASE_ADMIN_URL": pg.admin_url, "DATABASE_URL": pg.app_url, "MEMORY_API_KEY": BENCH_KEY,
        "LOCAL_API_PORT": str(api_port), "LOCAL_INVOKE_PORT": str(invoke_port),
        "LOCAL_SCHEDULER": "0", "LOCAL_SUBSCRIBER": "0", "LOCAL_WORKERS": "64",
        "PYTHONPATH": str(REPO),
    })
    logfile = open(REPO / "bench" / "results" / f"gateway-{api_port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "local.run"], cwd=REPO, env=env,
                            stdout=logfile, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{api_port}"
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"local gateway exited with {proc.returncode}; see bench/results/gateway-{api_port}.log")
        try:
            r = httpx.get(f"{url}/health", headers={"X-API-Key": BENCH_KEY}, timeout=2)
            if r.status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("local gateway did not become ready within 90 s; see bench/results/gateway-{api_port}.log")


def stop_gateway(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def http_single(url: str, users: list[str], n_search: int, n_ingest: int) -> dict[str, Any]:
    import httpx

    rng = random.Random(3)
    headers = {"X-API-Key": BENCH_KEY}
    queries = synth.queries(n_search + 30, SEED + 1)
    items = _write_items(rng, users, n_ingest + 10, "http")
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        def search(q: str) -> None:
            r = client.post("/search", json={"query": q, "user_id": rng.choice(users), "top_k": 10})
            if r.status_code != 200:
                raise RuntimeError(f"/search answered {r.status_code}: {r.text[:200]}")

        def ingest(item: dict[str, Any]) -> None:
            r = client.post("/ingest", json=item)
            if r.status_code != 201:
                raise RuntimeError(f"/ingest answered {r.status_code}: {r.text[:200]}")

        for q in queries[:30]:
            search(q)
        s = [_timed(lambda q=q: search(q)) for q in queries[30:]]
        for it in items[:10]:
            ingest(it)
        i = [_timed(lambda it=it: ingest(it)) for it in items[10:]]
    return {"search_ms": percentiles(s), "ingest_ms": percentiles(i)}


def http_mixed(url: str, users: list[str], clients: int, seconds: float,
               queries: list[str] | None = None) -> dict[str, Any]:
    import asyncio

    import httpx

    queries = queries or synth.queries(2000, SEED + 2)
    lat: dict[str, list[float]] = {"search": [], "ingest": []}
    errors: dict[str, int] = {}
    counter = [0]

    async def worker(wid: int, client: httpx.AsyncClient, stop_at: float) -> None:
        rng = random.Random(100 + wid)
        while time.perf_counter() < stop_at:
            user = rng.choice(users)
            if rng.random() < 0.8:
                kind, path, expect = "search", "/search", 200
                body: dict[str, Any] = {"query": rng.choice(queries), "user_id": user, "top_k": 10}
            else:
                counter[0] += 1
                kind, path, expect = "ingest", "/ingest", 201
                body = _write_items(rng, [user], 1, f"mixed-{wid}-{counter[0]}")[0]
            t = time.perf_counter()
            try:
                r = await client.post(path, json=body)
                status = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__  # type: ignore[assignment]
            ms = (time.perf_counter() - t) * 1000
            if status == expect:
                lat[kind].append(ms)
            else:
                key = f"{kind}:{status}"
                errors[key] = errors.get(key, 0) + 1

    async def run() -> float:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": BENCH_KEY}, timeout=60,
                                     limits=limits) as client:
            t0 = time.perf_counter()
            stop_at = t0 + seconds
            await asyncio.gather(*(worker(w, client, stop_at) for w in range(clients)))
            return time.perf_counter() - t0

    elapsed = asyncio.run(run())
    ok = len(lat["search"]) + len(lat["ingest"])
    n_err = sum(errors.values())
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": ok + n_err,
        "throughput_rps": round((ok + n_err) / elapsed, 1), "ok_rps": round(ok / elapsed, 1),
        "errors": n_err, "error_kinds": errors,
        "all_ms": percentiles(lat["search"] + lat["ingest"]),
        "search_ms": percentiles(lat["search"]), "ingest_ms": percentiles(lat["ingest"]),
    }


# --- cold start -------------------------------------------------------------------------------


def cold_start(pg: Any, user: str, runs: int, with_torch: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(bench_env(pg.app_url))
    env["PYTHONPATH"] = str(REPO)
    script = str(REPO / "bench" / "coldstart.py")
    pythons = {"int8 onnx": sys.executable}
    if with_torch:
        from bench import torch_venv

        pythons["torch (sentence-transformers)"] = str(torch_venv.ensure())
    out: dict[str, Any] = {}
    for name, py in pythons.items():
        kind = "onnx" if "onnx" in name else "torch"
        samples = []
        for _ in range(runs):
            t0 = time.time()
            res = subprocess.run([py, "-X", "frozen_modules=off", script, kind, user, "what food do I like"],
                                 env=env, capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                raise RuntimeError(f"cold start ({name}) failed: {res.stderr[-2000:]}")
            mark = json.loads(res.stdout.strip().splitlines()[-1])
            if mark["status"] != 200:
                raise RuntimeError(f"cold start ({name}): /search answered {mark['status']}")
            samples.append({
                "total_s": round(mark["t_done"] - t0, 3),
                "interpreter_s": round(mark["t_main"] - t0, 3),
                "imports_and_model_s": round(mark["t_import1"] - mark["t_import0"], 3),
                "first_search_s": round(mark["t_done"] - mark["t_import1"], 3),
            })
        out[name] = {"runs": samples, "median_total_s": statistics.median(s["total_s"] for s in samples)}
    return out


# --- report -----------------------------------------------------------------------------------


def report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"\ncoda-memory bench -- {m['nproc']} CPUs ({m['cpu']}), {m['mem_gb']} GB, Python {m['python']}; "
          f"load average at start {res['loadavg_start']}")
    print(f"data: {res['rows']:,} memories ({res['users']} users x {res['per_user']:,}); "
          f"load: {res['load']}")
    rows: list[tuple[str, str, str]] = []

    def lat(d: dict[str, Any] | None) -> str:
        return f"{d['p50']:.1f} / {d['p95']:.1f} / {d['p99']:.1f} (n={d['n']})" if d and d.get("n") else "-"

    h, t = res.get("handler"), TARGETS
    if h:
        rows.append(("search, 1 client, handler (p50/p95/p99 ms)", lat(h["search_ms"]),
                     f"p95 <= {t['search_handler_p95']}"))
        if h.get("search_seed_vector_ms"):
            rows.append(("  baseline: seed ranking (cosine only), same run", lat(h["search_seed_vector_ms"]), ""))
        rows.append(("ingest, 1 client, handler", lat(h["ingest_ms"]), f"p95 <= {t['ingest_handler_p95']}"))
    hs = res.get("http_single")
    if hs:
        rows.append(("search, 1 client, HTTP", lat(hs["search_ms"]), f"p95 <= {t['search_http_p95']}"))
        rows.append(("ingest, 1 client, HTTP", lat(hs["ingest_ms"]), f"p95 <= {t['ingest_http_p95']}"))
    mx = res.get("http_mixed")
    if mx:
        rows.append((f"{mx['clients']} clients 80/20 mixed, HTTP, {mx['seconds']}s",
                     f"{mx['throughput_rps']} req/s, errors {mx['errors']}, all {lat(mx['all_ms'])}",
                     f">= {t['mixed_rps']} req/s, 0 errors, p95 <= {t['mixed_p95']}"))
        rows.append(("  of which search / ingest", f"{lat(mx['search_ms'])} / {lat(mx['ingest_ms'])}", ""))
    b = res.get("bulk")
    if b:
        rows.append(("bulk ingest /ingest/batch (100/call)",
                     f"{b['1_caller']['per_s']:,}/s (1 caller), {b['2_caller']['per_s']:,}/s (2 callers)",
                     f">= {t['bulk_per_s']:,}/s"))
    c = res.get("cold_start")
    if c:
        for name, v in c.items():
            parts = ", ".join(f"{s['total_s']:.2f}" for s in v["runs"])
            rows.append((f"cold start to first search: {name}", f"{v['median_total_s']:.2f} s (runs {parts})",
                         f"<= {t['cold_start_s']} s" if "onnx" in name else "(baseline, ~5 s)"))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\n| {'measure':<{w[0]}} | {'result':<{w[1]}} | {'target':<{w[2]}} |")
    print(f"|{'-' * (w[0] + 2)}|{'-' * (w[1] + 2)}|{'-' * (w[2] + 2)}|")
    for r in rows:
        print(f"| {r[0]:<{w[0]}} | {r[1]:<{w[1]}} | {r[2]:<{w[2]}} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--per-user", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=30.0, help="duration of the 50-client mixed run")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--samples", type=int, default=500, help="single-client searches (ingests: 2/5 of it)")
    p.add_argument("--cold-runs", type=int, default=3)
    p.add_argument("--reload", action="store_true", help="reload the data even if it is cached")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-cold", action="store_true")
    p.add_argument("--skip-torch", action="store_true", help="cold start without the torch baseline")
    p.add_argument("--skip-growth", action="store_true", help="skip the growth scenario (bench/growth.py)")
    args = p.parse_args(argv)

    from local.services import start_postgres

    res: dict[str, Any] = {"machine": machine(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                           "users": args.users, "per_user": args.per_user, "targets": TARGETS}
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    pg = start_postgres(BENCH_PG_DIR, database=DATABASE)
    apply_env(bench_env(pg.app_url))
    users = user_ids(args.users)
    cleanup_writes(pg, users)
    res["load"] = ensure_loaded(pg, users, args.per_user, args.reload)
    settle(pg)
    res["server"] = server_memory(pg)
    with _admin(pg) as conn:
        res["rows"] = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
    api = Handlers()
    try:
        log("handler level, one client ...")
        res["handler"] = handler_level(api, users, args.samples, args.samples * 2 // 5)
        log("bulk ingest ...")
        res["bulk"] = bulk_ingest(api, users, 20)
        if not args.skip_http:
            log("HTTP level: starting the local gateway ...")
            proc, url = start_gateway(pg)
            try:
                log(f"HTTP level, one client ({url}) ...")
                res["http_single"] = http_single(url, users, args.samples, args.samples * 2 // 5)
                log(f"HTTP level, {args.clients} clients for {args.seconds:.0f}s ...")
                res["http_mixed"] = http_mixed(url, users, args.clients, args.seconds)
            finally:
                stop_gateway(proc)
        if not args.skip_cold:
            log("cold start ...")
            res["cold_start"] = cold_start(pg, users[0], args.cold_runs, not args.skip_torch)
    finally:
        cleanup_writes(pg, users)
    report(res)
    print(f"\nwrote {write_json('bench', res)}")
    if not args.skip_growth:
        from bench import growth

        log("growth scenario (bench/growth.py) ...")
        return growth.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
