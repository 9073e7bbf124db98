"""Domain errors. Each carries its HTTP status and a stable machine-readable code; the HTTP
layer maps them to ``{"error": {"code", "message"}}`` in one place (``coda_memory.api.app.create_app``);
the statuses the framework answers by itself take their code from :func:`error_code_for`.
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


class MethodNotAllowed(MemoryServiceError):
    status, code = 405, "method_not_allowed"


class UnsupportedMediaType(MemoryServiceError):
    status, code = 415, "unsupported_media_type"


class RateLimited(MemoryServiceError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float):
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"


class ServiceUnavailable(MemoryServiceError):
    status, code = 503, "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def error_code_for(status: int) -> str:
    """The error code of an HTTP status this API answers (``error`` for others), for answers the
    framework gives (unknown route, wrong method) rather than one of the errors above."""
    return _CODES.get(status, "error")


def _all(cls: type[MemoryServiceError]) -> list[type[MemoryServiceError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all(direct))]


#: status -> code, from the classes above (a status's first class: RateLimited's code for 429).
_CODES = {cls.status: cls.code for cls in reversed(_all(MemoryServiceError)) if cls.status != 500}
