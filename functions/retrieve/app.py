"""Retrieve function: POST /search, POST /context, GET /users/{user_id}/stats, GET /stats, GET /health."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from fastapi import Depends, Path, Request  # noqa: E402

from coda_memory.api.app import caller, create_app  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.auth import Caller  # noqa: E402
from coda_memory.contract import (  # noqa: E402
    BODY,
    COMMON,
    ContextResponse,
    Health,
    SearchResponse,
    ServiceStats,
    UserStats,
    error_responses,
    request_body,
)
from coda_memory.http_messages import json_body  # noqa: E402
from coda_memory.models import ID_PATTERN, ContextRequest, SearchRequest, parse_model  # noqa: E402
from coda_memory.usecases import health, search, stats  # noqa: E402

app = create_app("coda-memory retrieve")


@app.post("/search", response_model=SearchResponse, response_model_exclude_unset=True,
          openapi_extra=request_body(SearchRequest),
          responses=error_responses(*COMMON, *BODY, 403))
async def search_memories(request: Request, who: Caller = Depends(caller)) -> dict:
    """Search the user's memories by meaning and words, ranked by blended relevance."""
    return search.search(who, parse_model(SearchRequest, await json_body(request)))


@app.post("/context", response_model=ContextResponse, openapi_extra=request_body(ContextRequest),
          responses=error_responses(*COMMON, *BODY, 403))
async def context(request: Request, who: Caller = Depends(caller)) -> dict:
    """The user's most relevant memories as one text block within `max_tokens`."""
    return search.build_context(who, parse_model(ContextRequest, await json_body(request)))


@app.get("/users/{user_id}/stats", response_model=UserStats,
         responses=error_responses(*COMMON, 403))
async def user_stats(user_id: str = Path(pattern=ID_PATTERN), who: Caller = Depends(caller)) -> dict:
    """What the user's memory holds: states, content and source types, top tags, memories created per day,
    how often they are recalled, quota use, and how many the next archival run would archive."""
    return stats.user_stats(who, user_id)


@app.get("/stats", response_model=ServiceStats, responses=error_responses(*COMMON, 403))
async def service_stats(who: Caller = Depends(caller)) -> dict:
    """The same over every user, with the number of users and the busiest ones (service key only: 403 otherwise)."""
    return stats.all_stats(who)


@app.get("/health", response_model=Health, response_model_exclude_unset=True,
         responses=error_responses(401, 429))
async def get_health(who: Caller = Depends(caller)) -> dict:
    """Liveness, model and database facts; `degraded` (still 200) when either is unavailable."""
    return health.health()


handler = make_handler(app)
