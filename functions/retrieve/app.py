"""Retrieve function: POST /search, POST /context, GET /health."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from fastapi import Depends, Request  # noqa: E402

from coda_memory import service  # noqa: E402
from coda_memory.api.app import caller, create_app, json_body  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.models import ContextRequest, SearchRequest  # noqa: E402
from coda_memory.service import Caller  # noqa: E402

app = create_app("coda-memory retrieve")


@app.post("/search")
async def search(request: Request, who: Caller = Depends(caller)) -> dict:
    return service.search(who, service.parse_model(SearchRequest, await json_body(request)))


@app.post("/context")
async def context(request: Request, who: Caller = Depends(caller)) -> dict:
    return service.build_context(who, service.parse_model(ContextRequest, await json_body(request)))


@app.get("/health")
async def health(who: Caller = Depends(caller)) -> dict:
    return service.health()


handler = make_handler(app)
