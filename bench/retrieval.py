"""Retrieval quality on the development data (LoCoMo dev half and BEAM dev chats), through the
real Lambda handlers, with the cost of each search beside it.

    python -m bench.retrieval [--locomo DIR] [--beam DIR] [--reuse] [--only NAME ...] [--folds N]

Each conversation becomes one user, ingested through ``POST /ingest/batch`` (loaders and the
evidence rules: :mod:`bench.retrieval_data`). No importance is given, so the service scores it
with its heuristic, as for any caller that gives none. Every question is then asked through
``POST /search`` (top_k=10) under each ranking variant (``MEMORY_*`` settings switched in the
same process on the same stored rows, so variants are directly comparable).

Metrics per data set and category: recall@k = mean over questions of |evidence in the top k| /
|evidence|; hit@10 = share of questions with at least one evidence memory in the top 10. A
memory that was a duplicate of an earlier message (same content) counts for every source it
stands for. Cost per search: function CPU (this process's CPU time: handler, embedding,
driver) and PostgreSQL CPU (user + system time of the app role's backends, from /proc), both
divided by the number of searches.

Cross-validation (``--folds``): the conversations of each data set are split into folds; for
each fold the variant with the best recall@10 on the other folds is chosen and scored on the
held-out fold, next to the default on that fold. A change is worth keeping only when it wins
held out, on both data sets.

``--reuse`` keeps the database (``coda_bench_recall`` in ``.local/pg-bench``) and the map of
memory ids to sources (``.local/bench-recall-map.json``) between runs: embedding the BEAM
chats (~16k long messages) takes minutes, a search run seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import BENCH_PG_DIR, REPO, Handlers, apply_env, bench_env, machine, settings_override, write_json
from bench.retrieval_data import Conversation, load

KS = (1, 5, 10)
TOP_K = 10
DATABASE = "coda_bench_recall"
MAP_FILE = REPO / ".local" / "bench-recall-map.json"

# name -> settings (MEMORY_<NAME>). The first is the service's default.
MATCH_ONLY = {"weight_similarity": 1.0, "weight_importance": 0.0, "weight_recency": 0.0}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("default", {}),
    # the ranking before neighbouring evidence, the long-memory factor and the reply rule
    ("before: convex fusion alone", {"neighbour_seeds": 0, "long_memory_lexemes": 0, "neighbour_reply_weight": 0}),
    ("pure cosine", {"search_mode": "vector", **MATCH_ONLY}),
    ("BM25 alone", {"fusion": "convex", "fusion_vector_weight": 0.0, **MATCH_ONLY}),
    ("convex a0.5, match only", {"fusion_vector_weight": 0.5, **MATCH_ONLY}),
    ("convex a0.3", {"fusion_vector_weight": 0.3}),
    ("convex a0.7", {"fusion_vector_weight": 0.7}),
    ("RRF k20", {"fusion": "rrf", "rrf_k": 20}),
    ("pool 100", {"candidate_pool": 100}),
    ("0.8/0.15/0.05", {"weight_similarity": 0.8, "weight_importance": 0.15, "weight_recency": 0.05}),
    # the stored pieces of long memories hidden for this variant (see hidden_pieces)
    ("opening only (no pieces)", {"embedding_pieces": 1}),
    # neighbouring evidence (MEMORY_NEIGHBOUR_*): off, and its settings one at a time
    ("no neighbours", {"neighbour_seeds": 0}),
    ("neighbours span 1", {"neighbour_span": 1}),
    ("neighbours span 2", {"neighbour_span": 2}),
    ("neighbours weight 0.2", {"neighbour_weight": 0.2}),
    ("neighbours weight 0.5", {"neighbour_weight": 0.5}),
    ("neighbours of 3 hits", {"neighbour_seeds": 3}),
    ("neighbours of 5 hits", {"neighbour_seeds": 5}),
    ("neighbours of 10 hits", {"neighbour_seeds": 10}),
    ("replies capped below their question", {"neighbour_reply_weight": 0}),
    # the long-memory factor (MEMORY_LONG_MEMORY_*): off, and its settings one at a time
    ("no long-memory factor", {"long_memory_lexemes": 0}),
    ("long memories from 40 words", {"long_memory_lexemes": 40}),
    ("long memories from 100 words", {"long_memory_lexemes": 100}),
    ("long-memory power 0.5", {"long_memory_power": 0.5}),
    ("long-memory power 2", {"long_memory_power": 2.0}),
    ("convex a0.65", {"fusion_vector_weight": 0.65}),
]


def backfill_pieces(admin_url: str, max_pieces: int) -> None:
    """Embed the pieces of long memories stored without them (a database built before the
    service embedded pieces), as the service does at ingest (Embedder.embed_pieces)."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    from coda_memory import runtime
    from coda_memory.db.memories import pieces_param

    with psycopg.connect(admin_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_pieces_done (id uuid PRIMARY KEY)")
        rows = conn.execute("""SELECT id, content FROM memories m
                               WHERE embedding_pieces IS NULL AND length(content) > 600
                                 AND NOT EXISTS (SELECT 1 FROM bench_pieces_done d WHERE d.id = m.id)""").fetchall()
        conn.commit()
        if not rows:
            return
        print(f"embedding the pieces of {len(rows)} long memories", flush=True)
        embedder, t0 = runtime.embedder(), time.perf_counter()
        chunks = [rows[i:i + 20] for i in range(0, len(rows), 20)]

        def embed(chunk: list[tuple[Any, str]]) -> list[tuple[Any, Any]]:
            return list(zip([r[0] for r in chunk], embedder.embed_pieces([r[1] for r in chunk], max_pieces),
                            strict=True))

        with ThreadPoolExecutor(2) as pool:
            for n, done in enumerate(pool.map(embed, chunks)):
                with conn.cursor() as cur:
                    cur.executemany("UPDATE memories SET embedding_pieces = %s::halfvec[] WHERE id = %s",
                                    [(pieces_param(list(p)), i) for i, p in done])
                    cur.executemany("INSERT INTO bench_pieces_done VALUES (%s) ON CONFLICT DO NOTHING",
                                    [(i,) for i, _ in done])
                conn.commit()
                if n % 25 == 0:
                    print(f"  {(n + 1) * 20}/{len(rows)} ({time.perf_counter() - t0:.0f} s)", flush=True)


@contextmanager
def hidden_pieces(admin_url: str, hide: bool) -> Iterator[None]:
    """With ``hide``, every memory is searched by its opening only for the duration (pieces
    kept aside in a table of the benchmark and put back after)."""
    import psycopg

    if not hide:
        yield
        return
    with psycopg.connect(admin_url) as conn:
        conn.execute("""CREATE TABLE IF NOT EXISTS bench_hidden_pieces AS
                        SELECT id, embedding_pieces FROM memories WHERE embedding_pieces IS NOT NULL""")
        conn.execute("UPDATE memories SET embedding_pieces = NULL WHERE embedding_pieces IS NOT NULL")
    try:
        yield
    finally:
        with psycopg.connect(admin_url) as conn:
            conn.execute("""UPDATE memories m SET embedding_pieces = h.embedding_pieces
                            FROM bench_hidden_pieces h WHERE h.id = m.id""")
            conn.execute("DROP TABLE bench_hidden_pieces")


def _pg_cpu_seconds(admin_url: str) -> float:
    """User + system CPU seconds of the app role's backends so far (same machine)."""
    import psycopg

    with psycopg.connect(admin_url) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'coda_app'")]
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def ingest(api: Handlers, conversations: list[Conversation]) -> dict[str, list[str]]:
    """Store every conversation; returns {memory id: [source ids it stands for]}."""
    sources: dict[str, set[str]] = defaultdict(set)
    for conv in conversations:
        t0 = time.perf_counter()
        for start in range(0, len(conv.items), 50):
            chunk = [dict(t, user_id=conv.name) for t in conv.items[start:start + 50]]
            for item, res in zip(chunk, api.ingest_batch(chunk), strict=True):
                if res["status"] == "rejected":
                    raise RuntimeError(f"{conv.name} {item['source_id']} rejected: {res['error']}")
                sources[res["memory_id"]].add(item["source_id"])
        print(f"ingested {conv.name}: {len(conv.items)} memories, {len(conv.questions)} questions "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return {k: sorted(v) for k, v in sources.items()}


def score(evidence: set[str], ranked: list[list[str]]) -> dict[str, float]:
    out = {}
    for k in KS:
        seen = {s for r in ranked[:k] for s in r}
        out[f"r@{k}"] = len(evidence & seen) / len(evidence)
    out["hit@10"] = float(bool(evidence & {s for r in ranked[:TOP_K] for s in r}))
    return out


def run_variant(
    api: Handlers, conversations: list[Conversation], sources: dict[str, list[str]], admin_url: str,
) -> dict[str, Any]:
    """Per question scores (with data set, conversation, category) and the cost per search."""
    rows = []
    cpu0, pg0, wall0 = time.process_time(), _pg_cpu_seconds(admin_url), time.perf_counter()
    for conv in conversations:
        for q in conv.questions:
            found = api.search(q["question"], conv.name, TOP_K)
            rows.append({"data_set": conv.data_set, "conversation": conv.name, "category": q["category"],
                         **score(q["evidence"], [sources.get(r["id"], []) for r in found])})
    n = max(1, len(rows))
    cost = {"function_cpu_ms": round((time.process_time() - cpu0) * 1000 / n, 2),
            "pg_cpu_ms": round((_pg_cpu_seconds(admin_url) - pg0) * 1000 / n, 2),
            "wall_ms": round((time.perf_counter() - wall0) * 1000 / n, 2)}
    return {"questions": rows, "cost": cost}


def threshold_recall(api: Handlers, conversations: list[Conversation], sources: dict[str, list[str]],
                     thresholds: list[float]) -> dict[str, Any]:
    """Recall under the default ranking with ``min_relevance`` = t for each t: one search per
    question with top_k=50 (the candidate pool), then the first 10 with similarity >= t (the
    threshold only removes results, so that is what the API returns)."""
    ranked = [(conv, q, api.search(q["question"], conv.name, 50)) for conv in conversations for q in conv.questions]
    out: dict[str, Any] = {}
    for t in thresholds:
        rows, dropped = [], 0
        for conv, q, found in ranked:
            kept = [r for r in found if not t or r["similarity"] >= t]
            dropped += len(found[:TOP_K]) - len(kept[:TOP_K])
            rows.append({"data_set": conv.data_set, "category": q["category"],
                         **score(q["evidence"], [sources.get(r["id"], []) for r in kept[:TOP_K]])})
        out[f"{t:.2f}"] = {ds: {**table([r for r in rows if r["data_set"] == ds])["overall"],
                                "dropped_per_query": round(dropped / max(1, len(ranked)), 2)}
                           for ds in sorted({r["data_set"] for r in rows})}
        print(f"  min_relevance {t:.2f}: {out[f'{t:.2f}']}", flush=True)
    return out


def table(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Means per category and overall (over the given question rows)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["category"]].append(r)
        groups["overall"].append(r)
    return {name: {**{m: round(sum(r[m] for r in g) / len(g), 4) for m in (*(f"r@{k}" for k in KS), "hit@10")},
                   "n": len(g)} for name, g in sorted(groups.items())}


def cross_validate(results: dict[str, Any], conversations: list[Conversation], folds: int) -> dict[str, Any]:
    """Per data set: fold i holds every folds-th conversation; the variant with the best mean
    recall@10 on the other folds is scored on fold i, beside the default."""
    out: dict[str, Any] = {}
    for data_set in sorted({c.data_set for c in conversations}):
        names = [c.name for c in conversations if c.data_set == data_set]
        k = min(folds, len(names))
        per_fold = []
        chosen_rows: list[dict[str, Any]] = []
        default_rows: list[dict[str, Any]] = []
        for i in range(k):
            held = set(names[i::k])

            def mean(variant: str, train: bool, held: set[str] = held, data_set: str = data_set) -> float:
                rs = [r for r in results[variant]["questions"]
                      if r["data_set"] == data_set and (r["conversation"] in held) != train]
                return sum(r["r@10"] for r in rs) / max(1, len(rs))

            best = max(results, key=lambda v: mean(v, train=True))
            held_rows = [r for r in results[best]["questions"] if r["conversation"] in held]
            chosen_rows += held_rows
            default_rows += [r for r in results["default"]["questions"] if r["conversation"] in held]
            per_fold.append({"held_out": sorted(held), "chosen": best,
                             "train_r@10": round(mean(best, train=True), 4),
                             "held_out_r@10": round(mean(best, train=False), 4),
                             "default_held_out_r@10": round(mean("default", train=False), 4)})
        out[data_set] = {"folds": per_fold, "chosen_held_out": table(chosen_rows)["overall"],
                         "default_held_out": table(default_rows)["overall"]}
    return out


def print_report(results: dict[str, Any], cv: dict[str, Any] | None) -> None:
    for data_set in sorted({r["data_set"] for v in results.values() for r in v["questions"]}):
        cats = sorted({r["category"] for r in results["default"]["questions"] if r["data_set"] == data_set})
        print(f"\n{data_set}: recall@1 / @5 / @10, hit@10 overall; recall@10 per category; cost per search")
        print("| variant | r@1 | r@5 | r@10 | hit@10 | " + " | ".join(c[:12] for c in cats)
              + " | fn CPU ms | PG CPU ms |")
        for name, res in results.items():
            t = table([r for r in res["questions"] if r["data_set"] == data_set])
            o = t["overall"]
            per = " | ".join(f"{t[c]['r@10']:.3f}" for c in cats)
            print(f"| {name} | {o['r@1']:.3f} | {o['r@5']:.3f} | {o['r@10']:.3f} | {o['hit@10']:.3f} | {per} "
                  f"| {res['cost']['function_cpu_ms']} | {res['cost']['pg_cpu_ms']} |")
        if cv and data_set in cv:
            c = cv[data_set]
            print(f"cross-validation ({len(c['folds'])} folds by conversation):")
            for f in c["folds"]:
                print(f"  held out {','.join(f['held_out'])}: chose {f['chosen']!r} (train r@10 {f['train_r@10']:.3f}),"
                      f" held-out r@10 {f['held_out_r@10']:.3f} vs default {f['default_held_out_r@10']:.3f}")
            print(f"  held-out overall: chosen r@10 {c['chosen_held_out']['r@10']:.3f}"
                  f" vs default {c['default_held_out']['r@10']:.3f}")


def data_arguments(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the data sets' folders (--locomo, --beam; defaults from the environment)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    env_path = lambda name: Path(os.environ[name]) if os.environ.get(name) else None  # noqa: E731
    parser.add_argument("--locomo", type=Path, default=env_path("LOCOMO_DIR"), help="default: $LOCOMO_DIR")
    parser.add_argument("--beam", type=Path, default=env_path("BEAM_DIR"), help="default: $BEAM_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = data_arguments(__doc__)
    parser.add_argument("--reuse", action="store_true", help="keep the built database between runs")
    parser.add_argument("--only", nargs="*", help="run only variants whose name contains one of these")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds per data set (0: none)")
    parser.add_argument("--pieces", type=int, default=0,
                        help="embed the pieces (at most this many per memory) of long memories stored without them")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[],
                        help="also measure these min_relevance values under the default ranking")
    parser.add_argument("--limit", type=int, default=0, help="at most this many conversations per data set")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every variant this many times, interleaved; cost = the median")
    args = parser.parse_args(argv)
    if args.locomo is None and args.beam is None:
        parser.error("set LOCOMO_DIR and/or BEAM_DIR (or pass --locomo / --beam)")

    conversations = load(args.locomo, args.beam)
    if args.limit:
        counts: dict[str, int] = defaultdict(int)
        kept = []
        for c in conversations:
            counts[c.data_set] += 1
            if counts[c.data_set] <= args.limit:
                kept.append(c)
        conversations = kept
    from local.services import start_postgres

    reuse = args.reuse and MAP_FILE.is_file()
    if not reuse:
        MAP_FILE.unlink(missing_ok=True)
    pg = start_postgres(BENCH_PG_DIR, database=DATABASE, fresh_database=not reuse)
    apply_env(bench_env(pg.app_url))
    api = Handlers()
    t0 = time.perf_counter()
    stored = json.loads(MAP_FILE.read_text()) if reuse else {"users": [], "sources": {}}
    for conv in conversations:
        if conv.name in stored["users"]:
            continue
        # written after each conversation, so an interrupted build resumes where it stopped
        # (what a conversation had stored already comes back as duplicates)
        stored["sources"].update(ingest(api, [conv]))
        stored["users"].append(conv.name)
        MAP_FILE.parent.mkdir(parents=True, exist_ok=True)
        MAP_FILE.write_text(json.dumps(stored))
    if args.pieces > 1:
        backfill_pieces(pg.admin_url, args.pieces)
    load_s = time.perf_counter() - t0

    variants = [v for v in VARIANTS if v[0] == "default" or not args.only or any(o in v[0] for o in args.only)]
    results: dict[str, Any] = {}
    costs: dict[str, list[dict[str, float]]] = defaultdict(list)
    # round-robin: on a shared machine the cost of one pass drifts with the load; the median of
    # several interleaved passes per variant compares them (the scores are the same each pass)
    for _ in range(args.rounds):
        for name, overrides in variants:
            with hidden_pieces(pg.admin_url, overrides.get("embedding_pieces") == 1), settings_override(**overrides):
                results[name] = run_variant(api, conversations, stored["sources"], pg.admin_url)
            costs[name].append(results[name]["cost"])
            print(f"  {name:<32} cost {results[name]['cost']}", flush=True)
    for name, overrides in variants:
        results[name]["settings"] = overrides
        results[name]["cost"] = {k: round(statistics.median(c[k] for c in costs[name]), 2) for k in costs[name][0]}
    cv = cross_validate(results, conversations, args.folds) if args.folds and len(results) > 1 else None
    print_report(results, cv)
    thresholds = threshold_recall(api, conversations, stored["sources"], args.thresholds) if args.thresholds else None
    payload = {"machine": machine(), "load_seconds": round(load_s, 1),
               "conversations": {c.name: {"memories": len(c.items), "questions": len(c.questions)}
                                 for c in conversations},
               "recall_definition": "mean over questions of |evidence in top k| / |evidence|",
               "variants": {k: {"settings": v["settings"], "cost": v["cost"],
                                "tables": {ds: table([r for r in v["questions"] if r["data_set"] == ds])
                                           for ds in sorted({r["data_set"] for r in v["questions"]})}}
                            for k, v in results.items()},
               "cross_validation": cv, "min_relevance": thresholds}
    print(f"\nwrote {write_json('retrieval', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
