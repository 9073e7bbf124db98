"""Send API Gateway events through a function's real ``handler`` and read the answer."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from local.apigw import LambdaContext, response_headers
from local.apigw import make_event as _make_event

SERVICE_KEY = "test-service-key-0123456789"


def make_event(method: str, path: str, *, api_key: str | None = SERVICE_KEY, **kwargs: Any) -> dict[str, Any]:
    """An API Gateway event carrying the tests' service key unless told otherwise."""
    return _make_event(method, path, api_key=api_key, **kwargs)


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error_code(self) -> str | None:
        return (self.body or {}).get("error", {}).get("code") if isinstance(self.body, dict) else None


def invoke(handler: Any, method: str, path: str, **kwargs: Any) -> Response:
    """Call one function's ``handler`` directly with an API Gateway event."""
    return read_response(handler(make_event(method, path, **kwargs), LambdaContext()))


def read_response(result: dict[str, Any]) -> Response:
    """Lambda's proxy answer as a :class:`Response` (JSON body decoded, headers lower case)."""
    raw = result.get("body") or ""
    if result.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    headers = response_headers(result)
    if headers.get("content-type", "").startswith("application/x-ndjson"):
        return Response(result["statusCode"], raw, headers)  # text, one JSON document per line
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    return Response(result["statusCode"], body, headers)
