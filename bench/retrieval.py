"""Retrieval quality on the LoCoMo development half, through the real Lambda handlers.

    python -m bench.retrieval [--data DIR] [--quick]

Each of the five conversations becomes one user, ingested through ``POST /ingest/batch`` (one
memory per turn: content ``"speaker: text"`` plus ``" [image: caption]"`` when the turn shares
a photo, ``source_id`` = dia_id, ``created_at`` = the session's date and time, plus the turn's
index in seconds to keep turn order). No importance is given, so the service scores it with
its heuristic, as for any caller that gives none. Every answerable question (categories 1-4)
is then asked through ``POST /search`` (top_k=10) under each ranking variant.

Recall@k of a question = |evidence dia_ids found in the top k| / |evidence dia_ids|; the
tables report its mean over questions (per category and overall). A memory that was a
duplicate of an earlier turn (same content) counts for every dia_id it stands for.

Every variant runs in the same process on the same stored rows, switching only the ranking
settings (``MEMORY_*``), so the numbers are directly comparable. ``full-text (ts_rank_cd)``
is PostgreSQL's own ranking, queried directly (it is not a service mode).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BENCH_PG_DIR, Handlers, apply_env, bench_env, machine, settings_override, write_json

#: The LoCoMo development half (one JSON file per conversation): not part of the repository;
#: point ``LOCOMO_DIR`` (or ``--data``) at it.
DATA = Path(os.environ["LOCOMO_DIR"]) if os.environ.get("LOCOMO_DIR") else None
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (1, 5, 10)
TOP_K = 10
_EVIDENCE = re.compile(r"D:?(\d+):(\d+)")

# name -> settings (MEMORY_<NAME>); "seed blend" is the seed's formula on cosine alone.
SEED_W = {"weight_similarity": 0.6, "weight_importance": 0.3, "weight_recency": 0.1}
MATCH_ONLY = {"weight_similarity": 1.0, "weight_importance": 0.0, "weight_recency": 0.0}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("pure cosine (int8)", {"search_mode": "vector", **MATCH_ONLY}),
    ("seed blend 0.6cos+0.3imp+0.1rec", {"search_mode": "vector", **SEED_W}),
    ("BM25 alone", {"search_mode": "hybrid", "fusion": "convex", "fusion_vector_weight": 0.0, **MATCH_ONLY}),
    ("old default: RRF k20 + seed weights", {"search_mode": "hybrid", "fusion": "rrf", "rrf_k": 20, **SEED_W}),
    ("RRF k20, match only", {"search_mode": "hybrid", "fusion": "rrf", "rrf_k": 20, **MATCH_ONLY}),
    ("RRF k60, match only", {"search_mode": "hybrid", "fusion": "rrf", "rrf_k": 60, **MATCH_ONLY}),
    ("RRF k60 + seed weights", {"search_mode": "hybrid", "fusion": "rrf", "rrf_k": 60, **SEED_W}),
    ("RRF k20 pool100, match only", {"search_mode": "hybrid", "fusion": "rrf", "rrf_k": 20, "candidate_pool": 100,
                                     **MATCH_ONLY}),
    ("convex a0.5, match only", {"search_mode": "hybrid", "fusion": "convex", "fusion_vector_weight": 0.5,
                                 **MATCH_ONLY}),
    ("convex a0.3, match only", {"search_mode": "hybrid", "fusion": "convex", "fusion_vector_weight": 0.3,
                                 **MATCH_ONLY}),
    ("convex a0.7, match only", {"search_mode": "hybrid", "fusion": "convex", "fusion_vector_weight": 0.7,
                                 **MATCH_ONLY}),
    ("convex a0.5 + seed weights", {"search_mode": "hybrid", "fusion": "convex", "fusion_vector_weight": 0.5,
                                    **SEED_W}),
    ("convex a0.5 + 0.8/0.15/0.05", {"search_mode": "hybrid", "fusion": "convex", "fusion_vector_weight": 0.5,
                                     "weight_similarity": 0.8, "weight_importance": 0.15, "weight_recency": 0.05}),
    ("convex a0.5 pool100 + seed weights", {"search_mode": "hybrid", "fusion": "convex",
                                            "fusion_vector_weight": 0.5, "candidate_pool": 100, **SEED_W}),
    ("convex a0.5 pool20 + seed weights", {"search_mode": "hybrid", "fusion": "convex",
                                           "fusion_vector_weight": 0.5, "candidate_pool": 20, **SEED_W}),
    ("current default", {}),
]


def _session_time(raw: str) -> datetime:
    return datetime.strptime(raw.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def load_conversation(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(turns as ingest items without user_id, questions with normalised evidence)."""
    doc = json.loads(path.read_text())
    conv = doc.get("conversation", doc)
    turns: list[dict[str, Any]] = []
    n = 1
    while f"session_{n}" in conv:
        when = _session_time(conv[f"session_{n}_date_time"])
        for i, turn in enumerate(conv[f"session_{n}"]):
            content = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                content += f" [image: {turn['blip_caption']}]"
            turns.append({
                "content": content, "content_type": "conversation", "source_type": "locomo",
                "source_id": turn["dia_id"], "context_id": f"session_{n}",
                "created_at": (when + timedelta(seconds=i)).isoformat(),
            })
        n += 1
    questions = []
    for qa in doc["qa"]:
        if qa.get("category") not in CATEGORIES:
            continue
        evidence = {f"D{a}:{b}" for e in qa.get("evidence", []) for a, b in _EVIDENCE.findall(str(e))}
        if evidence:
            questions.append({"question": qa["question"], "category": qa["category"], "evidence": evidence})
    return turns, questions


