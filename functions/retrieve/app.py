"""Retrieve function: POST /search, POST /context, GET /health."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from fastapi import Depends, Request  # noqa: E402

from coda_memory.api.app import caller, create_app, json_body  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.auth import Caller  # noqa: E402
from coda_memory.models import ContextRequest, SearchRequest, parse_model  # noqa: E402
from coda_memory.usecases import health, search  # noqa: E402

app = create_app("coda-memory retrieve")


@app.post("/search")
async def search_memories(request: Request, who: Caller = Depends(caller)) -> dict:
    return search.search(who, parse_model(SearchRequest, await json_body(request)))


@app.post("/context")
async def context(request: Request, who: Caller = Depends(caller)) -> dict:
    return search.build_context(who, parse_model(ContextRequest, await json_body(request)))


@app.get("/health")
async def get_health(who: Caller = Depends(caller)) -> dict:
    return health.health()


handler = make_handler(app)
