"""Growth: one user whose memory grows like a long conversation (``make bench``, or
``python -m bench.growth [--sizes 1000,10000,50000] [--seconds 20]``).

Texts are the turns of the five LoCoMo development conversations, ``"speaker: text"`` with the
speakers renamed to the user's two people (so, as in a real history, both names and the
everyday words of chat are in most memories), recombined -- a turn, sometimes followed by a
sentence of another turn -- into as many distinct memories as asked (a real, Zipf-like
vocabulary, not a template's). Queries are the conversations' questions, same renaming.

At each size (the user grows from one to the next) and once more after the archival of all but
``--keep-live`` memories, through the local gateway (HTTP, one client): search p50/p95/p99 with
the default settings and with ``MEMORY_SEARCH_MODE=vector`` (a second gateway, requests
interleaved: the in-run baseline), ingest p50/p95/p99, and PostgreSQL CPU per search (the
backends' utime+stime from /proc over a block of in-process searches, per mode). Then 50
clients, 80/20 search/ingest, at the largest size and after the archival.

Loading: vectors are embedded once and cached in ``.cache/growth-*.npy``; rows are inserted
directly as the schema owner (1,000 per statement, the statistics triggers firing as for any
write), which is how a bulk import would be done; ingest timings go through the API.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    BENCH_PG_DIR,
    REPO,
    Handlers,
    apply_env,
    backend_cpu,
    bench_env,
    percentiles,
    settings_override,
    write_json,
)

#: the LoCoMo dev conversations (one JSON file each), found through LOCOMO_DIR
DATA = Path(os.environ["LOCOMO_DIR"]) if os.environ.get("LOCOMO_DIR") else None
DATABASE = "coda_bench_growth"
USER = "growth-user"
NAMES = ("Maya", "Leo")
CACHE = REPO / ".cache"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _conversations(data: Path) -> tuple[list[str], list[str]]:
    """(turns, questions) of every conversation, speakers renamed to NAMES."""
    turns: list[str] = []
    questions: list[str] = []
    for path in sorted(data.glob("*.json")):
        conv = json.loads(path.read_text())
        c = conv.get("conversation", conv)
        rename = {c["speaker_a"]: NAMES[0], c["speaker_b"]: NAMES[1]}
        pattern = re.compile("|".join(re.escape(n) for n in rename))

        def sub(text: str, rename: dict[str, str] = rename, pattern: re.Pattern[str] = pattern) -> str:
            return pattern.sub(lambda m: rename[m.group(0)], text)

        for key in sorted(k for k in c if re.fullmatch(r"session_\d+", k)):
            for turn in c[key]:
                turns.append(f"{rename.get(turn['speaker'], turn['speaker'])}: {sub(turn['text'])}")
        questions += [sub(q["question"]) for q in conv.get("qa", []) if q.get("category") in (1, 2, 3, 4)]
    return turns, questions


def texts(turns: list[str], count: int, seed: int = 7) -> list[str]:
    """``count`` distinct memories: turns in order first, then recombinations."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    sentences = [s for t in turns for s in re.split(r"(?<=[.!?])\s+", t.split(": ", 1)[-1]) if len(s) > 20]
    i = 0
    while len(out) < count:
        base = turns[i % len(turns)] if i < len(turns) else rng.choice(turns)
        text = base if i < len(turns) else f"{base} {rng.choice(sentences)}"
        i += 1
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def vectors(all_texts: list[str]) -> np.ndarray:
    """Embeddings of ``all_texts``, cached on disk by content."""
    digest = hashlib.sha256("\n".join(all_texts).encode()).hexdigest()[:16]
    path = CACHE / f"growth-{len(all_texts)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    from coda_memory import runtime

    log(f"embedding {len(all_texts):,} texts once (cached in {path}) ...")
    t0 = time.perf_counter()
    vecs = np.concatenate([runtime.embedder().embed(all_texts[i:i + 512]) for i in range(0, len(all_texts), 512)])
    log(f"  {len(all_texts) / (time.perf_counter() - t0):,.0f} texts/s")
    CACHE.mkdir(exist_ok=True)
    np.save(path, vecs)
    return vecs


