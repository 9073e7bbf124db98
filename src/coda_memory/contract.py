"""The API contract as code: response models, the error schema, request-body declarations and
the per-route status codes, plus the merge of the functions' FastAPI apps into the one OpenAPI
3.1 document of the API (``openapi.json``, ``make openapi``).

Handlers read their bodies themselves (``json_body`` + ``parse_model``: 400/413/422 stay under
our control), so FastAPI cannot see the request models; :func:`request_body` declares them for
the document from the same pydantic models the handlers validate with. Responses go through
``response_model`` (FastAPI validates and serialises them with these models), so the document
and what a handler sends cannot differ.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from . import __version__
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MemoryServiceError,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from .models import optional

REF = "#/components/schemas/{model}"

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
MemoryId = Annotated[str, Field(json_schema_extra={"format": "uuid"})]


# --- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. validation_error")
    message: str = Field(description="what went wrong, for people; never echoes input values")

    @classmethod
    def of(cls, exc: MemoryServiceError) -> ErrorDetail:
        """``exc`` as a result reports it (a rejected batch item, event or import line)."""
        return cls(code=exc.code, message=exc.message)


class ErrorBody(BaseModel):
    """Every error the API answers: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


#: What each documented error status means on this API (the description in the document); the
#: codes come from the errors' classes.
ERROR_STATUSES: dict[int, str] = {
    400: f"The body is not a JSON object, or the cursor is not one this API gave ({BadRequest.code}).",
    401: f"Missing or unknown X-API-Key ({Unauthorized.code}); also answered by the gateway.",
    403: f"The API key may not act for this user ({Forbidden.code}).",
    404: "No such memory for this user, or a memory named in the body is not one of the user's "
         f"({NotFound.code}; the message names it).",
    409: "Another memory of the user already has this content, or a supersession is taken or would close "
         f"a cycle ({Conflict.code}; the error names the memory_id).",
    413: f"The body is larger than the configured limit ({PayloadTooLarge.code}).",
    415: f"The body is not application/json ({UnsupportedMediaType.code}).",
    422: f"A field, path or query parameter is invalid ({ValidationFailed.code}); the message names it.",
    429: f"Rate limit or quota exceeded ({RateLimited.code}, {QuotaExceeded.code}); see Retry-After.",
    503: f"The database is unavailable ({ServiceUnavailable.code}); retry after Retry-After.",
}

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}

#: Statuses every authenticated route can answer.
COMMON = (401, 422, 429, 503)
#: ... routes that read a JSON body.
BODY = (400, 413)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for error statuses, all with the error schema."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {"model": ErrorBody, "description": ERROR_STATUSES[status]}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


def memory_links(memory_id: str, user_id: str) -> dict[str, Any]:
    """OpenAPI ``links`` from an answer naming a memory to the operations on it (runtime
    expressions such as ``$response.body#/memory_id``): what a client can do next, and what
    the fuzzer's stateful phase chains."""
    params = {"path.id": memory_id, "query.user_id": user_id}
    return {
        name: {"operationId": op, "parameters": params}
        for name, op in (("GetMemory", "get_memory"), ("UpdateMemory", "update_memory"),
                         ("MemoryHistory", "memory_history"), ("DeleteMemory", "delete_memory"))
    }


# --- request bodies --------------------------------------------------------------------------

#: Models named in request bodies; their schemas go into the document's components.
BODY_MODELS: dict[str, type[BaseModel]] = {}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to ``model``'s schema, which goes into the document's components."""
    BODY_MODELS[model.__name__] = model
    return {"$ref": REF.format(model=model.__name__)}


def request_body(model: type[BaseModel], description: str | None = None, *,
                 ndjson_line: type[BaseModel] | None = None) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON request body of a route whose handler
    validates it with ``parse_model(model, await json_body(request))``; with ``ndjson_line``,
    the body may also be NDJSON, one ``ndjson_line`` object per line (``x-itemSchema``: what
    OpenAPI 3.2 calls ``itemSchema`` for sequential media types)."""
    content: dict[str, Any] = {}
    if ndjson_line is not None:
        content["application/x-ndjson"] = {
            "schema": {"type": "string", "minLength": 1,
                       "description": f"NDJSON: one {ndjson_line.__name__} JSON object per line"},
            "x-itemSchema": _ref(ndjson_line),
        }
    content["application/json"] = {"schema": _ref(model)}
    body: dict[str, Any] = {"required": True, "content": content}
    if description:
        body["description"] = description
    return {"requestBody": body}


def ndjson_response(description: str, headers: dict[str, str]) -> dict[str, Any]:
    """A ``responses=`` entry for an NDJSON answer with the given headers."""
    return {
        "description": description,
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        "headers": {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()},
    }


# --- responses -------------------------------------------------------------------------------


class SimilarMemory(BaseModel):
    """A live memory close to the one just written (``return_similar``)."""

    memory_id: MemoryId
    content: str
    similarity: float = Field(description="cosine similarity to the new memory")


