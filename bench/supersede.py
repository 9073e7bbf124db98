"""What superseding and the similar-memories answer cost (``python -m bench.supersede
[--live 10000] [--superseded 40000] [--samples 200]``; LoCoMo dev data through LOCOMO_DIR).

Two users built from the same LoCoMo-derived texts as bench.growth (the user's two people in
most memories, a real vocabulary): ``plain`` holds ``--live`` memories; ``heavy`` holds
``--live + --superseded``, its oldest ``--superseded`` superseded by one of its live memories
(what a long history of corrections leaves behind). Both get their vector graph (the archival
run's step), then, interleaved in one run (the baseline is in the same run):

* search p50/p95/p99 in-process (the real handlers) and PostgreSQL CPU per search (the app
  role's backends, /proc) for each user: superseded memories are in no search structure, so the
  two should match;
* search with ``include_superseded`` on ``heavy``: the exact scan of the superseded rows;
* ingest on ``plain`` with and without ``return_similar`` (one nearest-neighbour query more).

Rows are loaded directly as the schema owner (the statistics triggers fire as for any write).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

from bench.common import BENCH_PG_DIR, Handlers, apply_env, backend_cpu, bench_env, machine, percentiles, write_json
from bench.growth import DATA, _conversations, texts, vectors

DATABASE = "coda_bench_supersede"
USERS = {"plain": "sup-plain", "heavy": "sup-heavy"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(admin: Any, user: str, all_texts: list[str], vecs: Any, count: int) -> None:
    for a in range(0, count, 1000):
        b = min(count, a + 1000)
        admin.execute(
            """INSERT INTO memories (user_id, content, content_type, embedding, source_type, content_hash, created_at)
               SELECT %s, c, 'conversation', e::vector, 'bench', md5(c),
                      now() - interval '700 days' + n * interval '1 minute'
               FROM unnest(%s::text[], %s::text[], %s::int[]) AS x(c, e, n)""",
            (user, all_texts[a:b], [str(v.tolist()) for v in vecs[a:b]], list(range(a, b))),
        )
    admin.execute(
        """INSERT INTO user_quotas (user_id, memory_count, max_memories, max_daily_ingestions)
           VALUES (%s, %s, 1000000, 1000000) ON CONFLICT (user_id) DO UPDATE SET memory_count = excluded.memory_count,
           max_memories = 1000000, max_daily_ingestions = 1000000""", (user, count))


def supersede_oldest(admin: Any, user: str, count: int) -> None:
    newest = admin.execute("SELECT id FROM memories WHERE user_id = %s ORDER BY created_at DESC LIMIT 1",
                           (user,)).fetchone()[0]
    admin.execute(
        """UPDATE memories SET superseded_by = %s, superseded_at = now()
           WHERE user_id = %s AND id IN (SELECT id FROM memories WHERE user_id = %s ORDER BY created_at LIMIT %s)""",
        (newest, user, user, count))


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def run(live: int, superseded: int, samples: int) -> dict[str, Any]:
    import psycopg

    from coda_memory import runtime
    from coda_memory.usecases import jobs
    from local.services import start_postgres

    assert DATA is not None, "set LOCOMO_DIR to the LoCoMo dev data"
    turns, questions = _conversations(DATA)
    random.Random(5).shuffle(questions)
    total = live + superseded
    all_texts = texts(turns, total + samples * 2)
    pg = start_postgres(BENCH_PG_DIR, database=DATABASE, fresh_database=True)
    apply_env(bench_env(pg.app_url))
    vecs = vectors(all_texts[:total])
    admin = psycopg.connect(pg.admin_url, autocommit=True)
    load(admin, USERS["plain"], all_texts[superseded:total], vecs[superseded:total], live)
    load(admin, USERS["heavy"], all_texts[:total], vecs[:total], total)
    supersede_oldest(admin, USERS["heavy"], superseded)
    admin.execute("VACUUM ANALYZE memories, memory_vectors, memory_postings, memory_lexicon")
    jobs.vector_graphs(runtime.database(), min_memories=2000)
    log("loaded; measuring ...")
    api = Handlers()
    res: dict[str, Any] = {"live": live, "superseded": superseded, "machine": machine(), "search": {}, "ingest": {}}

    def search(user: str, q: str, **extra: Any) -> None:
        status, body = api.call("POST", "/search", {"query": q, "user_id": user, "top_k": 10, **extra})
        assert status == 200, body

    for q in questions[:20]:  # warm caches and plans
        for user in USERS.values():
            search(user, q)
    ms: dict[str, list[float]] = {k: [] for k in ("plain", "heavy", "heavy_include_superseded")}
    cpu: dict[str, float] = dict.fromkeys(ms, 0.0)
    for q in questions[:samples]:
        for key, user, extra in (("plain", USERS["plain"], {}), ("heavy", USERS["heavy"], {}),
                                 ("heavy_include_superseded", USERS["heavy"], {"include_superseded": True})):
            before = backend_cpu(admin, DATABASE)
            ms[key].append(timed(lambda u=user, e=extra, q=q: search(u, q, **e)))
            cpu[key] += backend_cpu(admin, DATABASE) - before
    for key, values in ms.items():
        res["search"][key] = {**percentiles(values), "pg_cpu_ms_per_search": round(cpu[key] * 1000 / len(values), 2)}

    items = all_texts[total:total + samples * 2]
    plain_ms, similar_ms = [], []
    for i in range(samples):
        for flag, out in ((False, plain_ms), (True, similar_ms)):
            body = {"content": items[2 * i + int(flag)], "content_type": "conversation", "source_type": "bench-write",
                    "user_id": USERS["plain"], "return_similar": flag}
            out.append(timed(lambda b=body: api.call("POST", "/ingest", b)))
    res["ingest"] = {"plain": percentiles(plain_ms), "return_similar": percentiles(similar_ms)}
    admin.close()
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--live", type=int, default=10_000)
    parser.add_argument("--superseded", type=int, default=40_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    res = run(args.live, args.superseded, args.samples)
    print(json.dumps(res, indent=2))
    write_json("supersede", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
