"""Ranking ideas measured offline, on the scores the service computes, before any of them is
built into the search SQL.

    python -m bench.retrieval_offline [--locomo DIR] [--beam DIR]

Needs the database that ``python -m bench.retrieval --reuse`` built (the same conversations).
For every question it reads, once, the cosine of the query to every live memory of its user
(the stored vectors; the query embedded by the service's embedder) and the exact BM25 of every
one (``bm25_scores``), caches them under ``.local/bench-recall-scores/``, and then re-ranks in
NumPy: the service's formula (convex fusion over the 50 nearest and the 50 best by BM25, seed
weights, recency, the long-memory factor, neighbouring evidence and the reply rule), so its
default reproduces ``bench.retrieval``'s figures, and variants of it: the long-memory factor
and neighbouring evidence with other settings, pseudo-relevance feedback, MMR diversity, BM25
sharpened or flattened, other fusion weights and pools. Metrics as in :mod:`bench.retrieval`.

Cross-validation by conversation, both data sets at once: each conversation is held out in
turn, the variant whose smaller gain over the baseline (by default the ranking before the
long-memory factor and the reply rule) across the two data sets is largest on the other
conversations (ties: the larger sum of the two) is chosen and scored on the held-out one. A
variant is kept only when it wins on both.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import BENCH_PG_DIR, REPO
from bench.retrieval import DATABASE, KS, MAP_FILE, TOP_K, data_arguments
from bench.retrieval_data import Conversation, load

CACHE = REPO / ".local" / "bench-recall-scores-v2"
POOL = 50


@dataclass
class User:
    data_set: str
    name: str
    vectors: np.ndarray  # unit vectors, one per live memory
    importance: np.ndarray
    age_days: np.ndarray
    sources: list[list[str]]
    context_order: dict[int, tuple[str, int]]  # memory index -> (context_id, position)
    contexts: dict[str, list[int]]
    questions: list[dict[str, Any]]  # question, category, evidence, vec, cos, bm25
    lexemes: np.ndarray  # distinct words (tsvector length): the long-memory factor's measure
    asks: np.ndarray  # the memory's last sentence is a question (the reply rule)


def _read(conv: Conversation, conn: Any, sources: dict[str, list[str]], embed: Callable[[str], np.ndarray]) -> User:
    rows = conn.execute(
        """SELECT id, embedding::text, importance, extract(epoch FROM now() - created_at) / 86400, context_id,
                  source_id, length(search_vector), content ~ '\\?[^.!]*$'
           FROM memories m WHERE user_id = %s AND memory_searchable(m) ORDER BY created_at, id""",
        (conv.name,)).fetchall()
    ids = [r[0] for r in rows]
    vectors = np.array([json.loads(r[1]) for r in rows], dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    contexts: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r[4] is not None:
            contexts[r[4]].append(i)
    order = {i: (c, p) for c, members in contexts.items() for p, i in enumerate(members)}
    conn.execute("SELECT set_config('app.current_user_id', %s, false)", (conv.name,))
    questions = []
    for q in conv.questions:
        v = embed(q["question"])
        bm25 = dict(conn.execute("SELECT id, score FROM bm25_scores(%s, %s)", (q["question"], ids)).fetchall())
        questions.append({**q, "vec": v / np.linalg.norm(v), "cos": vectors @ (v / np.linalg.norm(v)),
                          "bm25": np.array([bm25.get(i) or 0.0 for i in ids])})
    return User(conv.data_set, conv.name, vectors, np.array([float(r[2]) for r in rows]),
                np.maximum(0, np.array([float(r[3]) for r in rows])),
                [sources.get(str(i), [r[5]]) for i, r in zip(ids, rows, strict=True)], order, dict(contexts),
                questions, np.array([max(1, r[6]) for r in rows], dtype=float), np.array([r[7] for r in rows]))


def users(conversations: list[Conversation]) -> Iterator[User]:
    """Every conversation's scores, read from the benchmark database once and cached."""
    import psycopg

    from coda_memory import runtime
    from local.services import start_postgres

    stored = json.loads(MAP_FILE.read_text())
    CACHE.mkdir(parents=True, exist_ok=True)
    pg = None
    for conv in conversations:
        path = CACHE / f"{conv.name}.pkl"
        if not path.is_file():
            if conv.name not in stored["users"]:
                raise SystemExit(f"{conv.name} is not in the benchmark database: run bench.retrieval --reuse first")
            if pg is None:
                pg = start_postgres(BENCH_PG_DIR, database=DATABASE)
                os.environ.setdefault("DATABASE_URL", pg.app_url)
            with psycopg.connect(pg.admin_url, autocommit=True) as conn:
                user = _read(conv, conn, stored["sources"], runtime.embedder().embed_one)
            path.write_bytes(pickle.dumps(user))
        yield pickle.loads(path.read_bytes())  # our own cache file


