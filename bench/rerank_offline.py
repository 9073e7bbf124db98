"""A heavier, opt-in reranking measured offline: late interaction (ColBERT-style MaxSim) over the
embedding model's own token vectors, applied to the best candidates of the service's ranking.

    OPENBLAS_NUM_THREADS=1 python -m bench.rerank_offline [--locomo DIR] [--beam DIR] [--no-cost]

The service's default ranking is :mod:`bench.retrieval_offline`'s NumPy copy of it, on the
scores that module caches (convex fusion over the 50 nearest and the 50 best by BM25, the
long-memory factor, neighbouring evidence and the reply rule). For every question the best N of that ranking are
reranked: the query and each candidate run through the int8 ONNX MiniLM once more
(``Embedder.token_vectors``: its last hidden state per token, the first 256 tokens of a
memory, as for its vector), and a candidate scores the mean over the query's tokens of their
best cosine to one of its tokens. Variants: which query tokens count (all; content words only;
content words weighted by their IDF over the N candidates), N, and the weight w of
``(1 - w) * relevance' + w * maxsim'`` (both min-max normalised over the N).

Cross-validation by conversation, both data sets at once, as in :mod:`bench.retrieval_offline`:
each conversation is held out in turn, the variant whose smaller gain over the service's
ranking across the two data sets (then their sum) is largest on the other conversations is
chosen and scored on the held-out one; once choosing by recall@10, once by recall@1. Then the CPU time the reranking
adds per candidate (one onnxruntime thread; the model pass and the scoring), for LoCoMo turns
and for BEAM messages of 400 words or more, beside the CPU time of embedding the same texts
(``embed_one``, what a memory's vector costs) in the same run. Without OPENBLAS_NUM_THREADS=1,
NumPy's BLAS threads keep spinning after each MaxSim product and the model pass that follows
costs twice the CPU (measured: 165 against 83 ms per long candidate).
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import time
from typing import Any

import numpy as np

import bench.retrieval_offline as offline
from bench.retrieval import KS, data_arguments
from bench.retrieval_data import Conversation, load
from bench.retrieval_offline import CACHE, User, mean, service_scores
from coda_memory.embedder import Embedder, load_embedder

#: English function words: a query word among them carries no content of its own
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves s t d ll m re ve
""".split())
_WORD = re.compile(r"\w")
MAX_N = 50  # candidates reranked at most (the variants take the first 20, 30 or 50)
SCORES = CACHE.parent / "bench-rerank-scores"
default_ranking = service_scores()


def content_tokens(tokens: list[str]) -> np.ndarray:
    """Which tokens carry content: not a stop-word, not punctuation (a word's continuation
    piece, ``##...``, always does). None does: every token counts."""
    mask = np.array([t.startswith("##") or (t not in STOP_WORDS and bool(_WORD.search(t))) for t in tokens],
                    dtype=bool)
    return mask if mask.any() else np.ones(len(tokens), dtype=bool)


def token_scores(conv: Conversation, u: User, embedder: Embedder) -> list[dict[str, Any]]:
    """Per question: the service's order and relevance, and for each of its best MAX_N the best
    cosine of every query token to one of the memory's tokens (cached)."""
    path = SCORES / f"{u.name}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())  # our own cache file
    text = {item["source_id"]: item["content"] for item in conv.items}
    memo: dict[int, tuple[list[str], np.ndarray]] = {}
    out = []
    for q in u.questions:
        order, relevance = default_ranking(u, q)
        q_tokens, q_vectors = embedder.token_vectors(q["question"])
        best = []
        for i in order[:MAX_N].tolist():
            if i not in memo:
                memo[i] = embedder.token_vectors(text.get(u.sources[i][0], ""))
            _, vectors = memo[i]
            best.append((q_vectors @ vectors.T).max(axis=1) if len(vectors) else np.zeros(len(q_tokens)))
        out.append({"order": order, "relevance": relevance, "query_tokens": q_tokens, "best": np.array(best),
                    "tokens": [set(memo[i][0]) for i in order[:MAX_N].tolist()]})
    SCORES.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def _normalised(x: np.ndarray) -> np.ndarray:
    spread = x.max() - x.min()
    return (x - x.min()) / spread if spread > 0 else np.zeros_like(x)


def reranked(row: dict[str, Any], query: str, n: int, w: float) -> np.ndarray:
    """The order after reranking the first n with query-token weights ``query``."""
    order, n = row["order"], min(n, len(row["order"]))
    if n < 2:
        return order
    tokens, best = row["query_tokens"], row["best"][:n]
    weights = np.ones(len(tokens)) if query == "all" else content_tokens(tokens).astype(float)
    if query == "idf":  # a token found in few of the candidates says more
        df = np.array([sum(t in have for have in row["tokens"][:n]) for t in tokens])
        idf = weights * np.maximum(np.log((n + 1) / (df + 0.5)), 0)
        weights = idf if idf.sum() > 0 else weights
    sims = best @ weights / weights.sum()
    fused = (1 - w) * _normalised(row["relevance"][:n]) + w * _normalised(sims)
    return np.concatenate([order[:n][np.argsort(-fused, kind="stable")], order[n:]])


