"""Forwarding a batch of events to the ingest function.

The request/response shapes are the ingest function's direct-invoke contract::

    {"kind": "ingest_events", "events": [{"event_id": str | None, "data": {seed event}}, ...]}
    -> {"results": [{"event_id", "status": "created"|"duplicate"|"rejected",
                     "memory_id"?, "error"?}]}

Failures are split in two kinds, because they are handled differently:

* :class:`IngestUnavailable` - the ingest path is down (endpoint unreachable, throttled, the
  database unavailable). Retried with backoff for as long as it takes; never dead-letters an event.
* :class:`IngestFailed` - the function ran and failed for some other reason. Retried with
  backoff; after ``max_attempts`` deliveries the batch is bisected to find the events at fault,
  which go to the dead-letter stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

# Error types (Lambda's ``errorType``) that mean "a dependency is down", not "this batch is bad".
UNAVAILABLE_ERROR_TYPES = frozenset(
    {
        "ServiceUnavailable",
        "OperationalError",
        "InterfaceError",
        "PoolTimeout",
        "PoolClosed",
        "ConnectionError",
        "ConnectionRefusedError",
        "ConnectionResetError",
        "TimeoutError",
        "TooManyRequestsException",
    }
)


class IngestError(Exception):
    outage = False


class IngestUnavailable(IngestError):
    outage = True


class IngestFailed(IngestError):
    pass


class Invoker(Protocol):
    def __call__(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


def build_payload(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"kind": "ingest_events", "events": events}, separators=(",", ":")).encode()


def parse_results(body: bytes | str, expected: int) -> list[dict[str, Any]]:
    try:
        decoded = json.loads(body)
    except ValueError as exc:
        raise IngestFailed(f"ingest returned invalid JSON: {exc}") from None
    results = decoded.get("results") if isinstance(decoded, dict) else None
    if not isinstance(results, list) or len(results) != expected:
        raise IngestFailed(
            f"ingest returned {type(results).__name__} with "
            f"{len(results) if isinstance(results, list) else 0} results for {expected} events"
        )
    if not all(isinstance(r, dict) for r in results):
        raise IngestFailed("ingest returned a result that is not an object")
    return results


def function_error(body: bytes | str) -> IngestError:
    """Map a Lambda FunctionError payload to the kind of failure it is."""
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = {}
    if not isinstance(decoded, dict):
        decoded = {}
    error_type = str(decoded.get("errorType") or "Unhandled")
    message = str(decoded.get("errorMessage") or "")[:300]
    cls = IngestUnavailable if error_type in UNAVAILABLE_ERROR_TYPES else IngestFailed
    return cls(f"ingest function error {error_type}: {message}")


class LambdaInvoker:
    """Synchronous ``Invoke`` through boto3 (AWS, or the local runner's endpoint on :3001)."""

    def __init__(
        self,
        function_name: str,
        *,
        endpoint_url: str | None,
        region: str = "us-east-1",
        timeout_s: float = 120.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.function_name = function_name
        kwargs: dict[str, Any] = {
            "region_name": region,
            "config": Config(
                connect_timeout=3,
                read_timeout=timeout_s,
                retries={"max_attempts": 1, "mode": "standard"},
                tcp_keepalive=True,
            ),
        }
        session = boto3.session.Session()
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
            if session.get_credentials() is None:
                # A local endpoint does not check signatures, but botocore insists on signing.
                kwargs["aws_access_key_id"] = "local"
                kwargs["aws_secret_access_key"] = "local"  # noqa: S105 - not a secret
        self._client = session.client("lambda", **kwargs)

    def __call__(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=build_payload(events),
            )
            body = response["Payload"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("RequestTooLargeException",) or status == 413:
                raise IngestFailed(f"Lambda rejected the request: {code}") from None
            # Throttling, service errors, a missing function or missing permissions: the
            # events are fine, our path to the function is not. Wait for it to come back.
            raise IngestUnavailable(f"Lambda Invoke failed: {code} (HTTP {status})") from None
        except BotoCoreError as exc:
            raise IngestUnavailable(f"Lambda endpoint unreachable: {type(exc).__name__}") from None
        if response.get("FunctionError"):
            raise function_error(body)
        return parse_results(body, len(events))


class InProcessInvoker:
    """Calls a ``handler(event, context)`` directly, with Lambda's error semantics (an exception
    becomes a FunctionError). For tests and benchmarks: ``context`` builds the Lambda context
    object of each call (``local.apigw.LambdaContext``; the subscriber image has no ``local``)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], context: Callable[[], Any]) -> None:
        self._handler = handler
        self._context = context

    def __call__(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        payload = json.loads(build_payload(events))
        try:
            response = self._handler(payload, self._context())
        except Exception as exc:
            raise function_error(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})) from exc
        body = response if isinstance(response, (str, bytes)) else json.dumps(response)
        return parse_results(body, len(events))
