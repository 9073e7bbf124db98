"""What durability costs: access statistics written with the search, and commits that wait
for the WAL flush.

**Search.**
``POST /search`` through the real retrieve handler, one user with ``--memories`` memories,
``--samples`` searches with the statistics written in the search's transaction (the service
as it is) interleaved with the same searches with the UPDATE left out (the cost floor: what a
search costs when nothing is written). Then the same with ``--threads`` clients searching one
user at once (the UPDATEs of concurrent searches lock the same rows). The service commits the
search's transaction without waiting for its WAL flush (``synchronous_commit`` off for that
transaction: it carries no acknowledged write); a third variant waits for the flush, as a
search did while the statistics were first moved into its transaction, to show that cost.

**Ingest.** ``POST /ingest`` one memory at a time with the server's default
(``synchronous_commit = on``: the answer waits for the WAL flush) and with the app role set to
``synchronous_commit = off`` (what the embedded server used to run with), in alternating
blocks (the pool is rebuilt between blocks so its connections take the setting).

    .venv/bin/python -m bench.durability [--memories 2000] [--samples 300] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from bench import synth
from bench.common import BENCH_PG_DIR, Handlers, apply_env, bench_env, machine, percentiles, write_json

DATABASE = "coda_bench_durability"
USER = "bench-access-user"


@contextmanager
def variant(name: str) -> Iterator[None]:
    """``stats``: the service as it is; ``none``: the search without its UPDATE (the floor);
    ``sync``: the UPDATE with a commit that waits for the WAL flush (measurement only)."""
    from coda_memory.usecases import search

    saved = search.record_access

    def synchronous(cur: Any, user_id: str, ids: Any) -> None:
        saved(cur, user_id, ids)
        cur.execute("SELECT set_config('synchronous_commit', 'on', true)")

    search.record_access = {"stats": saved, "none": lambda *_: None, "sync": synchronous}[name]
    try:
        yield
    finally:
        search.record_access = saved


VARIANTS = ("stats", "none", "sync")


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def single(api: Handlers, queries: list[str]) -> dict[str, Any]:
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i, q in enumerate(queries):
        order = VARIANTS[i % 3:] + VARIANTS[:i % 3]  # rotate: every variant sees the same machine
        for name in order:
            with variant(name):
                samples[name].append(_timed(lambda q=q: api.search(q, USER)))
    return {f"{name}_ms": percentiles(s) for name, s in samples.items()}


def concurrent(api: Handlers, queries: list[str], threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in VARIANTS:
        def one(q: str) -> float:
            return _timed(lambda: api.search(q, USER))

        with variant(name):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                samples = list(pool.map(one, queries))
            wall = time.perf_counter() - t0
        out[f"{name}_ms"] = percentiles(samples)
        out[f"{name}_per_s"] = round(len(samples) / wall, 1)
    return out


def _role_commit_mode(pg: Any, mode: str) -> None:
    """``synchronous_commit`` for new sessions of the app role; the pool is rebuilt."""
    import psycopg
    import psycopg.sql

    from coda_memory import runtime

    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("ALTER ROLE {} IN DATABASE {} SET synchronous_commit = {}").format(
            psycopg.sql.Identifier("coda_app"), psycopg.sql.Identifier(DATABASE), psycopg.sql.Literal(mode)))
    db = runtime.database.peek()
    if db is not None:
        db.close()
    runtime.database.clear()


def ingest(api: Handlers, pg: Any, samples: int, blocks: int = 6) -> dict[str, Any]:
    out: dict[str, list[float]] = {"on": [], "off": []}
    items = iter(synth.memories(USER, samples + blocks * 5, 99))
    try:
        for b in range(blocks):
            mode = ("on", "off")[b % 2]
            _role_commit_mode(pg, mode)
            for _ in range(5):  # new connections, plans
                api.call("POST", "/ingest", next(items))
            for _ in range(samples // blocks):
                item = next(items)
                out[mode].append(_timed(lambda item=item: api.call("POST", "/ingest", item)))
    finally:
        _role_commit_mode(pg, "on")
    return {f"synchronous_commit_{m}_ms": percentiles(s) for m, s in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memories", type=int, default=2000)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--threads", type=int, default=8)
    args = p.parse_args(argv)

    from local.services import start_postgres

    pg = start_postgres(BENCH_PG_DIR, database=DATABASE, fresh_database=True)
    apply_env(bench_env(pg.app_url))
    api = Handlers()
    items = list(synth.memories(USER, args.memories, 7))
    for i in range(0, len(items), 100):
        api.ingest_batch(items[i:i + 100])
    queries = synth.queries(args.samples + 50, 11)
    rng = random.Random(3)
    for q in queries[:50]:  # warm-up: model, pool, plans
        api.search(q, USER)
    res = {
        "machine": machine(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "memories": args.memories,
        "single": single(api, queries[50:]),
        "concurrent": concurrent(api, rng.sample(queries, len(queries)) * 2, args.threads),
        "threads": args.threads,
        "ingest": ingest(api, pg, args.samples),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(res, indent=2))
    print(f"wrote {write_json('durability', res)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
