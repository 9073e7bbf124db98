"""Memory lifecycle figures through the real Lambda handlers (in process), on the bench database:

    python -m bench.lifecycle [--list-user-size 50000] [--consolidation-size 10000]

1. import: ``--consolidation-size`` synthetic memories (bench/synth.py) for one user through
   ``python -m coda_memory.cli.transfer``'s import (chunks of <= 1 MB / 500 lines) WITHOUT
   embeddings (the service embeds them), then ``--list-user-size`` memories for another user
   WITH embeddings in the lines (random unit vectors: the model does not run) -> import rates;
2. ``GET /memories`` at that size: the first page, every page of a walk through all of them
   (limit 100), and filtered pages -> latency percentiles, plus the plan of a deep page;
3. ``PATCH /memory/{id}``: importance only, and new content (re-embedded) -> latencies;
4. export of both users with the transfer CLI (with embeddings for the smaller one) -> rates;
5. consolidation of the smaller user's memories (real embeddings), alone -> seconds per 10k.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from typing import Any

import numpy as np

from bench import synth
from bench.common import BENCH_KEY, BENCH_PG_DIR, Handlers, apply_env, bench_env, machine, percentiles, write_json
from local.apigw import response_headers

DATABASE = "coda_bench_lifecycle"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _transport(api: Handlers) -> Any:
    from coda_memory.cli.transfer import HttpResponse

    def call(method: str, path: str, query: dict[str, str], body: bytes | None) -> HttpResponse:
        result = api._api(method, path, query=query or None, api_key=BENCH_KEY,
                             raw_body=body.decode() if body is not None else None)
        return HttpResponse(result["statusCode"], response_headers(result), (result.get("body") or "").encode())

    return call


def _timed(api: Handlers, method: str, path: str, **kw: Any) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    result = api._api(method, path, api_key=BENCH_KEY, **kw)
    ms = (time.perf_counter() - t0) * 1000
    if result["statusCode"] >= 300:
        raise RuntimeError(f"{method} {path} -> {result['statusCode']}: {result.get('body', '')[:300]}")
    return ms, json.loads(result["body"])


def _ndjson(items: list[dict[str, Any]], embeddings: bool, rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    for item in items:
        line = {k: v for k, v in item.items() if k != "user_id"}
        if embeddings:
            v = rng.standard_normal(384).astype(np.float32)
            line["embedding"] = [round(float(x), 6) for x in v / np.linalg.norm(v)]
        out.write(json.dumps(line).encode() + b"\n")
    return out.getvalue()


def _imports(res: dict[str, Any], transport: Any, rng: np.random.Generator, small: str, big: str,
             args: argparse.Namespace) -> None:
    from coda_memory.cli import transfer

    for user, size, seed, embeddings in ((small, args.consolidation_size, 11, False),
                                          (big, args.list_user_size, 12, True)):
        items = list(synth.memories(user, size, seed=seed))
        body = _ndjson(items, embeddings, rng)
        log(f"import {len(items):,} memories {'with' if embeddings else 'without'} embeddings "
            f"({len(body) / 1e6:.1f} MB)")
        t0 = time.perf_counter()
        totals = transfer.import_user(transport, user, io.BytesIO(body))
        s = time.perf_counter() - t0
        key = "import_with_embeddings" if embeddings else "import_without_embeddings"
        res[key] = {"memories": totals.created, "seconds": round(s, 1), "per_s": round(totals.created / s),
                    "rejected": len(totals.rejected)}
        log(f"  {res[key]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list-user-size", type=int, default=50_000)
    parser.add_argument("--consolidation-size", type=int, default=10_000)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database of the previous run and skip the imports (1.)")
    parser.add_argument("--consolidation-only", action="store_true",
                        help="with --reuse: undo the previous run's merges and measure only 5.")
    args = parser.parse_args(argv)

    from local.services import start_postgres

    pg = start_postgres(BENCH_PG_DIR, database=DATABASE, fresh_database=not args.reuse)
    apply_env(bench_env(pg.app_url))
    api = Handlers()
    transport = _transport(api)

    res: dict[str, Any] = {"machine": machine()}
    rng = np.random.default_rng(7)
    small, big = "bench-consolidate", "bench-list"

    # 1. imports
    if not args.reuse:
        _imports(res, transport, rng, small, big, args)
    import psycopg

    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE memories")

    if not args.consolidation_only:
        _list_patch_export(res, api, transport, pg, big, small, args)
    _consolidation(res, pg, small)
    print(f"wrote {write_json('lifecycle', res)}")
    return 0


def _list_patch_export(res: dict[str, Any], api: Handlers, transport: Any, pg: Any, big: str, small: str,
                       args: argparse.Namespace) -> None:
    import psycopg

    from coda_memory.cli import transfer

    # 2. list
    log(f"GET /memories on {args.list_user_size:,} memories")
    first = [_timed(api, "GET", "/memories", query={"user_id": big, "limit": "50"})[0] for _ in range(100)]
    walk: list[float] = []
    cursor, seen = None, 0
    while True:
        q = {"user_id": big, "limit": "100", **({"cursor": cursor} if cursor else {})}
        ms, page = _timed(api, "GET", "/memories", query=q)
        walk.append(ms)
        seen += len(page["memories"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    tag = {"user_id": big, "limit": "50", "tag": "preference"}
    tagged = [_timed(api, "GET", "/memories", query=tag)[0] for _ in range(50)]
    typed = [_timed(api, "GET", "/memories", query={"user_id": big, "limit": "50", "content_type": "event"})[0]
             for _ in range(50)]
    res["list"] = {"memories": seen, "first_page_50": percentiles(first), "walk_pages_100": percentiles(walk),
                   "pages": len(walk), "tag_filter_50": percentiles(tagged),
                   "content_type_filter_50": percentiles(typed)}
    with psycopg.connect(pg.app_url) as conn, conn.transaction():
        conn.execute("SELECT set_config('app.current_user_id', %s, true)", (big,))
        mid = conn.execute("SELECT created_at, id FROM memories WHERE user_id = %s ORDER BY created_at, id "
                           "OFFSET %s LIMIT 1", (big, args.list_user_size // 2)).fetchone()
        assert mid is not None
        plan = conn.execute(
            """EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT m.id FROM memories m
               WHERE m.user_id = %s AND NOT m.deleted AND NOT memory_expired(m)
                 AND NOT m.archived AND (m.created_at, m.id) < (%s, %s)
               ORDER BY m.created_at DESC, m.id DESC LIMIT 101""", (big, mid[0], mid[1])).fetchall()
    res["list"]["deep_page_plan"] = [r[0] for r in plan]
    log(f"  {json.dumps({k: v for k, v in res['list'].items() if k != 'deep_page_plan'})}")
    log("  " + "\n  ".join(res["list"]["deep_page_plan"]))

    # 3. patch
    ids = [m["id"] for m in _timed(api, "GET", "/memories", query={"user_id": big, "limit": "100"})[1]["memories"]]
    r = random.Random(3)
    imp = [_timed(api, "PATCH", f"/memory/{i}", query={"user_id": big},
                  body={"importance": round(r.random(), 3)})[0] for i in ids * 2]
    content = [_timed(api, "PATCH", f"/memory/{i}", query={"user_id": big},
                      body={"content": f"corrected memory {n}: " + synth.queries(1, n)[0]})[0]
               for n, i in enumerate(ids[:50])]
    res["patch"] = {"importance_only": percentiles(imp), "new_content_reembedded": percentiles(content)}
    log(f"  patch {res['patch']}")

    # 4. export
    for user, emb in ((big, False), (small, True)):
        out = io.BytesIO()
        t0 = time.perf_counter()
        n = transfer.export_user(transport, user, out, embeddings=emb)
        s = time.perf_counter() - t0
        key = "export_with_embeddings" if emb else "export"
        res[key] = {"memories": n, "seconds": round(s, 1), "per_s": round(n / s),
                    "mb": round(len(out.getvalue()) / 1e6, 1)}
        log(f"  {key} {res[key]}")



def _consolidation(res: dict[str, Any], pg: Any, small: str) -> None:
    import psycopg

    from coda_memory import runtime
    from coda_memory.usecases import jobs

    # 5. consolidation of the smaller user only (the other user's queue entries dropped; a
    # previous run's merges undone)
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute("UPDATE memories SET superseded_by = NULL, superseded_at = NULL "
                     "WHERE user_id = %s AND superseded_by IS NOT NULL", (small,))
        conn.execute("INSERT INTO memory_consolidation_queue (user_id, memory_id) SELECT user_id, id FROM memories "
                     "WHERE user_id = %s AND NOT deleted AND NOT archived ON CONFLICT DO NOTHING", (small,))
        conn.execute("DELETE FROM memory_consolidation_queue WHERE user_id <> %s", (small,))
        conn.execute("VACUUM ANALYZE memories, memory_consolidation_queue")
    for similarity in (0.95,):
        t0 = time.perf_counter()
        result = jobs.consolidate(runtime.database(), similarity=similarity, batch_size=200)
        s = time.perf_counter() - t0
        with psycopg.connect(pg.admin_url) as conn:
            merged = conn.execute("SELECT count(*) FROM memories WHERE user_id = %s AND superseded_by IS NOT NULL",
                                  (small,)).fetchone()[0]
            pairs = conn.execute(
                """SELECT left(a.content, 80), left(b.content, 80),
                          round((1 - (a.embedding <=> b.embedding))::numeric, 3)
                   FROM memories a JOIN memories b ON b.user_id = a.user_id AND b.id = a.superseded_by
                   WHERE a.user_id = %s LIMIT 5""", (small,)).fetchall()
        res["consolidation"] = {"memories": result.affected, "seconds": round(s, 1),
                                "seconds_per_10k": round(s * 10_000 / max(1, result.affected), 1),
                                "batches": result.batches, "merged": merged, "similarity": similarity,
                                "examples": [list(p) for p in pairs]}
        log(f"  consolidation {res['consolidation']}")
        t0 = time.perf_counter()
        again = jobs.consolidate(runtime.database(), similarity=similarity, batch_size=200)
        res["consolidation"]["rerun_seconds"] = round(time.perf_counter() - t0, 2)
        res["consolidation"]["rerun_compared"] = again.affected


if __name__ == "__main__":
    raise SystemExit(main())
