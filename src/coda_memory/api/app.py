"""The FastAPI application shared by the functions: body parsing, authentication, rate limits,
error mapping (the one place where errors become HTTP) and per-request logging."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import runtime
from ..auth import Caller, Principal
from ..errors import Forbidden, MemoryServiceError, RateLimited, Unauthorized, ValidationFailed, error_code_for
from ..http_messages import error_answer, error_response
from ..models import validation_message
from ..observability import logger, record_request

log = logging.getLogger(__name__)

def _client_ip(request: Request) -> str | None:
    event = request.scope.get("aws.event") or {}
    ip = ((event.get("requestContext") or {}).get("identity") or {}).get("sourceIp")
    if ip:
        return str(ip)
    return request.client.host if request.client else None


def _request_id(request: Request) -> str | None:
    event = request.scope.get("aws.event") or {}
    rid = (event.get("requestContext") or {}).get("requestId")
    return str(rid) if rid else request.headers.get("x-request-id")


async def caller(request: Request) -> Caller:
    """FastAPI dependency: authenticate ``X-API-Key`` and apply the per-key rate limit."""
    principal: Principal = runtime.authenticator().authenticate(request.headers.get("x-api-key"))
    request.state.principal = principal
    runtime.rate_limiter().check(principal.key_id)
    return Caller(principal, _client_ip(request), _request_id(request))


def _audit_denied(request: Request, exc: MemoryServiceError) -> None:
    principal = getattr(request.state, "principal", None)
    user_id = exc.details.get("user_id") if isinstance(exc.details, dict) else None
    try:
        from ..db import audit

        with runtime.database().system_tx() as cur:
            audit.write_denied(
                cur, user_id=user_id, actor=principal.key_id if principal else "anonymous",
                action=f"{request.method} {_route(request)}", resource=request.url.path,
                ip=_client_ip(request), result=f"denied:{exc.code}", request_id=_request_id(request),
            )
    except Exception as audit_exc:  # the denial itself must still be answered
        log.warning("could not audit a denied request: %s", type(audit_exc).__name__)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", request.url.path)


def create_app(title: str) -> FastAPI:
    """An app with the shared middleware and error mapping; functions add their routes."""
    # No docs routes in the functions: the one OpenAPI document of the API (all functions merged)
    # is openapi.json, served by the local gateway. Operation ids are the handlers' names.
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None,
                  generate_unique_id_function=lambda route: route.name)

    @app.exception_handler(MemoryServiceError)
    async def _service_error(request: Request, exc: MemoryServiceError) -> JSONResponse:
        if isinstance(exc, (Unauthorized, Forbidden, RateLimited)):
            _audit_denied(request, exc)
        return error_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_answer(ValidationFailed(validation_message(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = error_code_for(exc.status_code)
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"path": request.url.path})
        return error_answer(MemoryServiceError("internal error"))

    app.add_middleware(_RequestLog)
    return app


class _RequestLog:
    """Correlation id from the API Gateway request id, and one metric/log record per request.

    A plain ASGI middleware: ``@app.middleware("http")`` (BaseHTTPMiddleware) runs every
    request through an extra task group and memory streams (~0.5 ms per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope)
        request_id = _request_id(request)
        if request_id:
            logger.set_correlation_id(request_id)
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            # the router put the matched route into this same scope
            record_request(scope["method"], _route(request), status, (time.perf_counter() - started) * 1000)
