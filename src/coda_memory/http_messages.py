"""Reading request bodies and writing error responses: the HTTP plumbing shared by the REST API
(``api/``) and the MCP endpoint (``mcp/``), neither of which imports the other."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .config import get_settings
from .errors import BadRequest, MemoryServiceError, PayloadTooLarge
from .models import load_json_object


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None,
    fields: dict[str, Any] | None = None,
) -> JSONResponse:
    """The one error shape of the API: ``{"error": {"code", "message", ...}}``."""
    return JSONResponse({"error": {**(fields or {}), "code": code, "message": message}}, status_code=status,
                        headers=headers)


def error_answer(exc: MemoryServiceError) -> JSONResponse:
    """``exc`` as the API answers it: its status, code, message, headers and extra fields."""
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.fields)


async def raw_body(request: Request) -> bytes:
    """The request body, 413 past the size limit (``MEMORY_MAX_BODY_BYTES``)."""
    limit = get_settings().max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return body


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object: 413 past the size limit, 400 when it is not JSON
    or not an object (NaN/Infinity are refused: PostgreSQL's jsonb cannot store them)."""
    body = await raw_body(request)
    if not body.strip():
        raise BadRequest("request body is empty; a JSON object is expected")
    return load_json_object(body, "request body", BadRequest)
