"""The MCP server (official ``mcp`` SDK 2.x, low-level ``Server``) and its two transports.

* Streamable HTTP, stateless, JSON responses: :func:`handle_http` answers one ``POST /mcp``
  (the ``McpFunction`` Lambda behind API Gateway; the local gateway on :3000 routes it from the
  template). The request's :class:`~coda_memory.mcp.tools.Identity` travels in the ASGI scope.
* stdio: :func:`run_stdio` for desktop agents, with the identity fixed at start-up (``--user``).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import anyio
import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .. import __version__
from ..auth import Caller
from ..errors import (
    MemoryServiceError,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    error_code_for,
)
from ..http_messages import error_response, json_body
from ..models import check_identifier
from .tools import TOOLS, Identity

log = logging.getLogger(__name__)

SCOPE_KEY = "coda_memory.mcp.identity"
INSTRUCTIONS = (
    "Long-term memory for this user. Use recall or get_context before answering questions that "
    "may depend on what the user said earlier; use remember for durable facts and preferences. "
    "remember answers with the memories you already have that are close to the new one: when the "
    "new memory replaces one of them (the user moved, changed a preference, corrected a fact), call "
    "remember with supersedes=[that id] so the outdated memory stops coming back; when both stay "
    "true, do not. Tools act for the connection's user only."
)


def _error(code: str, message: str, fields: dict[str, Any] | None = None) -> types.CallToolResult:
    """A failed tool call as a tool result the model reads: ``code: message`` and the error's
    extra fields (e.g. the memory_id a conflict names) as text. No structured content: clients
    check structured content against the tool's output schema even on errors (the TypeScript
    SDK throws a protocol error when it does not match), and an error is not that shape."""
    extra = "".join(f" ({name}: {value})" for name, value in (fields or {}).items())
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"{code}: {message}{extra}")],
                                is_error=True)


@functools.cache
def tool_definitions() -> list[types.Tool]:
    """The tools as MCP lists them; built once (the JSON schemas take ~40 ms to generate)."""
    return [
        types.Tool(name=t.name, description=t.description, input_schema=t.input_schema(),
                   output_schema=t.output_schema())
        for t in TOOLS.values()
    ]


def _request_identity(ctx: ServerRequestContext[Any, Any]) -> Identity | None:
    """The identity the HTTP endpoint put into the ASGI scope of this request (None on stdio)."""
    scope = getattr(ctx.request, "scope", None)
    if isinstance(scope, dict) and isinstance(scope.get(SCOPE_KEY), Identity):
        return scope[SCOPE_KEY]
    return None


async def call_tool(identity: Identity | None, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    """Run tool ``name`` for ``identity``: its result, or a tool error (never an exception)."""
    tool = TOOLS.get(name)
    if tool is None:
        return _error(NotFound.code, f"unknown tool {name!r}; tools: {', '.join(TOOLS)}")
    if identity is None:
        return _error(Unauthorized.code, "no user for this connection")
    try:
        # the use cases block (database, model): keep the event loop free
        text, structured = await anyio.to_thread.run_sync(tool.call, identity, arguments)
        # The output schema holds: checked with its pydantic model (microseconds), not again
        # with jsonschema (~20 ms per call, most of the cost of a stateless request).
        tool.output_model.model_validate(structured)
    except MemoryServiceError as exc:
        return _error(exc.code, exc.message, exc.fields)
    except Exception:
        log.exception("MCP tool %s failed", name)
        return _error(MemoryServiceError.code, "internal error")
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=structured)


def build_server(default_identity: Identity | None = None) -> Server[Any]:
    """The MCP server; tool calls act for the request's identity (HTTP) or ``default_identity``
    (stdio). Arguments are validated by the API's models (their messages), not by jsonschema."""

    async def list_tools(ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_definitions())

    async def on_call_tool(ctx: ServerRequestContext[Any, Any],
                           params: types.CallToolRequestParams) -> types.CallToolResult:
        return await call_tool(_request_identity(ctx) or default_identity, params.name, params.arguments or {})

    return Server("coda-memory", version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=on_call_tool)


_SERVER = build_server()


async def handle_http(identity: Identity, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one streamable-HTTP request (stateless: a fresh transport per request, as the
    SDK's stateless mode does; nothing is kept between requests, so any Lambda may answer)."""
    manager = StreamableHTTPSessionManager(app=_SERVER, json_response=True, stateless=True)
    scope = {**scope, SCOPE_KEY: identity}
    async with manager.run():
        await manager.handle_request(scope, receive, send)


async def collect_http(identity: Identity, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """:func:`handle_http` for a request whose body was already read: (status, headers, body)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await anyio.sleep_forever()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status, headers, chunks = 500, [], []

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = int(message["status"]), list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await handle_http(identity, scope, receive, send)
    return status, headers, b"".join(chunks)


async def run_stdio(identity: Identity, protocol_out: Any = None) -> None:
    """Serve MCP on stdin and ``protocol_out`` (a binary stream; stdout by default) for
    ``identity`` until stdin closes."""
    import io

    from mcp.server.stdio import stdio_server

    server = build_server(identity)
    stdout = anyio.wrap_file(io.TextIOWrapper(protocol_out, encoding="utf-8")) if protocol_out else None
    async with stdio_server(stdout=stdout) as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def http_response(identity: Identity, request: Request) -> Response:
    """``POST /mcp`` for ``identity``: the body must be one JSON-RPC message as JSON (415, 413,
    400 otherwise, in the API's error schema, as the transport's own 4xx answers are too)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    await json_body(request)  # size limit, JSON object
    # Clients must accept both JSON and SSE (MCP spec); a JSON-only server need not insist.
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"accept"]
    headers.append((b"accept", b"application/json, text/event-stream"))
    status, out_headers, body = await collect_http(identity, {**request.scope, "headers": headers},
                                                   await request.body())
    if status >= 400:
        try:
            message = str(json.loads(body)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace")[:500] or "invalid MCP request"
        return error_response(status, error_code_for(status), message)
    response = Response(body, status_code=status)
    for key, value in out_headers:
        if key.lower() not in (b"content-length",):
            response.headers.append(key.decode("latin-1"), value.decode("latin-1"))
    return response


def http_identity(caller: Caller, x_user_id: str | None) -> Identity:
    """Who an HTTP request acts for: a user-bound key's own user (``X-User-Id`` may only repeat
    it: 403 otherwise); with the service key, ``X-User-Id`` (required)."""
    bound = caller.principal.user_id
    if x_user_id:
        check_identifier(x_user_id, "X-User-Id")
        caller.principal.authorize(x_user_id)
    if bound is not None:
        return Identity(caller, bound)
    if not x_user_id:
        raise ValidationFailed("X-User-Id header is required with a service key: it names the user "
                               "the tools act for")
    return Identity(caller, x_user_id)
