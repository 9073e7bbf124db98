"""API Gateway REST (v1) proxy events, shaped like `sam local generate-event apigateway
aws-proxy`, and a helper that sends one through a function's real ``handler``."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

SERVICE_KEY = "test-service-key-0123456789"


class LambdaContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def make_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    path_parameters: dict[str, str] | None = None,
    body: Any = None,
    raw_body: str | bytes | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    api_key: str | None = SERVICE_KEY,
    source_ip: str = "203.0.113.7",
) -> dict[str, Any]:
    hdrs = {"Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if api_key is not None:
        hdrs["X-API-Key"] = api_key
    hdrs.update(headers or {})
    encoded = False
    if raw_body is not None:
        if isinstance(raw_body, bytes):
            text, encoded = base64.b64encode(raw_body).decode(), True
        else:
            text = raw_body
    elif body is not None:
        text = json.dumps(body)
    else:
        text = None
    request_id = str(uuid.uuid4())
    return {
        "body": text,
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "isBase64Encoded": encoded,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "123456",
            "stage": "prod",
            "requestId": request_id,
            "requestTime": "09/Apr/2015:12:34:56 +0000",
            "requestTimeEpoch": 1428582896000,
            "identity": {"sourceIp": source_ip, "userAgent": "pytest", "apiKey": api_key},
            "path": f"/prod{path}",
            "resourcePath": resource or path,
            "httpMethod": method,
            "apiId": "1234567890",
            "protocol": "HTTP/1.1",
        },
    }


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error_code(self) -> str | None:
        return (self.body or {}).get("error", {}).get("code") if isinstance(self.body, dict) else None


def invoke(handler: Any, method: str, path: str, **kwargs: Any) -> Response:
    result = handler(make_event(method, path, **kwargs), LambdaContext())
    raw = result.get("body") or ""
    if result.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for k, v in (result.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = v[0] if isinstance(v, list) else v
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    return Response(result["statusCode"], body, headers)