class IngestResult(BaseModel):
    """The outcome for one item: stored (``created``), already stored (``duplicate``, with the
    existing memory's id) or ``rejected`` (batch only, with the error)."""

    status: Literal["created", "duplicate", "rejected"]
    memory_id: MemoryId | None = None
    error: ErrorDetail | None = None
    event_id: str | None = None
    similar: list[SimilarMemory] | None = Field(
        None, description="with return_similar: up to 3 live memories stored before, closest first, "
                          "cosine >= MEMORY_SIMILAR_MIN, the exact duplicate left out")


class BatchResponse(BaseModel):
    results: list[IngestResult] = Field(description="one result per item, in order")


class MemoryView(BaseModel):
    """The fields of a memory every answer that shows one has (search results too)."""

    id: MemoryId
    content: str
    content_type: str
    source_type: str
    source_id: str | None
    context_id: str | None
    tags: list[str]
    importance: float
    created_at: Timestamp
    metadata: dict[str, Any]


class Memory(MemoryView):
    """A stored memory as ``GET /memory/{id}``, ``PATCH`` and ``GET /memories`` return it."""

    user_id: str
    confidence: float
    content_hash: str
    ingested_at: Timestamp
    accessed_at: Timestamp | None
    access_count: int
    archived: bool
    archived_at: Timestamp | None
    version: int = Field(description="1 at creation, +1 on every change")
    updated_at: Timestamp | None
    expires_at: Timestamp | None
    superseded_by: MemoryId | None = Field(description="the memory that replaces this one (it is then out of "
                                                       "search, context and listings)")
    superseded_at: Timestamp | None


class MemoryPage(BaseModel):
    """``GET /memories``: a page of the user's memories, newest first."""

    memories: list[Memory]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


class HistoryEntry(BaseModel):
    version: int
    action: str
    at: Timestamp
    actor: str
    changes: dict[str, Any] = Field(description="field -> {old, new}")


class MemoryHistory(BaseModel):
    memory_id: MemoryId
    history: list[HistoryEntry] = Field(description="oldest first")


class ScoreParts(BaseModel):
    """Why a result ranked where it did (``explain: true``):
    ``relevance = w_sim * match + w_imp * importance + w_rec * recency + neighbour``."""

    cosine: float = Field(description="cosine similarity of query and memory")
    lexical: float = Field(description="BM25 score of the memory for the query's words (0: no word in common)")
    match: float = Field(description="cosine and BM25 fused over the candidates (hybrid), or the cosine (vector), "
                                     "times length_factor")
    importance: float
    recency: float = Field(description="1 / (1 + age_days * decay)")
    neighbour: float = Field(description="lift from one of the best hits this memory sits next to "
                                         "(same context_id, close in time); 0 for most results")
    length_factor: float = Field(description="what a long memory's match was multiplied by: 1 for a memory of at "
                                             "most MEMORY_LONG_MEMORY_LEXEMES distinct words, less for a longer one")
    relevance: float


class SearchResult(MemoryView):
    similarity: float = Field(description="cosine similarity of query and memory")
    relevance: float = Field(description="blended score the results are ordered by")
    archived: bool = Field(description="true only with include_archived")
    superseded_by: MemoryId | None = Field(description="set only with include_superseded")
    explain: ScoreParts | None = Field(None, description="with explain: true, the parts of the score")


class Relation(BaseModel):
    """``source_id`` --type--> ``target_id``; ``supersedes`` is listed, never posted (it is
    recorded by ``supersedes`` on ingest and undone by ``PATCH superseded_by: null``)."""

    source_id: MemoryId
    type: Literal["supersedes", "extends", "derived_from", "relates_to"]
    target_id: MemoryId
    created_at: Timestamp


class RelationList(BaseModel):
    relations: list[Relation] = Field(description="outgoing and incoming, oldest first")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    took_ms: float


class ContextResponse(BaseModel):
    context: str = Field(description="the memories as text, within max_tokens")
    token_count: int
    memory_ids: list[MemoryId]
    truncated: bool


class DeleteResult(BaseModel):
    memory_id: MemoryId
    status: Literal["deleted", "erased"]


class EraseResult(BaseModel):
    user_id: str
    erased: int = Field(description="memories erased for good")
    status: Literal["erased"]


class RejectedLine(BaseModel):
    line: int = Field(description="line number, from 1")
    error: ErrorDetail


class ImportResult(BaseModel):
    created: int
    duplicate: int
    rejected: list[RejectedLine]


class StateCounts(BaseModel):
    """Memories by state; each memory is in exactly one."""

    live: int = Field(description="searchable: not deleted, expired, archived or superseded")
    archived: int
    superseded: int
    expired: int = Field(description="expires_at passed, until the retention purge erases them")
    deleted: int = Field(description="soft-deleted, until the retention purge erases them")


class RecallBuckets(BaseModel):
    """Live memories by how often a search returned them."""

    never: int
    one_to_four: int
    five_plus: int


