"""Ingest function: POST /ingest, POST /ingest/batch, GET /memories, GET|PATCH|DELETE
/memory/{id}, GET /memory/{id}/history, POST|GET /memory/{id}/relations, DELETE
/memory/{id}/relations/{type}/{target_id}, DELETE /users/{user_id}/memories, GET
/users/{user_id}/export, POST /users/{user_id}/import (routed here by
infra/template.yaml); plus direct invokes from the subscriber."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from typing import Annotated  # noqa: E402

from fastapi import Depends, Path, Query, Request, Response  # noqa: E402

from coda_memory.api.app import caller, create_app  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.auth import Caller  # noqa: E402
from coda_memory.contract import (  # noqa: E402
    BODY,
    COMMON,
    BatchResponse,
    DeleteResult,
    EraseResult,
    ImportResult,
    IngestResult,
    Memory,
    MemoryHistory,
    MemoryPage,
    Relation,
    RelationList,
    error_responses,
    memory_links,
    ndjson_response,
    request_body,
)
from coda_memory.http_messages import json_body, raw_body  # noqa: E402
from coda_memory.models import (  # noqa: E402
    CURSOR_SCHEMA,
    ID_PATTERN,
    UUID_SCHEMA,
    BatchRequest,
    ImportLine,
    ImportRequest,
    IngestItem,
    ListQuery,
    MemoryPatch,
    RelationSpec,
    RelationType,
    parse_import,
    parse_ingest_events,
    parse_memory_id,
    parse_model,
)
from coda_memory.usecases import ingest, links, memories, transfer  # noqa: E402

app = create_app("coda-memory ingest")

MemoryIdParam = Path(alias="id", description="the memory's id (UUID)", json_schema_extra=UUID_SCHEMA)
UserIdQuery = Query(pattern=ID_PATTERN, description="the user the memory belongs to")
RelationTypeParam = Path(alias="type", description="extends, derived_from or relates_to")
TargetIdParam = Path(description="the related memory's id (UUID)", json_schema_extra=UUID_SCHEMA)


@app.post(
    "/ingest", response_model=IngestResult, response_model_exclude_unset=True, status_code=201,
    openapi_extra=request_body(IngestItem),
    responses={200: {"model": IngestResult, "description": "Already stored (status duplicate)",
                     "links": memory_links("$response.body#/memory_id", "$request.body#/user_id")},
               201: {"description": "Stored (status created)",
                     "links": memory_links("$response.body#/memory_id", "$request.body#/user_id")},
               **error_responses(*COMMON, *BODY, 403, 404, 409)},
)
async def ingest_one(request: Request, response: Response, who: Caller = Depends(caller)) -> IngestResult:
    """Store one memory: 201 with its id, or 200 `duplicate` with the id of the same content stored before."""
    item = parse_model(IngestItem, await json_body(request))
    result = ingest.ingest(who, [item], atomic_single=True)[0]
    response.status_code = 201 if result.status == "created" else 200
    return result


@app.post(
    "/ingest/batch", response_model=BatchResponse, response_model_exclude_unset=True,
    openapi_extra=request_body(BatchRequest, "items are IngestItem objects; each is validated alone"),
    responses=error_responses(*COMMON, *BODY),
)
async def ingest_batch(request: Request, who: Caller = Depends(caller)) -> dict:
    """Store up to the batch limit of memories in one call; one result per item, in order (an invalid item is
    rejected alone)."""
    batch = parse_model(BatchRequest, await json_body(request))
    return {"results": ingest.ingest(who, batch.parsed_items())}


@app.get("/memory/{id}", response_model=Memory, responses=error_responses(*COMMON, 403, 404))
async def get_memory(memory_id: str = MemoryIdParam, user_id: str = UserIdQuery,
                     who: Caller = Depends(caller)) -> dict:
    """One memory of the user."""
    return memories.get_memory(who, parse_memory_id(memory_id), user_id)


@app.get("/memories", response_model=MemoryPage, responses=error_responses(*COMMON, 400, 403))
async def list_memories(query: Annotated[ListQuery, Query()], who: Caller = Depends(caller)) -> dict:
    """A page of the user's memories, newest first; pass `next_cursor` back as `cursor` for the next page."""
    return memories.list_memories(who, query)


@app.patch("/memory/{id}", response_model=Memory, openapi_extra=request_body(MemoryPatch),
           responses=error_responses(*COMMON, *BODY, 403, 404, 409))
async def update_memory(
    request: Request, memory_id: str = MemoryIdParam, user_id: str = UserIdQuery, who: Caller = Depends(caller)
) -> dict:
    """Change the given fields of a memory; answers the memory with its new version."""
    mid, patch = parse_memory_id(memory_id), parse_model(MemoryPatch, await json_body(request))
    return memories.update_memory(who, mid, user_id, patch)


@app.get("/memory/{id}/history", response_model=MemoryHistory, responses=error_responses(*COMMON, 403, 404))
async def memory_history(memory_id: str = MemoryIdParam, user_id: str = UserIdQuery,
                         who: Caller = Depends(caller)) -> dict:
    """Every change of a memory, oldest first."""
    return memories.memory_history(who, parse_memory_id(memory_id), user_id)


