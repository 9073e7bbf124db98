"""Domain errors. Each carries its HTTP status and a stable machine-readable code; the HTTP
layer maps them to ``{"error": {"code", "message"}}`` in one place (``coda_memory.api.app.create_app``).
Messages never contain secrets or memory content."""

from __future__ import annotations

from typing import Any


class MemoryServiceError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, *, details: Any = None, headers: dict[str, str] | None = None,
        fields: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.details = details  # for the server side (audit), never sent
        self.headers = headers or {}
        self.fields = fields or {}  # extra members of the error object sent to the client


class BadRequest(MemoryServiceError):
    status, code = 400, "bad_request"


class ValidationFailed(MemoryServiceError):
    status, code = 422, "validation_error"


class Unauthorized(MemoryServiceError):
    status, code = 401, "unauthorized"


class Forbidden(MemoryServiceError):
    status, code = 403, "forbidden"


class NotFound(MemoryServiceError):
    status, code = 404, "not_found"


class Conflict(MemoryServiceError):
    status, code = 409, "conflict"


class PayloadTooLarge(MemoryServiceError):
    status, code = 413, "payload_too_large"


class RateLimited(MemoryServiceError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str = "rate_limited"):
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.code = code
        self.retry_after = seconds


class QuotaExceeded(RateLimited):
    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message, retry_after=retry_after, code="quota_exceeded")


class ServiceUnavailable(MemoryServiceError):
    status, code = 503, "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
