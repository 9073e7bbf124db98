"""Inputs of the capacity model (docs/capacity.md), measured on this project's code:

* **bytes per memory** in every structure of ``memories`` (heap, TOAST, each index summed over
  the 32 partitions: btrees, GIN tags, GIN full text, HNSW) and of the audit log, from
  ``pg_relation_size`` / ``pg_total_relation_size`` on a database loaded through the real
  ingest handler with the indexes in place (incremental HNSW inserts, as production grows);
* **PostgreSQL CPU per request**: user + system CPU of the one server backend that serves the
  handlers (``/proc/<pid>/stat``, pool of one connection, as on Lambda), over N searches and N
  single ingests through the real handlers;
* **function CPU and wall time per request**: this process's CPU (embedding, FastAPI, psycopg,
  the BM25 helper thread) and the wall time of each handler call;
* the vector step when a partition is crowded with other users: the exact (no index) nearest
  50 over one user's rows, which is what a search costs at most once HNSW stops paying off.

    python -m bench.capacity [--users 2] [--per-user 10000] [--searches 300] [--ingests 200]

Own embedded PostgreSQL in ``.local/pg-capacity`` (database ``coda_capacity``, reloaded when the
requested shape differs). Prints a table; JSON to ``bench/results/capacity-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench import synth
from bench.common import REPO, Handlers, apply_env, bench_env, machine, percentiles, write_json

PG_DIR = REPO / ".local" / "pg-capacity"
DATABASE = "coda_capacity"
SEED = 14
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[capacity {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def load(pg: Any, api: Handlers, users: list[str], per_user: int) -> dict[str, Any]:
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        have = dict(conn.execute("SELECT user_id, count(*) FROM memories GROUP BY user_id").fetchall())
        if set(have) == set(users) and all(have[u] == per_user for u in users):
            log(f"reusing {len(users)} x {per_user:,} memories")
            return {"reused": True}
        conn.execute("TRUNCATE memories, memory_audit_log, user_quotas")
    log(f"loading {len(users)} users x {per_user:,} memories through /ingest/batch (indexes in place)")
    t0 = time.perf_counter()
    done = 0
    for user in users:
        for batch in synth.memory_batches(user, per_user, SEED):
            api.store(batch)
            done += len(batch)
            if done % 2000 == 0:
                log(f"  {done:,} loaded ({done / (time.perf_counter() - t0):,.0f}/s)")
    seconds = time.perf_counter() - t0
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) memories, memory_audit_log, user_quotas")
        conn.execute("CHECKPOINT")
    return {"reused": False, "seconds": round(seconds, 1), "per_s": round(len(users) * per_user / seconds)}


STORAGE_SQL = """
WITH leaves AS (SELECT relid FROM pg_partition_tree('memories') WHERE isleaf)
SELECT 'heap (main fork)' AS part, sum(pg_relation_size(relid, 'main')) AS bytes FROM leaves
UNION ALL SELECT 'heap (free space + visibility maps)',
       sum(pg_relation_size(relid, 'fsm') + pg_relation_size(relid, 'vm')) FROM leaves
UNION ALL SELECT 'TOAST (table + index)', sum(pg_total_relation_size(c.reltoastrelid))
       FROM leaves l JOIN pg_class c ON c.oid = l.relid WHERE c.reltoastrelid <> 0
UNION ALL SELECT 'index ' || pi.relname || ' (' || am.amname || ')', sum(pg_relation_size(i.indexrelid))
       FROM leaves l JOIN pg_index i ON i.indrelid = l.relid
       JOIN pg_inherits h ON h.inhrelid = i.indexrelid JOIN pg_class pi ON pi.oid = h.inhparent
       JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
       GROUP BY pi.relname, am.amname
