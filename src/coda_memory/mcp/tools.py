"""The MCP tools: schemas derived from the API's pydantic models, calls into the use cases.

Identity is never a tool argument: every call runs for the :class:`Identity` of the connection
(a user-bound key's user, or the service key's ``X-User-Id`` / ``--user``). The input schemas are
the API's request models without ``user_id``; arguments are validated by those same models (with
the connection's user filled in), so a bad argument gets the API's own message. A ``user_id``
argument is refused, never silently replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import contract
from ..auth import Caller
from ..errors import ValidationFailed
from ..models import (
    UUID_SCHEMA,
    ContentTypeName,
    ContextRequest,
    Identifier,
    IngestItem,
    ListQuery,
    MemoryPatch,
    SearchRequest,
    parse_memory_id,
    parse_model,
)
from ..usecases import ingest, links, memories, search

#: Arguments no tool accepts: who the call is for comes from the connection.
IDENTITY_ARGUMENTS = ("user_id",)


@dataclass(frozen=True)
class Identity:
    """Who a tool call acts as: the authenticated caller and the user it acts for."""

    caller: Caller
    user_id: str


class MemoryRef(BaseModel):
    """Arguments naming one memory of the connection's user."""

    model_config = ConfigDict(extra="forbid")

    memory_id: str = Field(description="the memory's id (UUID)", json_schema_extra=UUID_SCHEMA)


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema without the identity arguments."""
    schema = model.model_json_schema()
    props = schema.get("properties", {})
    for name in IDENTITY_ARGUMENTS:
        props.pop(name, None)
    schema["required"] = [r for r in schema.get("required", []) if r not in IDENTITY_ARGUMENTS]
    return schema


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="serialization")


def _no_identity(arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments``, refused (422) when they try to name a user."""
    for name in IDENTITY_ARGUMENTS:
        if name in arguments:
            raise ValidationFailed(
                f"{name} is not a tool argument: the user comes from the connection "
                "(the API key's user, or X-User-Id / --user with the service key)"
            )
    return dict(arguments)


def _with_user(identity: Identity, arguments: dict[str, Any]) -> dict[str, Any]:
    return {**arguments, "user_id": identity.user_id}


# --- the tools -------------------------------------------------------------------------------

ToolResult = tuple[str, dict[str, Any]]  # compact text for the model, structured content


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RememberArguments(IngestItem):
    """``remember`` arguments: a memory as ``POST /ingest`` takes it, with defaults for what a
    model should not have to invent (``remember({"content": "..."})`` is enough)."""

    content_type: ContentTypeName = Field("fact", description="one of the configured content types "
                                          "(default: conversation, fact, preference, event)")
    source_type: Identifier = Field("mcp", description="where the memory came from")


#: the defaults ``remember`` fills in before the memory is validated as an ingest item
REMEMBER_DEFAULTS = {name: RememberArguments.model_fields[name].default for name in ("content_type", "source_type")}


def remember(identity: Identity, arguments: dict[str, Any]) -> ToolResult:
    # the similar memories always come back: the model decides whether the new one replaces one
    item = parse_model(IngestItem, {**REMEMBER_DEFAULTS, **_with_user(identity, arguments), "return_similar": True})
    result = ingest.ingest(identity.caller, [item], atomic_single=True)[0]
    out = result.model_dump(mode="json", exclude_unset=True)
    text = (f"remembered as {result.memory_id}" if result.status == "created"
            else f"already remembered as {result.memory_id}")
    if result.similar:
        close = "; ".join(f"{_short(s.content, 120)!r} (id {s.memory_id})" for s in result.similar)
        text += f"\nyou already remember: {close}; pass supersedes=[id] if this replaces it"
    return text, out


def recall(identity: Identity, arguments: dict[str, Any]) -> ToolResult:
    request = parse_model(SearchRequest, _with_user(identity, arguments))
    out = search.search(identity.caller, request)
    lines = [
        f"{i}. [{r['content_type']}, relevance {r['relevance']:.2f}] {_short(r['content'])} (id {r['id']})"
        for i, r in enumerate(out["results"], 1)
    ]
    return ("\n".join(lines) or "no matching memories"), out


def get_context(identity: Identity, arguments: dict[str, Any]) -> ToolResult:
    request = parse_model(ContextRequest, _with_user(identity, arguments))
    out = search.build_context(identity.caller, request)
    return (out["context"] or "no relevant memories"), out


