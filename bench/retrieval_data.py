"""The retrieval benchmark's data sets, read into one shape: per conversation (one user) the
ingest items and the questions with the ``source_id`` values of their evidence.

LoCoMo (``LOCOMO_DIR``): one JSON file per conversation; one memory per turn, content
``"speaker: text"`` plus ``" [image: caption]"`` when the turn shares a photo, ``source_id`` =
dia_id, ``created_at`` = the session's date and time plus the turn's index in seconds (turn
order); questions of categories 1-4 with their evidence dia_ids.

BEAM (``BEAM_DIR``): one folder per chat (``chat.json.gz``, or ``chat_truncated.json.gz`` when
present, as the benchmark's own code does; ``probing_questions.json``); one memory per message,
content = the message text as sent (generation markers such as ``->-> 1,13`` are left in:
an outside caller sends the raw text), ``source_id`` = the message id, ``created_at`` = the
batch's ``time_anchor`` (carried by its first message; a batch without one keeps the previous
date) plus the message id in seconds; questions of every category but abstention (no evidence
by design), evidence = every id in ``source_chat_ids`` whatever its shape (list, list of lists,
dict of lists). A message longer than the service's content limit is cut to it.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

LOCOMO_CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
_EVIDENCE = re.compile(r"D:?(\d+):(\d+)")
MAX_CONTENT_CHARS = 32_000


@dataclass
class Conversation:
    data_set: str
    name: str  # also the user id
    items: list[dict[str, Any]]
    questions: list[dict[str, Any]] = field(default_factory=list)  # question, category, evidence


def _session_time(raw: str) -> datetime:
    return datetime.strptime(raw.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def load_locomo(path: Path) -> Conversation:
    doc = json.loads(path.read_text())
    conv = doc.get("conversation", doc)
    items: list[dict[str, Any]] = []
    n = 1
    while f"session_{n}" in conv:
        when = _session_time(conv[f"session_{n}_date_time"])
        for i, turn in enumerate(conv[f"session_{n}"]):
            content = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                content += f" [image: {turn['blip_caption']}]"
            items.append({
                "content": content, "content_type": "conversation", "source_type": "locomo",
                "source_id": turn["dia_id"], "context_id": f"session_{n}",
                "created_at": (when + timedelta(seconds=i)).isoformat(),
            })
        n += 1
    questions = []
    for qa in doc["qa"]:
        if qa.get("category") not in LOCOMO_CATEGORIES:
            continue
        evidence = {f"D{a}:{b}" for e in qa.get("evidence", []) for a, b in _EVIDENCE.findall(str(e))}
        if evidence:
            questions.append({"question": qa["question"], "category": LOCOMO_CATEGORIES[qa["category"]],
                              "evidence": evidence})
    return Conversation("locomo", f"locomo-{path.stem}", items, questions)


def _flatten_ids(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_flatten_ids(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_flatten_ids(v) for v in value)) if value else set()
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return {str(int(value))}
    return set()


def _anchor(raw: str) -> datetime:
    return datetime.strptime(raw.strip(), "%B-%d-%Y").replace(tzinfo=UTC)


def load_beam(folder: Path) -> Conversation:
    chat_file = folder / "chat_truncated.json.gz"
    if not chat_file.is_file():
        chat_file = folder / "chat.json.gz"
    with gzip.open(chat_file, "rt") as fh:
        batches = json.load(fh)
    items: list[dict[str, Any]] = []
    when = datetime(2024, 1, 1, tzinfo=UTC)
    for batch in batches:
        messages = [m for turn in batch["turns"] for m in turn]
        anchor = batch.get("time_anchor") or next((m.get("time_anchor") for m in messages if m.get("time_anchor")),
                                                  None)
        if anchor:
            when = _anchor(anchor)
        for m in messages:
            items.append({
                "content": m["content"][:MAX_CONTENT_CHARS], "content_type": "conversation",
                "source_type": "beam", "source_id": str(m["id"]),
                "context_id": f"batch_{batch.get('batch_number')}",
                "created_at": (when + timedelta(seconds=int(m["id"]))).isoformat(),
            })
    probing = json.loads((folder / "probing_questions.json").read_text())
    questions = []
    for category, qs in probing.items():
        if category == "abstention":
            continue
        for q in qs:
            evidence = _flatten_ids(q.get("source_chat_ids"))
            if evidence:
                questions.append({"question": q["question"], "category": category, "evidence": evidence})
    return Conversation("beam", f"beam-{folder.name}", items, questions)


def load(locomo_dir: Path | None, beam_dir: Path | None) -> list[Conversation]:
    out: list[Conversation] = []
    if locomo_dir is not None:
        out += [load_locomo(p) for p in sorted(locomo_dir.glob("*.json"))]
    if beam_dir is not None:
        out += [load_beam(p) for p in sorted(beam_dir.iterdir(), key=lambda p: p.name) if p.is_dir()]
    return out
