"""Token-budgeted context assembly for prompts.

Memories go in relevance order, one delimited entry each::

    [2024-05-01 fact] The user is allergic to peanuts.

An entry that does not fit is skipped (``truncated`` is then true) and smaller later entries may
still fill the budget; if not even the first entry fits, its beginning is kept, cut at a word
boundary and marked with an ellipsis, so a non-empty result never comes back empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

TokenEstimator = Callable[[str], int]

_SEPARATOR = "\n"
_WORD = re.compile(r"\S+")


def chars4(text: str) -> int:
    """The seed's estimate: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def words(text: str) -> int:
    """A word-based estimate (~1.3 tokens per word), closer for English prose."""
    return math.ceil(len(_WORD.findall(text)) * 4 / 3)


ESTIMATORS: dict[str, TokenEstimator] = {"chars4": chars4, "words": words}


@dataclass(frozen=True)
class AssembledContext:
    context: str
    token_count: int
    memory_ids: list[str]
    truncated: bool


def format_entry(memory: dict[str, Any]) -> str:
    created = memory["created_at"]
    day = created.date().isoformat() if hasattr(created, "date") else str(created)[:10]
    return f"[{day} {memory['content_type']}] {memory['content']}"


def assemble(
    memories: Sequence[dict[str, Any]], max_tokens: int, estimate: TokenEstimator = chars4
) -> AssembledContext:
    """Pack ``memories`` (already in relevance order) into at most ``max_tokens`` tokens as
    measured by ``estimate`` on the final text."""
    parts: list[str] = []
    ids: list[str] = []
    truncated = False
    for memory in memories:
        entry = format_entry(memory)
        candidate = _SEPARATOR.join([*parts, entry])
        if estimate(candidate) <= max_tokens:
            parts.append(entry)
            ids.append(str(memory["id"]))
        else:
            truncated = True
    if not parts and memories:
        first = _cut(format_entry(memories[0]), max_tokens, estimate)
        if first:
            parts, ids = [first], [str(memories[0]["id"])]
    text = _SEPARATOR.join(parts)
    return AssembledContext(text, estimate(text) if text else 0, ids, truncated)


def _cut(entry: str, max_tokens: int, estimate: TokenEstimator) -> str:
    """The longest prefix of ``entry`` (ending at a word boundary where possible) plus an
    ellipsis that fits in ``max_tokens``; empty when not even one word fits."""
    lo, hi = 0, len(entry)
    while lo < hi:  # binary search on the prefix length
        mid = (lo + hi + 1) // 2
        if estimate(entry[:mid].rstrip() + " …") <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    prefix = entry[:lo]
    if lo < len(entry) and " " in prefix:
        prefix = prefix[: prefix.rfind(" ")]
    prefix = prefix.rstrip()
    return prefix + " …" if prefix else ""
