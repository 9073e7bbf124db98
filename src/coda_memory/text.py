"""Text handling on the ingest path: sanitising, hashing, tag extraction, importance.

All of it is deterministic, so the same input always yields the same row (and hash).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

# Control characters (category Cc) other than tab and newline, lone UTF-16 surrogates (valid in
# a JSON string, not storable in PostgreSQL), and non-characters. NUL is among the Cc.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def sanitize(text: str) -> str:
    """NFC-normalise, turn CR/CRLF into LF, strip control characters, NUL and lone surrogates,
    and trim surrounding white space."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _UNSAFE.sub("", text)
    return unicodedata.normalize("NFC", text).strip()


def sanitize_json(value: Any, depth: int = 0, max_depth: int = 12) -> Any:
    """Sanitise every string (keys too) inside a JSON value; reject over-deep nesting."""
    if depth > max_depth:
        raise ValueError(f"metadata nests deeper than {max_depth} levels")
    if isinstance(value, str):
        return _UNSAFE.sub("", unicodedata.normalize("NFC", value))
    if isinstance(value, dict):
        return {sanitize_json(k, depth + 1): sanitize_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize_json(v, depth + 1) for v in value]
    return value


def content_hash(content: str) -> str:
    """SHA-256 of the sanitised content: integrity check and per-user dedup key."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


# --- tags -------------------------------------------------------------------------------------

_HASHTAG = re.compile(r"(?<![\w#])#([^\W_][\w-]{0,62})", re.UNICODE)
_KEYWORD_TAGS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "preference",
        re.compile(r"\b(i (really )?(like|love|prefer|hate|dislike|enjoy)|my favou?rite|i'd rather)\b", re.I),
    ),
    (
        "schedule",
        re.compile(
            r"\b(meeting|appointment|deadline|tomorrow|next (week|month)"
            r"|on (monday|tuesday|wednesday|thursday|friday|saturday|sunday))\b",
            re.I,
        ),
    ),
    ("task", re.compile(r"\b(todo|to-do|remind me|don't forget|need to|have to)\b", re.I)),
    ("health", re.compile(r"\b(allerg\w*|doctor|medication|diagnos\w*|symptom\w*)\b", re.I)),
    ("code", re.compile(r"```|\b(def|class|function|import|const|SELECT)\s+\w+", re.I)),
    ("contact", re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\+?\d[\d ()-]{7,}\d")),
)


def extract_tags(content: str) -> list[str]:
    """Hashtags (lower-cased, in order of appearance) followed by keyword-rule tags."""
    tags = [m.group(1).lower() for m in _HASHTAG.finditer(content)]
    tags += [name for name, pattern in _KEYWORD_TAGS if pattern.search(content)]
    return _dedupe(tags)


def merge_tags(given: Iterable[str], extracted: Iterable[str], limit: int) -> list[str]:
    """Caller's tags first, then extracted ones, without duplicates, at most ``limit``."""
    return _dedupe([*given, *extracted])[:limit]


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


# --- importance -------------------------------------------------------------------------------
#
# A documented, deterministic heuristic used only when the caller gives no importance:
#   base by content type: preference 0.6, fact 0.6, event 0.5, conversation 0.4, other 0.5
#   +0.15  explicit memory cue ("remember", "important", "never forget", "always", "must")
#   +0.10  personal preference or identity statement (see the "preference" tag rule)
#   +0.05  concrete details: a number, a date or a proper name mid-sentence
#   +0.05  substantial text (> 200 characters)
#   -0.15  filler (under 12 characters, or only acknowledgements like "ok", "thanks", "lol")
# clamped to [0.05, 1.0] and rounded to 2 decimals.

_BASE = {"preference": 0.6, "fact": 0.6, "event": 0.5, "conversation": 0.4}
_CUE = re.compile(r"\b(remember|important|never forget|always|must|crucial|don't forget)\b", re.I)
_DETAIL = re.compile(r"\d|(?<=[a-z,;] )[A-Z][a-z]+")
_FILLER = re.compile(
    r"^(ok(ay)?|k|thanks?( you)?|thx|lol|haha|yes|no|yep|nope|sure|cool|nice|hi|hello|bye)[.!?\s]*$", re.I
)


def score_importance(content: str, content_type: str) -> float:
    """Importance in [0.05, 1] from the content alone (see the table above)."""
    score = _BASE.get(content_type, 0.5)
    if _CUE.search(content):
        score += 0.15
    if _KEYWORD_TAGS[0][1].search(content):
        score += 0.10
    if _DETAIL.search(content):
        score += 0.05
    if len(content) > 200:
        score += 0.05
    if len(content) < 12 or _FILLER.match(content):
        score -= 0.15
    return round(min(1.0, max(0.05, score)), 2)
