"""MCP function: POST /mcp, the MCP server over streamable HTTP (stateless, JSON responses)."""

from coda_memory import runtime

runtime.prewarm()  # start loading the model while FastAPI and the rest import (Lambda init)

from fastapi import Depends, Request, Response  # noqa: E402

from coda_memory.api.app import caller, create_app  # noqa: E402
from coda_memory.api.lambda_handler import make_handler  # noqa: E402
from coda_memory.auth import Caller  # noqa: E402
from coda_memory.contract import BODY, COMMON, JsonRpcMessage, JsonRpcResponse, error_responses, request_body  # noqa: E402
from coda_memory.mcp.server import http_identity, http_response  # noqa: E402
from coda_memory.models import ID_PATTERN  # noqa: E402

app = create_app("coda-memory mcp")


# X-User-Id is read by http_identity (a user-bound key may leave it out); the document marks it
# required, which every key satisfies, since a client generated from it cannot know the key's kind.
USER_HEADER = {"name": "X-User-Id", "in": "header", "required": True,
               "schema": {"type": "string", "pattern": ID_PATTERN},
               "description": "the user the tools act for: required with the service key; with a key bound to "
                              "a user it may be left out, and may only name that user (403 otherwise)"}


@app.post(
    "/mcp", response_model=None,
    openapi_extra={**request_body(JsonRpcMessage, "one MCP JSON-RPC message (streamable HTTP, stateless)"),
                   "parameters": [USER_HEADER]},
    responses={200: {"model": JsonRpcResponse, "description": "the JSON-RPC response"},
               202: {"description": "a notification or response was accepted (no body)"},
               **error_responses(*COMMON, *BODY, 403, 415)},
)
async def mcp_endpoint(request: Request, who: Caller = Depends(caller)) -> Response:
    """The MCP server (streamable HTTP, stateless, JSON responses): tools remember, recall, get_context,
    list_memories, get_memory, update_memory, forget, acting for the key's user (or X-User-Id with the
    service key)."""
    return await http_response(http_identity(who, request.headers.get("x-user-id")), request)


handler = make_handler(app)