VARIANTS = {f"query {query}, N {n}, w {w}": (query, n, w)
            for query in ("all", "content", "idf") for n in (20, 30, 50) for w in (0.2, 0.35, 0.5, 0.65, 0.8)}
BASELINE = "service (no reranking)"
METRICS = (*(f"r@{k}" for k in KS), "hit@10")


def evaluate(data: list[tuple[User, list[dict[str, Any]]]], variant: tuple[str, int, float] | None
             ) -> list[dict[str, Any]]:
    """offline.evaluate of the service's order (variant None) or of the reranked one."""
    rows = {id(q): row for u, scored in data for q, row in zip(u.questions, scored, strict=True)}
    return offline.evaluate([u for u, _ in data], lambda u, q: rows[id(q)]["order"] if variant is None
                            else reranked(rows[id(q)], *variant))


def _line(rows: list[dict[str, Any]]) -> str:
    return " / ".join(f"{mean(rows, m):.3f}" for m in METRICS)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    data_sets = sorted({r["data_set"] for r in results[BASELINE]}, reverse=True)
    print("in-sample, " + " | ".join(f"{ds} r@1 / r@5 / r@10 / hit@10" for ds in data_sets))
    def worst_gain(name: str) -> float:
        return min(mean([r for r in results[name] if r["data_set"] == ds])
                   - mean([r for r in results[BASELINE] if r["data_set"] == ds]) for ds in data_sets)
    for name in sorted(results, key=lambda n: (n != BASELINE, -worst_gain(n)))[:16]:
        print(f"| {name} | " + " | ".join(_line([r for r in results[name] if r["data_set"] == ds])
                                          for ds in data_sets) + " |")
    for metric in ("r@10", "r@1"):
        cv = offline.cross_validate(results, BASELINE, metric)
        picks, held = cv["picks"], cv["held_out"]
        print(f"\ncross-validation by conversation, chosen by {metric}: {picks}")
        for ds in data_sets:
            mine = [r for r in held if r["data_set"] == ds]
            base = [r for r in results[BASELINE] if r["data_set"] == ds]
            print(f"{ds} held out r@1 / r@5 / r@10 / hit@10: {_line(mine)} (service {_line(base)})")
            for cat in sorted({r["category"] for r in mine}):
                print(f"  {cat}: {_line([r for r in mine if r['category'] == cat])}"
                      f" (service {_line([r for r in base if r['category'] == cat])})")


def cost(convs: list[Conversation], embedder: Embedder, repeats: int = 3) -> None:
    """CPU time per reranked candidate: its model pass and its MaxSim against a query."""
    short = [it["content"] for c in convs if c.data_set == "locomo" for it in c.items][:200]
    long = [it["content"] for c in convs if c.data_set == "beam" for it in c.items
            if len(it["content"].split()) >= 400][:60]
    _, query = embedder.token_vectors("What did Caroline decide to study after the support group meeting?")
    for label, texts in (("LoCoMo turns", short), ("BEAM messages of 400+ words", long)):
        if not texts:
            continue
        runs, embeds = [], []
        for _ in range(repeats):
            started = time.process_time()
            for t in texts:
                _, vectors = embedder.token_vectors(t)
                (query @ vectors.T).max(axis=1).mean()
            runs.append((time.process_time() - started) * 1000 / len(texts))
            started = time.process_time()
            for t in texts:
                embedder.embed_one(t)
            embeds.append((time.process_time() - started) * 1000 / len(texts))
        words = np.median([len(t.split()) for t in texts])
        print(f"cost {label} (median {words:.0f} words, {len(texts)} texts, {repeats} runs, "
              f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}): "
              + ", ".join(f"{ms:.1f}" for ms in runs) + " ms CPU per candidate (embed_one of the same texts: "
              + ", ".join(f"{ms:.1f}" for ms in embeds) + " ms)")


def main(argv: list[str] | None = None) -> int:
    parser = data_arguments(__doc__)
    parser.add_argument("--no-cost", action="store_true", help="skip the CPU measurement")
    args = parser.parse_args(argv)
    convs = load(args.locomo, args.beam)
    embedder = load_embedder(threads=1, parallel=1)
    if not args.no_cost:
        # first: with the scores of every variant in memory, Python's garbage collector walks
        # them on every allocation-heavy loop and doubled the figures
        cost(convs, embedder)
    data = [(u, token_scores(c, u, embedder)) for c, u in zip(convs, offline.users(convs), strict=True)]
    results = {BASELINE: evaluate(data, None), **{name: evaluate(data, v) for name, v in VARIANTS.items()}}
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
