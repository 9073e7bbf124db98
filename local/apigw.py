"""API Gateway REST (v1) proxy events, shaped like `sam local generate-event apigateway
aws-proxy`, the Lambda context object, and :class:`InProcessApi`: how tests and benchmarks call
the real ``handler(event, context)`` of the function the template routes a request to, in this
process, the way API Gateway and Lambda do."""

from __future__ import annotations

import base64
import json
import time
import uuid
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .template import LocalTemplate

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


def response_headers(result: dict[str, Any]) -> dict[str, str]:
    """A Lambda proxy answer's headers, names in lower case, one value each."""
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for k, v in (result.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = v[0] if isinstance(v, list) else v
    return headers


# What API Gateway answers for a method and path no route matches.
NO_ROUTE = {"statusCode": 403, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"message": "Missing Authentication Token"})}


@cache
def _default_template() -> LocalTemplate:
    from .template import load

    return load()


class InProcessApi:
    """The template's REST API in this process: each request becomes the API Gateway event of
    its route (resource path and path parameters from ``infra/template.yaml``) and goes to the
    handler of the function behind that route -- the routes are never listed anywhere else."""

    def __init__(self, template: LocalTemplate | None = None) -> None:
        self.template = template or _default_template()
        self._handlers: dict[str, Any] = {}

    def handler(self, logical_id: str) -> Any:
        if logical_id not in self._handlers:
            from .lambda_invoke import import_handler

            self._handlers[logical_id] = import_handler(self.template.functions[logical_id])
        return self._handlers[logical_id]

    def __call__(self, method: str, path: str, **event: Any) -> dict[str, Any]:
        """Lambda's answer (``statusCode``, ``headers``, ``body``) to ``method path``; ``event``
        takes :func:`make_event`'s keyword arguments (``body``, ``query``, ``api_key``, ...)."""
        try:
            route, params = self.template.route_for(method, path)
        except KeyError:
            return dict(NO_ROUTE)
        spec = self.template.functions[route.function]
        request = make_event(method, path, resource=route.path, path_parameters=params or None, **event)
        context = LambdaContext(spec.function_name, memory_mb=spec.memory_mb, timeout_s=spec.timeout_s)
        result: dict[str, Any] = self.handler(route.function)(request, context)
        return result
