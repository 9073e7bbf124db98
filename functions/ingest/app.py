"""Ingest function: POST /ingest, POST /ingest/batch, GET /memories, GET|PATCH|DELETE
/memory/{id}, GET /memory/{id}/history, DELETE /users/{user_id}/memories, GET
/users/{user_id}/export, POST /users/{user_id}/import (routed here by
infra/template.yaml); plus direct invokes from the subscriber."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from fastapi import Depends, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402

from coda_memory.api.app import caller, create_app, json_body, raw_body  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.auth import Caller  # noqa: E402
from coda_memory.models import BatchRequest, parse_model  # noqa: E402
from coda_memory.usecases import ingest, memories, transfer  # noqa: E402

app = create_app("coda-memory ingest")


@app.post("/ingest")
async def ingest_one(request: Request, who: Caller = Depends(caller)) -> JSONResponse:
    body = await json_body(request)
    result = ingest.ingest(who, [body], atomic_single=True)[0]
    return JSONResponse(result.as_dict(), status_code=201 if result.status == "created" else 200)


@app.post("/ingest/batch")
async def ingest_batch(request: Request, who: Caller = Depends(caller)) -> dict:
    batch = parse_model(BatchRequest, await json_body(request))
    return {"results": [r.as_dict() for r in ingest.ingest(who, batch.items)]}


@app.get("/memory/{memory_id}")
async def get_memory(memory_id: str, user_id: str | None = None, who: Caller = Depends(caller)) -> dict:
    return memories.get_memory(who, memory_id, user_id)


@app.get("/memories")
async def list_memories(
    user_id: str | None = None, limit: int = 20, cursor: str | None = None, content_type: str | None = None,
    tag: str | None = None, context_id: str | None = None, created_after: str | None = None,
    created_before: str | None = None, include_archived: bool = False, who: Caller = Depends(caller),
) -> dict:
    return memories.list_memories(
        who, user_id, limit=limit, cursor=cursor, content_type=content_type, tag=tag, context_id=context_id,
        created_after=created_after, created_before=created_before, include_archived=include_archived,
    )


@app.patch("/memory/{memory_id}")
async def update_memory(
    memory_id: str, request: Request, user_id: str | None = None, who: Caller = Depends(caller)
) -> dict:
    return memories.update_memory(who, memory_id, user_id, await json_body(request))


@app.get("/memory/{memory_id}/history")
async def memory_history(memory_id: str, user_id: str | None = None, who: Caller = Depends(caller)) -> dict:
    return memories.memory_history(who, memory_id, user_id)


@app.delete("/memory/{memory_id}")
async def delete_memory(
    memory_id: str, user_id: str | None = None, hard: bool = False, who: Caller = Depends(caller)
) -> dict:
    return memories.delete_memory(who, memory_id, user_id, hard)


@app.delete("/users/{user_id}/memories")
async def erase_user(user_id: str, who: Caller = Depends(caller)) -> dict:
    return memories.erase_user(who, user_id)


@app.get("/users/{user_id}/export")
async def export_user(
    user_id: str, cursor: str | None = None, embeddings: bool = False, who: Caller = Depends(caller)
) -> Response:
    page = transfer.export_page(who, user_id, cursor, embeddings=embeddings)
    headers = {"X-Memory-Count": str(page.count)}
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    return Response(page.body, media_type="application/x-ndjson", headers=headers)


@app.post("/users/{user_id}/import")
async def import_user(user_id: str, request: Request, who: Caller = Depends(caller)) -> dict:
    return transfer.import_lines(who, user_id, await raw_body(request))


handler = make_handler(app, direct={"ingest_events": ingest.ingest_events})
