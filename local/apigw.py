"""API Gateway REST (v1) proxy events, shaped like `sam local generate-event apigateway
aws-proxy`, and a minimal Lambda context: how tests and benchmarks call a function's real
``handler(event, context)`` in-process, the way API Gateway and Lambda do."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

REGION = "us-east-1"
ACCOUNT = "000000000000"


class LambdaContext:
    """The context object Lambda passes to a Python handler (the fields handlers and
    Powertools read), for one invocation of ``function_name``."""

    def __init__(
        self, function_name: str = "test-function", *, memory_mb: int = 1024, timeout_s: float = 30.0,
        request_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


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
    api_key: str | None = None,
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
