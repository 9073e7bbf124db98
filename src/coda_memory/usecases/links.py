"""Supersession and relations between memories: what a write may link, the relation routes
(``POST|GET /memory/{id}/relations``, ``DELETE /memory/{id}/relations/{type}/{target_id}``),
and the checks every path shares (ingest, batch, events, import, PATCH).

A memory that names another in ``supersedes`` replaces it: the older one gets ``superseded_by``
and leaves search, context and listings (readable by id; ``superseded_by: null`` in a PATCH
reinstates it). The rules, checked before anything is written:

* a target must be a visible memory of the same user (404 naming it);
* a memory cannot supersede or relate to itself (422);
* a memory already superseded by another cannot be superseded again (409 naming the one that
  replaced it: supersede that one instead), nor can a supersession close a cycle (409).

Targets are locked (``FOR UPDATE``, id order) for the transaction, after the user's quota row
that every writer takes first, so two requests superseding the same memory queue: the first
wins, the second gets the 409.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import runtime
from ..auth import Caller
from ..db import audit, quotas
from ..db import memories as memory_sql
from ..db import relations as relation_sql
from ..db.pool import DictCursor
from ..errors import Conflict, NotFound, ValidationFailed
from ..models import RelationSpec


@dataclass
class Links:
    """What one memory being written asks for."""

    supersedes: list[uuid.UUID] = field(default_factory=list)
    relations: list[RelationSpec] = field(default_factory=list)

    def targets(self) -> set[uuid.UUID]:
        return set(self.supersedes) | {r.target_id for r in self.relations}


class LinkPlan:
    """The links of one call's memories (one user), checked against the locked targets before
    any row is written, then applied together after the memories are inserted."""

    def __init__(self, cur: DictCursor, user_id: str, wanted: Iterable[Links]):
        self.cur = cur
        self.user_id = user_id
        targets: set[uuid.UUID] = set()
        for links in wanted:
            targets |= links.targets()
        self.locked = relation_sql.lock_visible(cur, user_id, targets)
        self.supersede: list[tuple[uuid.UUID, uuid.UUID]] = []  # (older, newer)
        self.relations: list[relation_sql.Link] = []
        self._claimed: dict[uuid.UUID, uuid.UUID] = {}

    def check(self, source: uuid.UUID, links: Links, *, existing: bool) -> None:
        """Raise the 4xx for the first rule ``links`` breaks (nothing recorded then); otherwise
        record them for :meth:`apply`. ``existing``: ``source`` is already stored (a duplicate,
        an import with its id, a PATCH), so it may close a cycle."""
        if not links.supersedes and not links.relations:
            return
        for target in links.supersedes:
            if target == source:
                raise ValidationFailed("supersedes: a memory cannot supersede itself")
        for rel in links.relations:
            if rel.target_id == source:
                raise ValidationFailed("relations: a memory cannot relate to itself")
        for target in [*links.supersedes, *(r.target_id for r in links.relations)]:
            if target not in self.locked:
                raise NotFound(f"memory {target} not found (named in "
                               f"{'supersedes' if target in links.supersedes else 'relations'})")
        chain = relation_sql.supersession_chain(self.cur, self.user_id, source) if existing else set()
        for target in links.supersedes:
            by = self._claimed.get(target) or self.locked[target]["superseded_by"]
            if by is not None and by != source:
                raise Conflict(f"memory {target} is already superseded by {by}; supersede that one instead",
                               fields={"memory_id": str(by)})
            if target in chain:
                raise Conflict(f"superseding {target} would close a cycle: it already supersedes {source}")
        for target in links.supersedes:
            if self.locked[target]["superseded_by"] != source:
                self._claimed[target] = source
                self.supersede.append((target, source))
        self.relations += [relation_sql.Link(source, r.type, r.target_id) for r in links.relations]

    def apply(self, actor: str) -> None:
        relation_sql.set_superseded(self.cur, self.user_id, self.supersede, actor)
        relation_sql.add_relations(self.cur, self.user_id, self.relations)


def links_of(item: Any) -> Links:
    return Links(list(item.supersedes), list(item.relations))


# --- the relation routes ----------------------------------------------------------------------


def add_relation(caller: Caller, memory_id: uuid.UUID, user_id: str,
                 spec: RelationSpec) -> tuple[dict[str, Any], bool]:
    """Record ``memory --type--> target``; the relation and whether it is new (201) or was
    there already (200, same body)."""
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        quotas.lock(cur, user_id)
        plan = LinkPlan(cur, user_id, [Links(relations=[spec])])
        if memory_id not in relation_sql.lock_visible(cur, user_id, [memory_id]):
            raise NotFound("memory not found")
        plan.check(memory_id, Links(relations=[spec]), existing=True)
        [(link, new)] = relation_sql.add_relations(cur, user_id, plan.relations)
        if new:
            audit.write(cur, [("relate", str(memory_id), "ok", json.dumps({"type": spec.type}))],
                        user_id=user_id, actor=caller.principal.key_id, ip=caller.ip,
                        request_id=caller.request_id)
    return link.as_dict(), new


def list_relations(caller: Caller, memory_id: uuid.UUID, user_id: str) -> dict[str, Any]:
    """Outgoing and incoming relations of a memory, supersession included (``supersedes``)."""
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        if memory_sql.get_memory(cur, user_id, memory_id, ("id",)) is None:
            raise NotFound("memory not found")
        found = relation_sql.links_of(cur, user_id, [memory_id])[memory_id]
    return {"relations": [link.as_dict() for link in found]}


def delete_relation(caller: Caller, memory_id: uuid.UUID, user_id: str, spec: RelationSpec) -> None:
    """Remove ``memory --type--> target`` (404 when there is no such relation). Supersession is
    undone with ``PATCH superseded_by: null`` on the older memory instead."""
    caller.principal.authorize(user_id)
    with runtime.database().user_tx(user_id) as cur:
        if not relation_sql.delete_relation(cur, user_id, memory_id, spec.type, spec.target_id):
            raise NotFound("relation not found")
        audit.write(cur, [("unrelate", str(memory_id), "ok", json.dumps({"type": spec.type}))],
                    user_id=user_id, actor=caller.principal.key_id, ip=caller.ip, request_id=caller.request_id)


def restore_links(cur: DictCursor, user_id: str, links: Sequence[relation_sql.Link], actor: str) -> int:
    """The import's links whose two ends now exist, written if missing (idempotent: an import
    run again, or a link listed on both of its lines, changes nothing); a supersession that is
    taken already or would close a cycle is left out. How many were new."""
    ends = relation_sql.lock_visible(cur, user_id, {e for link in links for e in (link.source_id, link.target_id)})
    restored = 0
    relations: list[relation_sql.Link] = []
    for link in dict.fromkeys(links):
        if link.source_id not in ends or link.target_id not in ends or link.source_id == link.target_id:
            continue
        if link.type != "supersedes":
            relations.append(link)
            continue
        older = ends[link.target_id]
        if older["superseded_by"] is not None or link.target_id in relation_sql.supersession_chain(
                cur, user_id, link.source_id):
            continue
        relation_sql.set_superseded(cur, user_id, [(link.target_id, link.source_id)], actor, [link.created_at])
        older["superseded_by"] = link.source_id
        restored += 1
    restored += sum(1 for _, new in relation_sql.add_relations(cur, user_id, relations) if new)
    return restored