def recall_table(hits: list[tuple[int, float, float, float]]) -> dict[str, Any]:
    """hits: (category, r@1, r@5, r@10) per question -> means per category and overall."""
    out: dict[str, Any] = {}
    groups: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for cat, *r in hits:
        groups[CATEGORIES[cat]].append(tuple(r))
        groups["overall"].append(tuple(r))
    for name, rows in groups.items():
        out[name] = {f"r@{k}": round(sum(x[i] for x in rows) / len(rows), 4) for i, k in enumerate(KS)}
        out[name]["n"] = len(rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="LoCoMo JSON files (default: $LOCOMO_DIR)")
    parser.add_argument("--only", nargs="*", help="run only variants whose name contains one of these")
    parser.add_argument("--thresholds", type=float, nargs="*", default=list(THRESHOLDS),
                        help="min_relevance values to measure under the default ranking")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("set LOCOMO_DIR or pass --data DIR (the LoCoMo dev conversations, one JSON file each)")

    from local.services import start_postgres

    t0 = time.perf_counter()
    pg = start_postgres(BENCH_PG_DIR, database="coda_bench_locomo", fresh_database=True)
    apply_env(bench_env(pg.app_url))
    api = Handlers()

    files = sorted(args.data.glob("*.json"))
    if not files:
        print(f"no LoCoMo files in {args.data}", file=sys.stderr)
        return 2
    users: dict[str, list[dict[str, Any]]] = {}
    dia_of: dict[str, set[str]] = defaultdict(set)  # memory id -> dia_ids it stands for
    n_turns = 0
    for path in files:
        user = f"locomo-{path.stem}"
        turns, questions = load_conversation(path)
        users[user] = questions
        for start in range(0, len(turns), 100):
            chunk = [dict(t, user_id=user) for t in turns[start:start + 100]]
            for item, res in zip(chunk, api.ingest_batch(chunk), strict=True):
                if res["status"] == "rejected":
                    raise RuntimeError(f"turn {item['source_id']} rejected: {res['error']}")
                dia_of[res["memory_id"]].add(item["source_id"])
        n_turns += len(turns)
        print(f"ingested {user}: {len(turns)} turns, {len(questions)} questions", flush=True)
    load_s = time.perf_counter() - t0

    import psycopg

    variants = [v for v in VARIANTS if not args.only or any(o in v[0] for o in args.only)]
    results: dict[str, Any] = {}
    for name, overrides in variants:
        t1 = time.perf_counter()
        hits = []
        with settings_override(**overrides):
            for user, questions in users.items():
                for q in questions:
                    found = api.search(q["question"], user, TOP_K)
                    hits.append(_score(q, [dia_of[r["id"]] for r in found]))
        results[name] = {"settings": overrides, "recall": recall_table(hits),
                         "seconds": round(time.perf_counter() - t1, 1)}
        print(f"  {name:<40} r@10 {results[name]['recall']['overall']['r@10']:.3f}", flush=True)

    results.update(threshold_recall(api, users, dia_of, args.thresholds))

    # PostgreSQL's own full-text ranking (no IDF), OR of the query's lexemes, same rows.
    hits = []
    with psycopg.connect(pg.admin_url) as conn:
        for user, questions in users.items():
            for q in questions:
                rows = conn.execute(
                    """SELECT id::text FROM memories WHERE user_id = %(u)s AND NOT deleted
                         AND search_vector @@ or_tsquery(%(q)s)
                       ORDER BY ts_rank_cd(search_vector, or_tsquery(%(q)s)) DESC, id LIMIT %(k)s""",
                    {"u": user, "q": q["question"], "k": TOP_K},
                ).fetchall()
                hits.append(_score(q, [dia_of[r[0]] for r in rows]))
    results["full-text alone (ts_rank_cd)"] = {"settings": "SQL", "recall": recall_table(hits)}

    from coda_memory.config import Settings

    defaults = Settings()
    default_desc = {k: getattr(defaults, k) for k in (
        "search_mode", "fusion", "fusion_vector_weight", "rrf_k", "candidate_pool",
        "weight_similarity", "weight_importance", "weight_recency", "recency_decay")}
    print_tables(results, n_turns, sum(len(q) for q in users.values()), default_desc)
    payload = {"machine": machine(), "turns": n_turns, "load_seconds": round(load_s, 1),
               "recall_definition": "mean over questions of |evidence in top k| / |evidence|",
               "default_settings": default_desc, "variants": results}
    print(f"\nwrote {write_json('retrieval', payload)}")
    return 0


THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def threshold_recall(
    api: Handlers, users: dict[str, list[dict[str, Any]]], dia_of: dict[str, set[str]], thresholds: list[float],
) -> dict[str, Any]:
    """Recall under the default ranking with ``min_relevance`` = t for each t. One search per
    question with top_k=50 (the candidate pool, so the same candidates as top_k=10): the
    threshold only removes results below it, so the top 10 at t are the first 10 of those with
    similarity >= t. Also counts how many results a /context request of 10 would lose."""
    ranked: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for user, questions in users.items():
        for q in questions:
            ranked.append((q, api.search(q["question"], user, 50)))
    out: dict[str, Any] = {}
    for t in thresholds:
        hits, dropped = [], 0
        for q, found in ranked:
            kept = [r for r in found if not t or r["similarity"] >= t]  # 0 keeps all, as the API
            dropped += len(found[:TOP_K]) - len(kept[:TOP_K])
            hits.append(_score(q, [dia_of[r["id"]] for r in kept[:TOP_K]]))
        name = f"default, min_relevance {t:.2f}"
        out[name] = {"settings": {"min_relevance": t}, "recall": recall_table(hits),
                     "results_dropped_per_query": round(dropped / max(1, len(ranked)), 2)}
        print(f"  {name:<40} r@10 {out[name]['recall']['overall']['r@10']:.3f}"
              f"  (of 10 results, {out[name]['results_dropped_per_query']} dropped)", flush=True)
    return out


def _score(q: dict[str, Any], ranked: list[set[str]]) -> tuple[int, float, float, float]:
    ev = q["evidence"]
    out = [q["category"]]
    for k in KS:
        seen = set().union(*ranked[:k]) if ranked[:k] else set()
        out.append(len(ev & seen) / len(ev))
    return (out[0], out[1], out[2], out[3])  # type: ignore[return-value]


def print_tables(results: dict[str, Any], n_turns: int, n_questions: int, default: dict[str, Any]) -> None:
    print(f"\nLoCoMo dev half: {n_turns} turns, {n_questions} questions (categories 1-4), top_k={TOP_K}")
    print("recall@k = mean over questions of (evidence turns in top k / evidence turns)")
    print(f"default settings: {default}\n")
    cats = list(CATEGORIES.values())
    head = f"| {'ranking':<40} | r@1   | r@5   | r@10  | " + " | ".join(f"{c[:11]:<11}" for c in cats) + " |"
    print(head)
    print("|" + "|".join("-" * (len(p) + 0) for p in head.split("|")[1:-1]) + "|")
    for name, res in results.items():
        r = res["recall"]
        o = r["overall"]
        per = " | ".join(f"{r[c]['r@10']:<11.3f}" if c in r else f"{'-':<11}" for c in cats)
        print(f"| {name:<40} | {o['r@1']:.3f} | {o['r@5']:.3f} | {o['r@10']:.3f} | {per} |")
    print("(per-category columns are recall@10)")


if __name__ == "__main__":
    sys.exit(main())