class TagCount(BaseModel):
    tag: str
    count: int


class DayCount(BaseModel):
    day: str = Field(json_schema_extra={"format": "date"})
    count: int


class QuotaUse(BaseModel):
    memory_count: int
    max_memories: int
    daily_ingestions: int = Field(description="today (UTC)")
    max_daily_ingestions: int


class BusyUser(BaseModel):
    user_id: str
    live: int
    recalled: int = Field(description="how many of the user's live memories were recalled at least once")


class _Stats(BaseModel):
    counts: StateCounts
    recall: RecallBuckets
    archival_due: int = Field(description="memories the next archival run would archive")
    content_types: dict[str, int] = Field(description="live memories by content type")
    source_types: dict[str, int] = Field(description="live memories by source type")
    top_tags: list[TagCount] = Field(description="the most used tags of live memories")
    created_per_day: list[DayCount] = Field(description="memories created per UTC day, the last 90 days "
                                            "(days without any left out)")


class UserStats(_Stats):
    """``GET /users/{user_id}/stats``."""

    user_id: str
    quota: QuotaUse


class ServiceStats(_Stats):
    """``GET /stats`` (service key only): the same over every user."""

    users: int = Field(description="users with at least one memory row")
    busiest_users: list[BusyUser] = Field(description="users with the most live memories")


class HealthModel(BaseModel):
    name: str
    dimension: int
    quantization: str | None = None
    error: str | None = None


class HealthDatabase(BaseModel):
    status: Literal["ok", "unavailable"]
    server_version: str | None = None
    pgvector: str | None = None
    schema_version: int | str | None = None
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    model: HealthModel
    database: HealthDatabase


class JsonRpcMessage(BaseModel):
    """One MCP JSON-RPC 2.0 request (with ``id``) or notification (without): ``initialize``,
    ``tools/list``, ``tools/call``, ``ping``, ``notifications/initialized``, ... The MCP SDK
    validates the parameters of each method; an unknown method or bad parameters are a JSON-RPC
    error in a 200 answer. (A JSON-RPC response from the client is accepted with 202 too; this
    stateless server never sends requests that would need one.)"""

    model_config = ConfigDict(extra="allow")

    jsonrpc: Literal["2.0"]
    id: int | str | SkipJsonSchema[None] = Field(None, description="the request's id; absent for a notification",
                                                 json_schema_extra=optional())
    method: str = Field(examples=["tools/list"])
    params: dict[str, Any] | SkipJsonSchema[None] = Field(None, description="the method's parameters",
                                                          json_schema_extra=optional())


class JsonRpcError(BaseModel):
    code: int
    message: str
    data: Any = None


class JsonRpcResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    jsonrpc: Literal["2.0"]
    id: int | str | None
    result: dict[str, Any] | None = None
    error: JsonRpcError | None = None


# --- one document for every function ----------------------------------------------------------

Operation = tuple[str, str]  # (METHOD, /path) as the template routes it


def _refs(value: Any) -> Iterable[str]:
    """The names of the components every ``$ref`` inside ``value`` points at."""
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"].rsplit("/", 1)[-1]
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _model_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    models = list(models)
    if not models:
        return {}
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return dict(top.get("$defs", {}))


def build_document(
    apps: Sequence[tuple[FastAPI, Iterable[Operation]]], *, title: str = "coda-memory API",
    servers: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API: each app contributes the operations the template
    routes to its function (``GET /health`` exists in two apps, the template routes it to one).
    Components of all apps and the request-body models are merged; a name defined twice with
    different schemas is an error (two models would silently shadow each other)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}

    def add_schema(name: str, schema: Any) -> None:
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"two different schemas are named {name}")
        schemas[name] = schema

    body_models: dict[str, type[BaseModel]] = {}
    for app, operations in apps:
        wanted = {(m.upper(), p) for m, p in operations}
        spec = app.openapi()
        for path, item in spec.get("paths", {}).items():
            for method, operation in item.items():
                if (method.upper(), path) not in wanted:
                    continue
                paths.setdefault(path, {})[method] = copy.deepcopy(operation)
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            add_schema(name, schema)
        for route in app.routes:
            if isinstance(route, APIRoute) and route.openapi_extra:
                for name in _refs(route.openapi_extra.get("requestBody", {})):
                    if name in BODY_MODELS:
                        body_models[name] = BODY_MODELS[name]
    for name, schema in _model_schemas(body_models.values()).items():
        add_schema(name, schema)
    # FastAPI's own validation error schemas are unused: our 422 is the error schema.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": (
                "Semantic long-term memory for LLM agents. Every route needs an API key in the "
                "X-API-Key header; every error is {\"error\": {\"code\", \"message\"}}."
            ),
        },
        "paths": {p: dict(sorted(paths[p].items())) for p in sorted(paths)},
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"ApiKey": []}],
    }
    if servers:
        doc["servers"] = servers
    return doc