def load(admin: Any, all_texts: list[str], vecs: np.ndarray, start: int, stop: int) -> float:
    """Insert memories [start, stop) as the schema owner, 1,000 per statement; seconds taken."""
    t0 = time.perf_counter()
    for a in range(start, stop, 1000):
        b = min(stop, a + 1000)
        admin.execute(
            """INSERT INTO memories (user_id, content, content_type, embedding, source_type, content_hash,
                                     created_at)
               SELECT %s, c, 'conversation', e::vector, 'growth', md5(c),
                      now() - interval '700 days' + n * interval '1 minute'
               FROM unnest(%s::text[], %s::text[], %s::int[]) AS x(c, e, n)""",
            (USER, all_texts[a:b], [str(v.tolist()) for v in vecs[a:b]], list(range(a, b))),
        )
    admin.execute(
        """INSERT INTO user_quotas (user_id, memory_count, max_memories, max_daily_ingestions)
           VALUES (%s, %s, 1000000, 1000000)
           ON CONFLICT (user_id) DO UPDATE SET memory_count = excluded.memory_count""",
        (USER, stop))
    admin.execute("VACUUM ANALYZE memories, memory_postings, memory_lexicon")
    return time.perf_counter() - t0


def archive(admin: Any, count: int) -> None:
    """Archive the user's ``count`` oldest live memories, 5,000 per statement in id order (the
    order the access-statistics updates lock rows in: no deadlock with a late one)."""
    import psycopg

    ids = sorted(r[0] for r in admin.execute(
        "SELECT id FROM memories WHERE user_id = %s AND NOT archived AND NOT deleted ORDER BY created_at LIMIT %s",
        (USER, count)))
    for a in range(0, len(ids), 5000):
        for attempt in range(5):
            try:
                admin.execute("UPDATE memories SET archived = true, archived_at = now() "
                              "WHERE user_id = %s AND id = ANY(%s)", (USER, ids[a:a + 5000]))
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
                time.sleep(1)


def pg_cpu_per_search(admin: Any, api: Handlers, queries: list[str], n: int) -> dict[str, float]:
    """Mean PostgreSQL backend CPU (ms) per in-process search, per mode (blocks of n)."""
    out: dict[str, float] = {}
    for mode in ("hybrid", "vector"):
        with settings_override(search_mode=mode):
            for q in queries[:20]:
                api.search(q, USER)
            before = backend_cpu(admin, DATABASE)
            for q in queries[:n]:
                api.search(q, USER)
            out[mode] = round((backend_cpu(admin, DATABASE) - before) * 1000 / n, 2)
    return out


def _old_bm25_sql() -> str | None:
    """The GIN-based bm25_candidates this work replaced (migration 0008, kept in the frozen
    archive of the old migrations), renamed."""
    import tarfile

    archive = REPO / "tests" / "fixtures" / "migrations_0001_0008.tar.gz"
    if not archive.exists():
        return None
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith("0008_bm25_custom_plans.sql"):
                f = tar.extractfile(member)
                if f is not None:
                    return f.read().decode().replace("FUNCTION bm25_candidates(", "FUNCTION bench_bm25_gin(")
    return None


def lexical_options(admin: Any, queries: list[str], n: int = 100) -> dict[str, Any]:
    """What each lexical design costs at this size: mean ms of the lexical step (as the owner,
    scoped to the user like a request) and how many of the exact BM25 top 50 it returns."""
    admin.execute("SELECT set_config('app.current_user_id', %s, false)", (USER,))
    qs = queries[:n]

    def run(sql: str, **params: Any) -> tuple[float, list[set[Any]]]:
        got = []
        t0 = time.perf_counter()
        for q in qs:
            got.append({r[0] for r in admin.execute(sql, {"q": q, **params})})
        return round((time.perf_counter() - t0) * 1000 / len(qs), 2), got

    new = "SELECT id FROM bm25_candidates(%(q)s, 50, NULL, 1.2, 0.75, %(m)s)"
    _, exact = run(new, m=10**9)  # every posting of every lexeme: the exact top 50
    out: dict[str, Any] = {"queries": len(qs)}
    for m in (50, 100, 200, 400, 1000):
        ms, got = run(new, m=m)
        out[f"postings, top {m} per lexeme"] = {
            "ms": ms, "exact_top50_recall": round(sum(len(g & e) for g, e in zip(got, exact, strict=True))
                                                  / max(1, sum(len(e) for e in exact)), 3)}
    ms, _ = run(new, m=10**9)
    out["postings, every posting (exact)"] = {"ms": ms, "exact_top50_recall": 1.0}
    old = _old_bm25_sql()
    if old:  # the replaced design: GIN, unnest every matching memory, df per search
        admin.execute("CREATE INDEX IF NOT EXISTS bench_fts ON memories USING gin (user_id, search_vector) "
                      "WHERE NOT deleted AND NOT archived")
        admin.execute(old)
        ms, got = run("SELECT id FROM bench_bm25_gin(%(q)s, 50)")
        out["GIN + unnest per search (before)"] = {
            "ms": ms, "exact_top50_recall": round(sum(len(g & e) for g, e in zip(got, exact, strict=True))
                                                  / max(1, sum(len(e) for e in exact)), 3)}
        admin.execute("DROP FUNCTION bench_bm25_gin(text, integer, text[], text[], real, text, timestamptz, "
                      "timestamptz, float8, float8)")
        admin.execute("DROP INDEX bench_fts")
    admin.execute("SELECT set_config('app.current_user_id', '', false)")
    return out


