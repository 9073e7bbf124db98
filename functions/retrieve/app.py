"""Retrieve function: POST /search, POST /context, GET /health."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from fastapi import Depends, Request  # noqa: E402

from coda_memory.api.app import caller, create_app  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.auth import Caller  # noqa: E402
from coda_memory.contract import (  # noqa: E402
    BODY,
    COMMON,
    ContextResponse,
    Health,
    SearchResponse,
    error_responses,
    request_body,
)
from coda_memory.http_messages import json_body  # noqa: E402
from coda_memory.models import ContextRequest, SearchRequest, parse_model  # noqa: E402
from coda_memory.usecases import health, search  # noqa: E402

app = create_app("coda-memory retrieve")


@app.post("/search", response_model=SearchResponse, openapi_extra=request_body(SearchRequest),
          responses=error_responses(*COMMON, *BODY, 403))
async def search_memories(request: Request, who: Caller = Depends(caller)) -> dict:
    """Search the user's memories by meaning and words, ranked by blended relevance."""
    return search.search(who, parse_model(SearchRequest, await json_body(request)))


@app.post("/context", response_model=ContextResponse, openapi_extra=request_body(ContextRequest),
          responses=error_responses(*COMMON, *BODY, 403))
async def context(request: Request, who: Caller = Depends(caller)) -> dict:
    """The user's most relevant memories as one text block within `max_tokens`."""
    return search.build_context(who, parse_model(ContextRequest, await json_body(request)))


@app.get("/health", response_model=Health, response_model_exclude_unset=True,
         responses=error_responses(401, 429))
async def get_health(who: Caller = Depends(caller)) -> dict:
    """Liveness, model and database facts; `degraded` (still 200) when either is unavailable."""
    return health.health()


handler = make_handler(app)