# -- the service's ranking and the variants --------------------------------------------------

Ranker = Callable[[User, dict[str, Any]], np.ndarray]


def _candidates(u: User, cos: np.ndarray, bm25: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nearest = np.argsort(-cos, kind="stable")[:pool]
    matching = np.nonzero(bm25 > 0)[0]
    lexical = matching[np.argsort(-bm25[matching], kind="stable")[:pool]]
    return nearest, lexical, np.union1d(nearest, lexical)


def _long_factor(u: User, lexemes: int, power: float, floor: float) -> np.ndarray:
    """memory_rank.sql's long-memory factor of every memory (1 when off)."""
    if not lexemes:
        return np.ones(len(u.lexemes))
    return np.maximum(floor, np.minimum(1.0, lexemes / u.lexemes) ** power)


def _score(u: User, idx: np.ndarray, cos: np.ndarray, bm25: np.ndarray, a: float,
           factor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    c, b = np.maximum(cos[idx], 0), bm25[idx]
    fused = a * c / (c.max() or 1) + (1 - a) * b / (b.max() or 1)
    if factor is not None:
        fused = fused * factor[idx]
    return fused, 0.6 * fused + 0.3 * u.importance[idx] + 0.1 / (1 + u.age_days[idx] * 0.01)


def _neighbours(u: User, i: int, span: int) -> list[int]:
    if i not in u.context_order:
        return []
    context, p = u.context_order[i]
    members = u.contexts[context]
    return [members[x] for x in range(max(0, p - span), min(len(members), p + span + 1)) if x != p]


def _reply(u: User, i: int) -> int | None:
    """The memory right after ``i`` in its context."""
    if i not in u.context_order:
        return None
    context, p = u.context_order[i]
    members = u.contexts[context]
    return members[p + 1] if p + 1 < len(members) else None


def service(**settings: Any) -> Ranker:
    """memory_rank.sql's order (:func:`service_scores` with these settings)."""
    scored = service_scores(**settings)
    return lambda u, q: scored(u, q)[0]


def service_scores(a: float = 0.5, pool: int = POOL, seeds: int = 4, span: int = 3, weight: float = 0.3,
                   bm25_power: float = 1.0, per_hit: int = 0, long_lexemes: int = 60, long_power: float = 1.0,
                   long_floor: float = 0.25, reply_weight: float = 0.5, lift_long: bool = False
                   ) -> Callable[[User, dict[str, Any]], tuple[np.ndarray, np.ndarray]]:
    """memory_rank.sql: convex fusion; the long-memory factor (long_lexemes = 0: off);
    neighbouring evidence (seeds = 0: off) and its reply rule. The ranked memories and their
    relevance (the lifts included), best first."""
    def rank(u: User, q: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        cos, bm25 = q["cos"], q["bm25"] ** bm25_power
        factor = _long_factor(u, long_lexemes, long_power, long_floor)
        nearest, lexical, idx = _candidates(u, cos, bm25, pool)
        links: list[tuple[int, int]] = []
        if seeds:
            firsts = dict.fromkeys([*nearest[:seeds].tolist(), *lexical[:seeds].tolist()])
            links = [(j, k) for j in firsts for k in _neighbours(u, j, span)]
            idx = np.union1d(idx, np.array([k for _, k in links], dtype=int))
        fused, rel = _score(u, idx, cos, bm25, a, factor)
        at = {int(k): n for n, k in enumerate(idx)}
        hits = set(idx[np.lexsort((-cos[idx], -rel))[:seeds]].tolist())
        lifted = rel.copy()
        best: dict[int, list[tuple[float, int]]] = defaultdict(list)  # per hit: its neighbours by own score
        for j, k in links:
            if j in hits:
                best[j].append((rel[at[k]], k))
        for j, ks in best.items():
            for _, k in sorted(ks, reverse=True)[:per_hit or None]:
                if factor[k] < 1 and not lift_long:  # a long memory is not lifted as a neighbour
                    continue
                if reply_weight and u.asks[j] and _reply(u, j) == k:
                    lift = rel[at[k]] + 0.6 * reply_weight * fused[at[j]]  # the reply: not capped
                else:
                    lift = min(rel[at[k]] + 0.6 * weight * fused[at[j]], rel[at[j]] - 1e-9)
                lifted[at[k]] = max(lifted[at[k]], lift)
        order = np.lexsort((-cos[idx], -lifted))
        return idx[order], lifted[order]
    return rank


def feedback(beta: float, m: int) -> Ranker:
    """Pseudo-relevance feedback (Rocchio on the vector): query + beta * mean of the first m."""
    first = service(seeds=0)

    def rank(u: User, q: dict[str, Any]) -> np.ndarray:
        top = first(u, q)[:m]
        v = q["vec"] + beta * u.vectors[top].mean(0)
        return first(u, {**q, "cos": u.vectors @ (v / np.linalg.norm(v))})
    return rank


def diversity(lam: float) -> Ranker:
    """MMR over the ranked candidates: lam * relevance - (1 - lam) * max cosine to those taken."""
    def rank(u: User, q: dict[str, Any]) -> np.ndarray:
        cos, bm25 = q["cos"], q["bm25"]
        _, _, idx = _candidates(u, cos, bm25, POOL)
        _, rel = _score(u, idx, cos, bm25, 0.5, _long_factor(u, 60, 1.0, 0.25))
        order = np.lexsort((-cos[idx], -rel))
        idx, rel = idx[order], rel[order]
        taken: list[int] = []
        rest = list(range(len(idx)))
        while rest and len(taken) < TOP_K:
            redundancy = (u.vectors[idx[rest]] @ u.vectors[idx[taken]].T).max(1) if taken else np.zeros(len(rest))
            best = rest[int(np.argmax(lam * rel[rest] - (1 - lam) * redundancy))]
            taken.append(best)
            rest.remove(best)
        return np.concatenate([idx[taken], idx[rest]])
    return rank


BASELINE = "before: neighbours of 3 hits, no long-memory factor, replies capped"
VARIANTS: dict[str, Ranker] = {
    BASELINE: service(seeds=3, long_lexemes=0, reply_weight=0, lift_long=True),
    "convex fusion alone": service(seeds=0, long_lexemes=0, reply_weight=0),
    "long neighbours lifted too": service(lift_long=True),
    "default: long memories from 60 words, power 1, floor 0.25; neighbours of 4 hits, span 3, weight 0.3; "
    "replies weight 0.5; long neighbours not lifted": service(),
    "no long-memory factor": service(long_lexemes=0),
    "replies capped": service(reply_weight=0),
    **{f"replies weight {w}": service(reply_weight=w) for w in (0.3, 0.4, 0.6, 0.7, 1.0)},
    "no neighbours": service(seeds=0),
    **{f"long memories from {n} words, power {p}": service(long_lexemes=n, long_power=p)
       for n in (40, 50, 60, 80, 100) for p in (0.5, 1.0, 2.0) if (n, p) != (60, 1.0)},
    "long-memory floor 0.5": service(long_floor=0.5),
    "long-memory factor, no floor": service(long_floor=0.0),
    **{f"neighbours of {n} hits, span {s}, weight {w}": service(seeds=n, span=s, weight=w)
       for n in (3, 4, 5, 10) for s in (1, 2, 3) for w in (0.2, 0.3, 0.5) if (n, s, w) != (4, 3, 0.3)},
    **{f"convex a={a}, no neighbours": service(a=a, seeds=0) for a in (0.3, 0.55, 0.6, 0.65, 0.7)},
    **{f"convex a={a} + neighbours": service(a=a) for a in (0.55, 0.6, 0.65)},
    "pool 25, no neighbours": service(pool=25, seeds=0),
    "pool 100, no neighbours": service(pool=100, seeds=0),
    **{f"feedback beta={b}, m={m}": feedback(b, m) for b, m in ((0.2, 3), (0.5, 3), (0.2, 5))},
    **{f"MMR lambda={lam}": diversity(lam) for lam in (0.8, 0.9, 0.95)},
    **{f"BM25^{p}, no neighbours": service(bm25_power=p, seeds=0) for p in (0.7, 1.5)},
    **{f"BM25^{p} with neighbours": service(bm25_power=p) for p in (0.6, 0.7, 0.85)},
    **{f"neighbours: the best {n} of each hit's lifted": service(per_hit=n) for n in (1, 2, 3)},
    **{f"convex a={a}, BM25^{p} with neighbours": service(a=a, bm25_power=p) for a in (0.55,) for p in (0.7, 0.85)},
}


def evaluate(all_users: list[User], rank: Ranker) -> list[dict[str, Any]]:
    rows = []
    for u in all_users:
        for q in u.questions:
            top = rank(u, q)[:TOP_K]
            scores = {f"r@{k}": len(q["evidence"] & {s for i in top[:k] for s in u.sources[i]}) / len(q["evidence"])
                      for k in KS}
            rows.append({"data_set": u.data_set, "conversation": u.name, "category": q["category"], **scores,
                         "hit@10": float(scores["r@10"] > 0)})
    return rows


def mean(rows: list[dict[str, Any]], metric: str = "r@10") -> float:
    return float(np.mean([r[metric] for r in rows])) if rows else 0.0


def cross_validate(results: dict[str, list[dict[str, Any]]], baseline: str = BASELINE,
                   metric: str = "r@10") -> dict[str, Any]:
    """Each conversation held out in turn, the variant chosen on the others by ``metric``."""
    convs = sorted({(r["data_set"], r["conversation"]) for r in results[baseline]})
    chosen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    picks: dict[str, int] = defaultdict(int)
    for _, held in convs:
        def gain(name: str, held: str = held) -> tuple[float, float]:
            gains = [mean([r for r in results[name] if r["data_set"] == ds and r["conversation"] != held], metric)
                     - mean([r for r in results[baseline] if r["data_set"] == ds and r["conversation"] != held],
                            metric)
                     for ds in ("locomo", "beam")]
            # the smaller gain, then the sum: a change that cannot touch one data set (a
            # LoCoMo turn is never a long memory) still has to win on the other
            return round(min(gains), 9), sum(gains)
        best = max(results, key=gain)
        picks[best] += 1
        chosen[best] += [r for r in results[best] if r["conversation"] == held]
    held_out = [r for rows in chosen.values() for r in rows]
    return {"picks": dict(picks), "held_out": held_out}


def blocks(u: User, size: int) -> Iterator[User]:
    """``u`` cut into consecutive blocks of ``size`` memories, each with the questions whose
    evidence lies inside it: an estimate of shorter chats of the same kind (BEAM's 100K and 500K
    chats are about 200 and 900 messages long; the dev chats are the 1M ones)."""
    for lo in range(0, len(u.sources), size):
        keep = np.arange(lo, min(len(u.sources), lo + size))
        part = copy.copy(u)
        part.vectors, part.importance, part.age_days = u.vectors[keep], u.importance[keep], u.age_days[keep]
        part.lexemes, part.asks = u.lexemes[keep], u.asks[keep]
        part.sources = [u.sources[i] for i in keep]
        contexts: dict[str, list[int]] = defaultdict(list)
        for i in keep:
            if i in u.context_order:
                contexts[u.context_order[i][0]].append(int(i) - lo)
        part.contexts = dict(contexts)
        part.context_order = {i: (c, p) for c, members in contexts.items() for p, i in enumerate(members)}
        part.questions = []
        for q in u.questions:
            held = [i for i, s in enumerate(u.sources) if set(s) & q["evidence"]]
            if held and lo <= min(held) and max(held) < lo + size:
                part.questions.append({**q, "cos": q["cos"][keep], "bm25": q["bm25"][keep]})
        if part.questions:
            yield part


def main(argv: list[str] | None = None) -> int:
    parser = data_arguments(__doc__)
    parser.add_argument("--only", nargs="*", help="only the variants whose name contains one of these")
    parser.add_argument("--baseline", default=BASELINE, help="the variant gains are measured against")
    parser.add_argument("--blocks", type=int, nargs="*", default=[],
                        help="also score the BEAM chats cut into blocks of this many messages")
    args = parser.parse_args(argv)
    all_users = list(users(load(args.locomo, args.beam)))
    for size in args.blocks:
        parts = [p for u in all_users if u.data_set == "beam" for p in blocks(u, size)]
        for name, rank in VARIANTS.items():
            if name in (BASELINE, args.baseline) or not args.only or any(o in name for o in args.only):
                rows = evaluate(parts, rank)
                print(f"BEAM in blocks of {size} ({len(parts)} blocks, {len(rows)} questions) | {name} | "
                      + " | ".join(f"{m} {mean(rows, m):.3f}" for m in (*(f"r@{k}" for k in KS), "hit@10")))
    results = {name: evaluate(all_users, rank) for name, rank in VARIANTS.items()
               if name in (BASELINE, args.baseline) or not args.only or any(o in name for o in args.only)}
    data_sets = sorted({u.data_set for u in all_users})
    metrics = (*(f"r@{k}" for k in KS), "hit@10")
    print("| variant | " + " | ".join(f"{ds} {m}" for ds in data_sets for m in metrics) + " |")
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(f"{mean([r for r in rows if r['data_set'] == ds], m):.3f}"
                                           for ds in data_sets for m in metrics) + " |")
    cv = cross_validate(results, args.baseline)
    print(f"\ncross-validation by conversation (both data sets), chosen: {cv['picks']}")
    for ds in data_sets:
        held = [r for r in cv["held_out"] if r["data_set"] == ds]
        base = [r for r in results[args.baseline] if r["data_set"] == ds]
        print(f"{ds}: held out " + ", ".join(f"{m} {mean(held, m):.3f} (before {mean(base, m):.3f})" for m in metrics))
        for cat in sorted({r["category"] for r in held}):
            print(f"  {cat}: r@10 {mean([r for r in held if r['category'] == cat]):.3f}"
                  f" (before {mean([r for r in base if r['category'] == cat]):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