def write_costs(admin: Any, text: str, n: int = 30) -> dict[str, float]:
    """Median ms of the statistics triggers per single-row write (EXPLAIN ANALYZE's trigger
    time, in transactions rolled back): insert, soft delete, archive."""
    import statistics

    def trigger_ms(sql: str, params: tuple[Any, ...]) -> float:
        with admin.transaction(force_rollback=True):
            plan = "\n".join(r[0] for r in admin.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + sql, params))
        return sum(float(m) for m in re.findall(r"Trigger memories_lexicon_\w+(?: on \w+)?: time=([\d.]+)", plan))

    vec = "[" + ",".join(["0.01"] * 384) + "]"
    mid = admin.execute("SELECT id FROM memories WHERE user_id = %s AND NOT archived AND NOT deleted LIMIT 1",
                        (USER,)).fetchone()[0]
    out = {
        "insert": [trigger_ms("INSERT INTO memories (user_id, content, content_type, embedding, source_type, "
                              "content_hash) VALUES (%s, %s, 'fact', %s::vector, 'w', md5(%s))",
                              (USER, f"{text} {i}", vec, f"{text} {i}")) for i in range(n)],
        "soft delete": [trigger_ms("UPDATE memories SET deleted = true WHERE user_id = %s AND id = %s", (USER, mid))
                        for _ in range(n)],
        "archive": [trigger_ms("UPDATE memories SET archived = true WHERE user_id = %s AND id = %s", (USER, mid))
                    for _ in range(n)],
    }
    return {k: round(statistics.median(v), 3) for k, v in out.items()}


def http_stage(urls: dict[str, str], queries: list[str], items: list[str], n: int) -> dict[str, Any]:
    import httpx

    from bench.run import BENCH_KEY

    clients = {m: httpx.Client(base_url=u, headers={"X-API-Key": BENCH_KEY}, timeout=30) for m, u in urls.items()}
    lat: dict[str, list[float]] = {m: [] for m in urls}
    ingest: list[float] = []
    try:
        def search(mode: str, q: str) -> float:
            t = time.perf_counter()
            r = clients[mode].post("/search", json={"query": q, "user_id": USER, "top_k": 10})
            if r.status_code != 200:
                raise RuntimeError(f"/search answered {r.status_code}: {r.text[:200]}")
            return (time.perf_counter() - t) * 1000

        for q in queries[:20]:
            for m in urls:
                search(m, q)
        for i, q in enumerate(queries[20:20 + n]):
            for m in (list(urls) if i % 2 else list(reversed(urls))):
                lat[m].append(search(m, q))
        for text in items:
            t = time.perf_counter()
            r = clients["hybrid"].post("/ingest", json={"user_id": USER, "content": text,
                                                        "content_type": "conversation", "source_type": "growth-write"})
            if r.status_code != 201:
                raise RuntimeError(f"/ingest answered {r.status_code}: {r.text[:200]}")
            ingest.append((time.perf_counter() - t) * 1000)
    finally:
        for c in clients.values():
            c.close()
    return {"search_ms": percentiles(lat["hybrid"]), "search_vector_ms": percentiles(lat["vector"]),
            "ingest_ms": percentiles(ingest[5:])}