UNION ALL SELECT 'total memories (pg_total_relation_size)', sum(pg_total_relation_size(relid)) FROM leaves
"""


def storage(pg: Any) -> dict[str, Any]:
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*), count(*) FILTER (WHERE NOT deleted), "
                            "avg(length(content)), avg(pg_column_size(m.*)) FROM memories m").fetchone()
        assert rows is not None
        n, live, avg_chars, avg_row = rows
        parts = [(str(p), int(b or 0)) for p, b in conn.execute(STORAGE_SQL).fetchall()]
        audit = conn.execute("SELECT count(*), pg_total_relation_size('memory_audit_log') "
                             "FROM memory_audit_log").fetchone()
        quotas = conn.execute("SELECT count(*), pg_total_relation_size('user_quotas') FROM user_quotas").fetchone()
    assert audit is not None and quotas is not None
    return {
        "memories": int(n), "live": int(live), "avg_content_chars": round(float(avg_chars), 1),
        "avg_row_bytes": round(float(avg_row), 1),
        "parts": [{"part": p, "bytes": b, "bytes_per_memory": round(b / n, 1)} for p, b in parts],
        "audit_rows": int(audit[0]), "audit_bytes": int(audit[1]),
        "audit_bytes_per_row": round(int(audit[1]) / max(1, int(audit[0])), 1),
        "quota_rows": int(quotas[0]), "quota_bytes": int(quotas[1]),
    }


def backend_pid(pg: Any) -> int:
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'coda_app' AND datname = %s", (DATABASE,))]
    if len(pids) != 1:
        raise RuntimeError(f"expected one coda_app backend (pool of one), found {len(pids)}")
    return int(pids[0])


def measure(pg: Any, name: str, n: int, call: Callable[[int], None]) -> dict[str, Any]:
    call(-1)  # the connection exists and this request's code is warm
    pid = backend_pid(pg)
    walls: list[float] = []
    db0, py0 = proc_cpu_s(pid), time.process_time()
    for i in range(n):
        t = time.perf_counter()
        call(i)
        walls.append((time.perf_counter() - t) * 1000)
    db_ms = (proc_cpu_s(pid) - db0) * 1000 / n
    py_ms = (time.process_time() - py0) * 1000 / n
    if backend_pid(pg) != pid:
        raise RuntimeError("the pool replaced its connection during the measurement")
    log(f"{name}: postgres {db_ms:.2f} ms CPU, function {py_ms:.2f} ms CPU, wall {percentiles(walls)}")
    return {"n": n, "postgres_cpu_ms": round(db_ms, 3), "function_cpu_ms": round(py_ms, 3),
            "wall_ms": percentiles(walls)}


def exact_vector_step(pg: Any, user: str, runs: int = 30) -> dict[str, Any]:
    """The nearest 50 over one user's rows without the HNSW index (sequential over the user's
    rows in its partition), as the app role under RLS."""
    queries = synth.queries(runs, SEED + 1)
    from coda_memory import runtime

    embedder = runtime.embedder()
    vectors = [embedder.embed([q])[0] for q in queries]
    with psycopg.connect(pg.app_url, autocommit=False) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        conn.rollback()
        cpu0, t0 = proc_cpu_s(pid), time.perf_counter()
        for vec in vectors:
            with conn.transaction():
                conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user,))
                conn.execute("SET LOCAL enable_indexscan = off")
                conn.execute("SELECT id FROM memories WHERE user_id = %s AND NOT deleted AND NOT archived "
                             "ORDER BY embedding <=> %s LIMIT 50", (user, vec)).fetchall()
        cpu = (proc_cpu_s(pid) - cpu0) * 1000 / runs
        wall = (time.perf_counter() - t0) * 1000 / runs
    log(f"exact vector step over one user's rows: postgres {cpu:.2f} ms CPU, wall {wall:.2f} ms")
    return {"runs": runs, "postgres_cpu_ms": round(cpu, 3), "wall_ms": round(wall, 3)}


_NEAREST = ("SELECT id FROM memories WHERE user_id = %s AND NOT deleted AND NOT archived "
            "ORDER BY embedding <=> %s LIMIT 50")


def crowding(pg: Any, host: str, sizes: tuple[int, ...] = (1000, 300, 100), runs: int = 30) -> list[dict[str, Any]]:
    """The HNSW step for a user who shares a partition's graph with ``host``'s 10k rows: a probe
    user with ``size`` rows (perturbed copies of the host's, so distributed like real memories)
    in the same partition, its share of the graph ~size/(size+10k). Measures the nearest-50
    query as the app runs it (RLS, iterative scan, transaction-local settings)."""
    import numpy as np
    from pgvector.psycopg import register_vector

    out = []
    rng = np.random.default_rng(SEED)
    queries = synth.queries(runs, SEED + 2)
    from coda_memory import runtime

    vectors = [runtime.embedder().embed([q])[0] for q in queries]
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        register_vector(admin)
        part = admin.execute("SELECT tableoid::regclass::text FROM memories WHERE user_id = %s LIMIT 1",
                             (host,)).fetchone()[0]  # type: ignore[index]
        remainder = int(part.rsplit("_p", 1)[1])
        for size in sizes:
            probe = admin.execute(
                "SELECT c FROM (SELECT 'probe-' || g || '-' || %s AS c FROM generate_series(1, 10000) g) x "
                "WHERE satisfies_hash_partition('memories'::regclass, 32, %s, c) LIMIT 1",
                (size, remainder)).fetchone()[0]  # type: ignore[index]
            rows = admin.execute("SELECT content, content_type, embedding FROM memories WHERE user_id = %s "
                                 "ORDER BY id LIMIT %s", (host, size)).fetchall()
            with admin.cursor() as cur:
                for i, (content, ctype, emb) in enumerate(rows):
                    v = np.asarray(emb.to_numpy(), dtype=np.float32) + rng.normal(0, 0.02, 384).astype(np.float32)
                    cur.execute("INSERT INTO memories (user_id, content, content_type, embedding, source_type, "
                                "content_hash) VALUES (%s, %s, %s, %s, 'capacity-probe', %s)",
                                (probe, content, ctype, v / np.linalg.norm(v), f"probe-{i}"))
            share = admin.execute("SELECT count(*) FILTER (WHERE user_id = %s)::float8 / count(*) FROM " + part,
                                  (probe,)).fetchone()[0]  # type: ignore[index]
            admin.execute("ANALYZE " + part)  # the planner sees the probe user, as it would in production
            row: dict[str, Any] = {"probe_rows": size, "host_rows": len(rows), "share_of_graph": round(float(share), 4),
                                   "users_equivalent": round(1 / float(share), 1)}
            # as the app runs it (the planner chooses), then with the HNSW walk forced
            for mode, forced in (("planner", ""), ("hnsw_forced", ", set_config('enable_sort', 'off', true), "
                                                   "set_config('enable_bitmapscan', 'off', true)")):
                with psycopg.connect(pg.app_url) as conn:
                    register_vector(conn)
                    pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
                    conn.rollback()
                    found, plans = [], set()
                    cpu0, t0 = proc_cpu_s(pid), time.perf_counter()
                    for vec in vectors:
                        with conn.transaction():
                            conn.execute("SELECT set_config('app.current_user_id', %s, true), "
                                         "set_config('hnsw.iterative_scan', 'relaxed_order', true)" + forced, (probe,))
                            plan = json.dumps(conn.execute("EXPLAIN (FORMAT JSON) " + _NEAREST,
                                                           (probe, vec)).fetchall())
                            # the partitions' HNSW indexes are named memories_pNN_embedding_idx
                            plans.add("hnsw" if "_embedding_" in plan else "btree + sort")
                            found.append(len(conn.execute(_NEAREST, (probe, vec)).fetchall()))
                    cpu = (proc_cpu_s(pid) - cpu0) * 1000 / runs
                    wall = (time.perf_counter() - t0) * 1000 / runs
                row[mode] = {"plan": sorted(plans), "postgres_cpu_ms": round(cpu, 2), "wall_ms": round(wall, 2),
                             "min_found": min(found)}
                log(f"crowding: share {share:.4f} (~{1 / share:.0f} users per graph), {mode}: {sorted(plans)} "
                    f"postgres {cpu:.2f} ms CPU (incl. EXPLAIN), wall {wall:.2f} ms, found >= {min(found)} of 50")
            admin.execute("DELETE FROM memories WHERE user_id = %s", (probe,))
            out.append(row)
    return out


def report(res: dict[str, Any]) -> None:
    st = res["storage"]
    print(f"\nstorage: {st['memories']:,} memories, {st['avg_content_chars']} chars of content on average")
    print(f"{'structure':58} {'bytes':>12} {'bytes/memory':>13}")
    for p in st["parts"]:
        print(f"{p['part']:58} {p['bytes']:>12,} {p['bytes_per_memory']:>13,.0f}")
    print(f"{'memory_audit_log (' + str(st['audit_rows']) + ' rows)':58} {st['audit_bytes']:>12,} "
          f"{st['audit_bytes_per_row']:>10,.0f}/row")
    print("\nper request (pool of one connection):")
    for key in ("search", "ingest"):
        m = res[key]
        print(f"  {key:7} postgres CPU {m['postgres_cpu_ms']:.2f} ms, function CPU {m['function_cpu_ms']:.2f} ms, "
              f"wall p50/p95 {m['wall_ms']['p50']}/{m['wall_ms']['p95']} ms (n={m['n']})")
    ev = res["exact_vector_step"]
    print(f"  exact nearest-50 over one user's rows (no HNSW): postgres CPU {ev['postgres_cpu_ms']:.2f} ms")
    for c in res.get("crowding", []):
        print(f"  nearest-50 for a user with {c['share_of_graph']:.2%} of its partition's graph "
              f"(~{c['users_equivalent']:.0f} users per graph): planner {c['planner']['plan']} "
              f"{c['planner']['postgres_cpu_ms']:.2f} ms CPU; HNSW walk forced "
              f"{c['hnsw_forced']['postgres_cpu_ms']:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--per-user", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--ingests", type=int, default=200)
    parser.add_argument("--crowding-only", action="store_true",
                        help="only the shared-graph probe, on the loaded database")
    args = parser.parse_args(argv)

    from local.services import start_postgres

    pg = start_postgres(PG_DIR, database=DATABASE)
    env = {**bench_env(pg.app_url), "MEMORY_DB_POOL_MAX": "1"}  # one connection, as on Lambda
    apply_env(env)
    api = Handlers()
    users = [f"cap-user-{i:02d}" for i in range(args.users)]
    loaded = load(pg, api, users, args.per_user)
    if args.crowding_only:
        write_json("capacity-crowding", {"machine": machine(), "crowding": crowding(pg, users[0])})
        return 0
    res: dict[str, Any] = {"machine": machine(), "users": args.users, "per_user": args.per_user, "load": loaded}
    res["storage"] = storage(pg)

    rng = random.Random(SEED)
    queries = synth.queries(args.searches + 1, SEED)
    res["search"] = measure(pg, "search", args.searches,
                            lambda i: api.search(queries[i], rng.choice(users), top_k=10) and None)
    writes = [next(synth.memories(rng.choice(users), 1, rng.randrange(1 << 30), source_type="capacity"))
              for _ in range(args.ingests + 1)]

    def ingest(i: int) -> None:
        item = dict(writes[i])
        item["content"] += f" (capacity write {time.time_ns()})"  # never a duplicate
        status, body = api.call("POST", "/ingest", item)
        if status != 201:
            raise RuntimeError(f"/ingest answered {status}: {body}")

    res["ingest"] = measure(pg, "ingest", args.ingests, ingest)
    res["exact_vector_step"] = exact_vector_step(pg, users[0])
    res["crowding"] = crowding(pg, users[0])
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:  # keep the loaded shape for a re-run
        conn.execute("DELETE FROM memories WHERE source_type = 'capacity'")
        conn.execute("UPDATE user_quotas q SET memory_count = c.n FROM (SELECT user_id, count(*) AS n "
                     "FROM memories GROUP BY user_id) c WHERE q.user_id = c.user_id")
    report(res)
    log(f"JSON: {write_json('capacity', res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
