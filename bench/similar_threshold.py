"""How close an update is to the fact it replaces, against unrelated facts: the data behind
MEMORY_SIMILAR_MIN (the cosine from which ``return_similar`` lists a memory).

BEAM's knowledge-update questions each cite the original fact and its "Information Update"; the
pairs are embedded with the service's model and compared with unrelated pairs: two turns of one
speaker of a LoCoMo conversation (same user, mostly other topics), 2,000 drawn at random::

    python -m bench.similar_threshold --beam DIR --locomo DIR   # the BEAM and LoCoMo dev sets
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np


def pairs(beam: Path, locomo: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    updates: list[tuple[str, str]] = []
    for questions in sorted(beam.glob("*/probing_questions.json")):
        for q in json.loads(questions.read_text()).get("knowledge_update", []):
            refs = [r.split(":", 1)[-1].strip() for r in q.get("conversation_references", [])]
            if len(refs) >= 2:
                updates.append((refs[0], refs[1]))
    rng = random.Random(7)
    turns: list[list[str]] = []
    for conversation in sorted(locomo.glob("*.json")):
        doc = json.loads(conversation.read_text())
        by_speaker: dict[str, list[str]] = {}
        for key, session in doc.items():
            if key.startswith("session_") and isinstance(session, list):
                for turn in session:
                    by_speaker.setdefault(turn.get("speaker", ""), []).append(turn.get("text", ""))
        turns += [t for t in by_speaker.values() if len(t) > 1]
    unrelated = []
    for _ in range(2000):
        texts = rng.choice(turns)
        a, b = rng.sample(range(len(texts)), 2)
        unrelated.append((texts[a], texts[b]))
    return updates, unrelated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beam", type=Path, required=True)
    parser.add_argument("--locomo", type=Path, required=True)
    args = parser.parse_args()
    from coda_memory import runtime

    updates, unrelated = pairs(args.beam, args.locomo)
    embed = runtime.embedder().embed

    def cosines(ps: list[tuple[str, str]]) -> np.ndarray:
        a, b = embed([p[0] for p in ps]), embed([p[1] for p in ps])
        return np.einsum("ij,ij->i", np.asarray(a), np.asarray(b))

    up, un = cosines(updates), cosines(unrelated)
    print(f"update pairs {len(up)}: p10 {np.percentile(up, 10):.3f} p25 {np.percentile(up, 25):.3f} "
          f"median {np.median(up):.3f}")
    print(f"unrelated pairs {len(un)}: median {np.median(un):.3f} p90 {np.percentile(un, 90):.3f} "
          f"p99 {np.percentile(un, 99):.3f} max {un.max():.3f}")
    for t in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7):
        print(f"threshold {t:.2f}: updates found {np.mean(up >= t):.2%}, unrelated listed {np.mean(un >= t):.2%}")


if __name__ == "__main__":
    main()