@app.post("/memory/{id}/relations", response_model=Relation, status_code=201,
          openapi_extra=request_body(RelationSpec),
          responses={200: {"model": Relation, "description": "The relation existed already (same body)"},
                     201: {"description": "Recorded"}, **error_responses(*COMMON, *BODY, 403, 404)})
async def add_relation(request: Request, response: Response, memory_id: str = MemoryIdParam,
                       user_id: str = UserIdQuery, who: Caller = Depends(caller)) -> dict:
    """Relate the memory to another of the user's (extends, derived_from, relates_to)."""
    mid, spec = parse_memory_id(memory_id), parse_model(RelationSpec, await json_body(request))
    relation, new = links.add_relation(who, mid, user_id, spec)
    response.status_code = 201 if new else 200
    return relation


@app.get("/memory/{id}/relations", response_model=RelationList, responses=error_responses(*COMMON, 403, 404))
async def list_relations(memory_id: str = MemoryIdParam, user_id: str = UserIdQuery,
                         who: Caller = Depends(caller)) -> dict:
    """The memory's relations, outgoing and incoming, supersession included (type `supersedes`)."""
    return links.list_relations(who, parse_memory_id(memory_id), user_id)


@app.delete("/memory/{id}/relations/{type}/{target_id}", status_code=204, response_class=Response,
            responses={204: {"description": "Removed"}, **error_responses(*COMMON, 403, 404)})
async def delete_relation(
    memory_id: str = MemoryIdParam, relation_type: RelationType = RelationTypeParam,
    target_id: str = TargetIdParam, user_id: str = UserIdQuery,
    who: Caller = Depends(caller),
) -> Response:
    """Remove one relation the memory has to another (supersession: PATCH `superseded_by: null`)."""
    spec = parse_model(RelationSpec, {"type": relation_type, "target_id": target_id})
    links.delete_relation(who, parse_memory_id(memory_id), user_id, spec)
    return Response(status_code=204)


@app.delete("/memory/{id}", response_model=DeleteResult, responses=error_responses(*COMMON, 403, 404))
async def delete_memory(
    memory_id: str = MemoryIdParam, user_id: str = UserIdQuery,
    hard: bool = Query(False, description="erase for good instead of a soft delete"),
    who: Caller = Depends(caller),
) -> dict:
    """Soft-delete a memory (`hard=true`: erase it for good)."""
    return memories.delete_memory(who, parse_memory_id(memory_id), user_id, hard)


@app.delete("/users/{user_id}/memories", response_model=EraseResult, responses=error_responses(*COMMON, 403))
async def erase_user(user_id: str = Path(pattern=ID_PATTERN), who: Caller = Depends(caller)) -> dict:
    """Erase every memory of the user for good (right to be forgotten)."""
    return memories.erase_user(who, user_id)


@app.get("/users/{user_id}/export", response_class=Response,
         responses={200: ndjson_response("one memory per line (every field the import reads back), oldest first", {
             "X-Memory-Count": "memories on this page",
             "X-Next-Cursor": "pass as cursor for the next page; absent on the last page"}),
             **error_responses(*COMMON, 400, 403)})
async def export_user(
    user_id: str = Path(pattern=ID_PATTERN),
    cursor: str | None = Query(None, description="X-Next-Cursor of the previous page", json_schema_extra=CURSOR_SCHEMA),
    embeddings: bool = Query(False, description="include each memory's embedding"),
    include_superseded: bool = Query(False, description="include superseded memories"),
    who: Caller = Depends(caller),
) -> Response:
    """A page of the user's memories as NDJSON (archived included), oldest first, each with its relations."""
    page = transfer.export_page(who, user_id, cursor, embeddings=embeddings, include_superseded=include_superseded)
    headers = {"X-Memory-Count": str(page.count)}
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    return Response(page.body, media_type="application/x-ndjson", headers=headers)


@app.post("/users/{user_id}/import", response_model=ImportResult,
          openapi_extra=request_body(ImportRequest, "memories as the export writes them: NDJSON, one per line, or "
                                     'JSON, {"memories": [...]}', ndjson_line=ImportLine),
          responses=error_responses(*COMMON, *BODY, 403))
async def import_user(request: Request, user_id: str = Path(pattern=ID_PATTERN), who: Caller = Depends(caller)) -> dict:
    """Store memories for the user: ids and created_at kept, idempotent, a bad line rejected alone."""
    json_content = request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
    lines = parse_import(await raw_body(request), json_content=json_content)
    return transfer.import_memories(who, user_id, lines)


def ingest_events(payload: dict) -> dict:
    """Direct invoke from the subscriber: ``{"kind": "ingest_events", "events": [{"event_id", "data"}]}``."""
    return ingest.ingest_events(*parse_ingest_events(payload))


handler = make_handler(app, direct={"ingest_events": ingest_events})