def run(sizes: list[int], keep_live: int, samples: int, seconds: float, clients: int,
        options: bool = True, reuse: bool = False) -> dict[str, Any]:
    import psycopg

    from bench.run import http_mixed, start_gateway, stop_gateway
    from local.services import start_postgres

    assert DATA is not None
    turns, questions = _conversations(DATA)
    rng = random.Random(11)
    rng.shuffle(questions)
    top = max(sizes)
    extra = 40 * (len(sizes) + 1)  # texts the ingest timings write, never loaded
    all_texts = texts(turns, top + extra)
    pg = start_postgres(BENCH_PG_DIR, database=DATABASE, fresh_database=not reuse)
    apply_env(bench_env(pg.app_url))
    vecs = vectors(all_texts[:top])
    admin = psycopg.connect(pg.admin_url, autocommit=True)
    api = Handlers()
    res: dict[str, Any] = {"texts": "LoCoMo dev turns, renamed, recombined", "stages": []}
    gateways = {m: start_gateway(pg, {"MEMORY_SEARCH_MODE": m}) for m in ("hybrid", "vector")}
    urls = {m: g[1] for m, g in gateways.items()}
    loaded = 0
    if reuse:  # the user as a previous run left it (sizes then says which stages to measure)
        admin.execute("DELETE FROM memories WHERE user_id = %s AND source_type <> 'growth'", (USER,))
        admin.execute("UPDATE memories SET archived = false, archived_at = NULL WHERE user_id = %s AND archived",
                      (USER,))
        loaded = admin.execute("SELECT count(*) FROM memories WHERE user_id = %s", (USER,)).fetchone()[0]
    try:
        stages: list[tuple[str, int]] = [(f"{s:,}", s) for s in sizes] + [("archived", top)]
        for k, (label, size) in enumerate(stages):
            if label == "archived":
                t0 = time.perf_counter()
                archive(admin, top - keep_live)
                admin.execute("VACUUM ANALYZE memories, memory_postings, memory_lexicon")
                log(f"archived all but {keep_live:,} in {time.perf_counter() - t0:.0f}s")
            elif size > loaded:
                secs = load(admin, all_texts, vecs, loaded, size)
                log(f"loaded {size - loaded:,} memories in {secs:.0f}s ({(size - loaded) / secs:,.0f}/s)")
                loaded = size
            live = admin.execute("SELECT count(*) FROM memories WHERE user_id = %s AND NOT archived AND NOT deleted",
                                 (USER,)).fetchone()[0]
            log(f"stage {label}: {live:,} live memories; HTTP ...")
            items = all_texts[top + 40 * k: top + 40 * (k + 1)]
            stage = {"stage": label, "memories": size + 40 * k, "live": live,
                     **http_stage(urls, questions, items, samples),
                     "pg_cpu_ms_per_search": pg_cpu_per_search(admin, api, questions, min(200, samples))}
            stage["trigger_ms_per_write"] = write_costs(admin, items[0])
            if options and label == f"{top:,}":
                log("  lexical options ...")
                stage["lexical_options"] = lexical_options(admin, questions)
            log(f"  {json.dumps(stage)}")
            if label in ("archived", f"{top:,}") and seconds > 0:
                log(f"  {clients} clients, 80/20, {seconds:.0f}s ...")
                stage["mixed"] = http_mixed(urls["hybrid"], [USER], clients, seconds, queries=questions)
                admin.execute("DELETE FROM memories WHERE source_type = 'bench-write'")
                log(f"  {json.dumps(stage['mixed'])}")
            res["stages"].append(stage)
    finally:
        for proc, _ in gateways.values():
            stop_gateway(proc)
        admin.close()
    return res


def report(res: dict[str, Any]) -> None:
    def lat(d: dict[str, Any]) -> str:
        return f"{d['p50']:.1f} / {d['p95']:.1f} / {d['p99']:.1f}" if d.get("n") else "-"

    print("\n| memories (live) | search p50/p95/p99 ms | same, vector mode | ingest p50/p95/p99 ms | "
          "PG CPU ms/search (hybrid / vector) |")
    print("|---|---|---|---|---|")
    for s in res["stages"]:
        cpu = s["pg_cpu_ms_per_search"]
        print(f"| {s['stage']} ({s['live']:,}) | {lat(s['search_ms'])} | {lat(s['search_vector_ms'])} | "
              f"{lat(s['ingest_ms'])} | {cpu['hybrid']} / {cpu['vector']} |")
    for s in res["stages"]:
        if "trigger_ms_per_write" in s:
            print(f"statistics triggers at {s['stage']}, ms per single-row write: {s['trigger_ms_per_write']}")
    for s in res["stages"]:
        for name, v in s.get("lexical_options", {}).items():
            if isinstance(v, dict):
                print(f"lexical step at {s['stage']}: {name}: {v['ms']} ms, "
                      f"exact top-50 recall {v['exact_top50_recall']}")
    for s in res["stages"]:
        if "mixed" in s:
            m = s["mixed"]
            print(f"\n{s['stage']}: {m['clients']} clients 80/20 {m['seconds']}s: {m['throughput_rps']} req/s, "
                  f"errors {m['errors']}, all {lat(m['all_ms'])}, search {lat(m['search_ms'])}, "
                  f"ingest {lat(m['ingest_ms'])}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--keep-live", type=int, default=2000, help="live memories left after the archival")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--seconds", type=float, default=20.0, help="50-client mixed run (0: skip)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--skip-options", action="store_true", help="skip the lexical design comparison")
    p.add_argument("--reuse", action="store_true", help="keep the database a previous run loaded")
    args = p.parse_args(argv)
    if DATA is None:
        print("growth scenario skipped: set LOCOMO_DIR to the LoCoMo dev conversations (its text source)")
        return 0
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    res = run([int(s) for s in args.sizes.split(",")], args.keep_live, args.samples, args.seconds, args.clients,
              not args.skip_options, args.reuse)
    report(res)
    print(f"\nwrote {write_json('growth', res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
