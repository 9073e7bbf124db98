"""HTTP load through the local gateway with wrk (Debian ``wrk``; not installed by CI).

    python -m bench.wrk_mix [--clients 50] [--seconds 30] [--single 300]

Users: ``bench-user-00`` with 10,000 synthetic memories (the load of ``bench/run.py``) and
``bench-user-50k`` with 50,000 (five copies of the first user's memories, text suffixed so each
is its own memory, embeddings copied: built in seconds by SQL instead of an hour of ingest). The
local gateway (``python -m local.run``: SAM's local API Gateway and the in-process functions,
``LOCAL_SCHEDULER=0``) is started on free ports with the bench environment.

1. one client, search only, per user: p50/p95/p99 (wrk ``-c1``);
2. ``--clients`` clients, 80% search / 20% ingest over both users, ``--seconds``: req/s,
   p50/p95/p99, errors (socket errors and non-2xx answers);
3. CPU per request of the gateway process (functions included) and of the PostgreSQL server
   (every process of the bench's server: backends, io workers, WAL writer), from ``/proc``,
   so that a number measured on a shared machine can be read against the others' load.

Ingested memories (``source_type`` ``bench-write``) are erased afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import synth
from bench.common import BENCH_KEY, BENCH_PG_DIR, REPO, apply_env, bench_env, machine, write_json

SMALL, LARGE = "bench-user-00", "bench-user-50k"
LUA = REPO / "bench" / "wrk_mix.lua"
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_large_user(pg: Any, copies: int = 5) -> None:
    """``LARGE`` = ``copies`` copies of ``SMALL``'s bench memories (built once)."""
    import psycopg

    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM memories WHERE user_id = %s AND source_type = 'bench'",
                            (LARGE,)).fetchone()[0]
        base = conn.execute("SELECT count(*) FROM memories WHERE user_id = %s AND source_type = 'bench'",
                            (SMALL,)).fetchone()[0]
        # the copies bypass ingest: the quota row says what they hold, with room for the run's ingests
        conn.execute(
            """INSERT INTO user_quotas (user_id, memory_count, max_memories, max_daily_ingestions)
               VALUES (%s, %s, 1000000, 1000000)
               ON CONFLICT (user_id) DO UPDATE SET memory_count = excluded.memory_count,
                   max_memories = excluded.max_memories, max_daily_ingestions = excluded.max_daily_ingestions""",
            (LARGE, base * copies))
        if have == base * copies:
            return
        log(f"building {LARGE}: {copies} x {base:,} memories copied from {SMALL} ...")
        conn.execute("DELETE FROM memories WHERE user_id = %s", (LARGE,))
        cols = [r[0] for r in conn.execute(
            """SELECT column_name FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = 'memories' AND is_generated = 'NEVER'
                 AND column_name NOT IN ('id', 'user_id', 'content', 'content_hash') ORDER BY ordinal_position"""
        ).fetchall()]
        listed = ", ".join(cols)
        from_m = ", ".join(f"m.{c}" for c in cols)
        conn.execute(
            f"""INSERT INTO memories (id, user_id, content, content_hash, {listed})
                SELECT gen_random_uuid(), %s, m.content || ' (' || g || ')',
                       md5(m.content || ' (' || g || ')'), {from_m}
                FROM memories m, generate_series(1, %s) g WHERE m.user_id = %s AND m.source_type = 'bench'""",
            (LARGE, copies, SMALL))
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SELECT memory_vector_graphs_sync(p_limit => 100000)")
        conn.execute("VACUUM ANALYZE memories, memory_vectors, memory_postings, memory_lexicon")


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int(p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _pg_pids() -> list[int]:
    pidfile = BENCH_PG_DIR / "postmaster.pid"
    postmaster = int(pidfile.read_text().splitlines()[0])
    return [postmaster, *_children(postmaster)]


def run_wrk(url: str, users: list[str], share: float, clients: int, seconds: float, queries: Path,
            gateway_pid: int) -> dict[str, Any]:
    env = {**os.environ, "WRK_KEY": BENCH_KEY, "WRK_USERS": ",".join(users), "WRK_SEARCH_SHARE": str(share),
           "WRK_QUERIES": str(queries)}
    threads = min(2, clients)
    pg_before = {p: _proc_cpu_s(p) for p in _pg_pids()}
    gw_before = _proc_cpu_s(gateway_pid)
    load_before = os.getloadavg()[0]
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "10s",
                          "-s", str(LUA), url], env=env, capture_output=True, text=True, check=True).stdout
    gw_cpu = _proc_cpu_s(gateway_pid) - gw_before
    pg_cpu = sum(_proc_cpu_s(p) - pg_before.get(p, 0.0) for p in _pg_pids())
    m = re.search(r"RESULT (.*)", out)
    if not m:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    n = max(1, r["requests"])
    return {
        "clients": clients, "seconds": seconds, "search_share": share, "users": users,
        "requests": r["requests"], "req_per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000, "p95_ms": r["p95_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": sum(r[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout"))
        + (int(non2xx.group(1)) if non2xx else 0),
        "gateway_cpu_ms_per_request": round(gw_cpu * 1000 / n, 2),
        "postgres_cpu_ms_per_request": round(pg_cpu * 1000 / n, 2),
        "loadavg_1m_before": round(load_before, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--single", type=float, default=15.0, help="seconds of the one-client runs, per user")
    p.add_argument("--skip-single", action="store_true")
    args = p.parse_args(argv)

    from bench.run import DATABASE, cleanup_writes, ensure_loaded, server_memory, settle, start_gateway, stop_gateway
    from local.services import start_postgres

    pg = start_postgres(BENCH_PG_DIR, database=DATABASE)
    apply_env(bench_env(pg.app_url))
    users = [SMALL, LARGE]
    cleanup_writes(pg, [SMALL])
    ensure_loaded(pg, [SMALL], 10_000, reload=False)
    ensure_large_user(pg)
    settle(pg)
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                           "server": server_memory(pg)}
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(q.replace("\n", " ") for q in synth.queries(500, 99)))
        queries = Path(f.name)
    proc, url = start_gateway(pg)
    try:
        run_wrk(url, users, 1.0, 4, 5, queries, proc.pid)  # warm-up: plans, caches
        if not args.skip_single:
            for user in users:
                log(f"one client, search only, {user} ...")
                res[f"single_{user}"] = run_wrk(url, [user], 1.0, 1, args.single, queries, proc.pid)
        log(f"{args.clients} clients, 80% search / 20% ingest, {args.seconds:.0f}s ...")
        res["mixed"] = run_wrk(url, users, 0.8, args.clients, args.seconds, queries, proc.pid)
    finally:
        stop_gateway(proc)
        cleanup_writes(pg, users)
        queries.unlink()
    for k, v in res.items():
        if isinstance(v, dict) and "req_per_s" in v:
            print(f"{k:28} {v['req_per_s']:>7} req/s  p50/p95/p99 {v['p50_ms']:.1f}/{v['p95_ms']:.1f}/"
                  f"{v['p99_ms']:.1f} ms  errors {v['errors']}  CPU/request gateway {v['gateway_cpu_ms_per_request']}"
                  f" ms, PostgreSQL {v['postgres_cpu_ms_per_request']} ms  (load {v['loadavg_1m_before']})")
    print(f"wrote {write_json('wrk_mix', res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