def get_memory(identity: Identity, arguments: dict[str, Any]) -> ToolResult:
    ref = parse_model(MemoryRef, arguments)
    mid = parse_memory_id(ref.memory_id)
    out = memories.get_memory(identity.caller, mid, identity.user_id)
    tags = f", tags {', '.join(out['tags'])}" if out.get("tags") else ""
    text = f"[{out['content_type']}, {out['created_at']}{tags}] {out['content']}"
    if out.get("superseded_by"):
        text += f"\nsuperseded by {out['superseded_by']} (out of recall; update_memory superseded_by=null "\
                "reinstates it)"
    related = links.list_relations(identity.caller, mid, identity.user_id)["relations"]
    text += "".join(f"\n{r['source_id']} {r['type']} {r['target_id']}" for r in related)
    return text, out


def list_memories(identity: Identity, arguments: dict[str, Any]) -> ToolResult:
    out = memories.list_memories(identity.caller, parse_model(ListQuery, _with_user(identity, arguments)))
    lines = [f"- [{m['content_type']}, {m['created_at'][:10]}] {_short(m['content'])} (id {m['id']})"
             for m in out["memories"]]
    more = f"\nmore: pass cursor {out['next_cursor']!r}" if out["next_cursor"] else ""
    return ("\n".join(lines) or "no memories") + more, out


class MemoryUpdate(MemoryRef):
    """``update_memory`` arguments: the memory and the fields to change (a MemoryPatch)."""


def _update_schema() -> dict[str, Any]:
    # memory_id + MemoryPatch's fields: MemoryPatch validates the patch (its own messages) and
    # counts the fields present, so memory_id stays out of it.
    schema = input_schema(MemoryPatch)
    ref = input_schema(MemoryRef)
    schema["properties"] = {**ref["properties"], **schema["properties"]}
    schema["required"] = ["memory_id", *schema.get("required", [])]
    schema["title"] = "MemoryUpdate"
    return schema


def update_memory(identity: Identity, arguments: dict[str, Any]) -> ToolResult:
    patch = dict(arguments)
    ref = parse_model(MemoryRef, {"memory_id": patch.pop("memory_id", None)})
    mid, changes = parse_memory_id(ref.memory_id), parse_model(MemoryPatch, patch)
    out = memories.update_memory(identity.caller, mid, identity.user_id, changes)
    return f"updated {out['id']} (version {out['version']})", out


def forget(identity: Identity, arguments: dict[str, Any]) -> ToolResult:
    ref = parse_model(MemoryRef, arguments)
    out = memories.delete_memory(identity.caller, parse_memory_id(ref.memory_id), identity.user_id, hard=False)
    return f"forgot {out['memory_id']}", out


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    run: Callable[[Identity, dict[str, Any]], ToolResult]

    def call(self, identity: Identity, arguments: dict[str, Any]) -> ToolResult:
        """Run the tool for ``identity``; arguments naming a user are refused for every tool."""
        return self.run(identity, _no_identity(arguments))

    def input_schema(self) -> dict[str, Any]:
        return _update_schema() if self.input_model is MemoryUpdate else input_schema(self.input_model)

    def output_schema(self) -> dict[str, Any]:
        return output_schema(self.output_model)


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("remember", "Store a memory for the user (a fact, preference, event or conversation "
         "snippet; content_type defaults to fact, source_type to mcp). Returns its id and the "
         "memories already stored that are close to it; storing the same content again returns the "
         "existing id. When the new memory replaces one (a changed fact, a correction), pass its id "
         "in supersedes: the old one then no longer comes back from recall. relations link it to "
         "memories it extends, is derived_from or relates_to.",
         RememberArguments, contract.IngestResult, remember),
    Tool("recall", "Search the user's memories by meaning and keywords; best matches first. "
         "Optional filters narrow by type, tags, importance, context or time.",
         SearchRequest, contract.SearchResponse, recall),
    Tool("get_context", "The user's memories most relevant to a query, as one text block within "
         "max_tokens, ready to put into a prompt.",
         ContextRequest, contract.ContextResponse, get_context),
    Tool("list_memories", "The user's memories, newest first, a page at a time (limit, cursor), "
         "optionally by content_type, tag, context_id or creation time.",
         ListQuery, contract.MemoryPage, list_memories),
    Tool("get_memory", "One memory of the user by id, with what superseded it and its relations.",
         MemoryRef, contract.Memory, get_memory),
    Tool("update_memory", "Correct a memory: give its id and only the fields to change (content, "
         "content_type, tags, importance, confidence, metadata, context_id, expires_at; "
         "superseded_by: null brings a superseded memory back, an id marks it replaced by that memory).",
         MemoryUpdate, contract.Memory, update_memory),
    Tool("forget", "Delete one memory of the user (soft delete: it no longer shows up; erased "
         "for good after the retention period).", MemoryRef, contract.DeleteResult, forget),
)}


