"""Ingest function: POST /ingest, POST /ingest/batch, GET|DELETE /memory/{id},
DELETE /users/{user_id}/memories, GET /health; plus direct invokes from the subscriber."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from fastapi import Depends, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from coda_memory import service  # noqa: E402
from coda_memory.api.app import caller, create_app, json_body  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.models import BatchRequest  # noqa: E402
from coda_memory.service import Caller  # noqa: E402

app = create_app("coda-memory ingest")


@app.post("/ingest")
async def ingest(request: Request, who: Caller = Depends(caller)) -> JSONResponse:
    body = await json_body(request)
    result = service.ingest(who, [body], atomic_single=True)[0]
    return JSONResponse(result.as_dict(), status_code=201 if result.status == "created" else 200)


@app.post("/ingest/batch")
async def ingest_batch(request: Request, who: Caller = Depends(caller)) -> dict:
    batch = service.parse_model(BatchRequest, await json_body(request))
    return {"results": [r.as_dict() for r in service.ingest(who, batch.items)]}


@app.get("/memory/{memory_id}")
async def get_memory(memory_id: str, user_id: str | None = None, who: Caller = Depends(caller)) -> dict:
    return service.get_memory(who, memory_id, user_id)


@app.delete("/memory/{memory_id}")
async def delete_memory(
    memory_id: str, user_id: str | None = None, hard: bool = False, who: Caller = Depends(caller)
) -> dict:
    return service.delete_memory(who, memory_id, user_id, hard)


@app.delete("/users/{user_id}/memories")
async def erase_user(user_id: str, who: Caller = Depends(caller)) -> dict:
    return service.erase_user(who, user_id)


@app.get("/health")
async def health(who: Caller = Depends(caller)) -> dict:
    return service.health()


handler = make_handler(app, direct={"ingest_events": service.ingest_events})
