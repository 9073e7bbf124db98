"""Powertools Logger (JSON, correlation id = API Gateway request id), EMF metrics and Tracer.

Log lines carry method, route, status, latency: never keys, content or queries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "coda-memory")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "CodaMemory")

logger = Logger(service=SERVICE)

# X-Ray tracing costs ~0.5 s of cold start (aws_xray_sdk imports botocore), so the Tracer is
# only built on Lambda with tracing on (the template's EnableTracing parameter).
TRACING = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and os.environ.get(
    "POWERTOOLS_TRACE_DISABLED", ""
).lower() not in ("1", "true")


def traced(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Lambda handler with Powertools Tracer when tracing is on."""
    if not TRACING:
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE).capture_lambda_handler(handler, capture_response=False)

_METRICS_ON = os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() not in ("1", "true")


def record_request(method: str, route: str, status: int, elapsed_ms: float) -> None:
    """One log line and one EMF record per request. ``single_metric`` flushes its own
    instance, so concurrent requests (local runner threads) never share metric state."""
    logger.info(
        "request",
        extra={"method": method, "route": route, "status": status, "latency_ms": round(elapsed_ms, 2)},
    )
    if not _METRICS_ON:
        return
    with single_metric(
        name="Latency", unit=MetricUnit.Milliseconds, value=elapsed_ms, namespace=NAMESPACE,
        default_dimensions={"service": SERVICE, "route": f"{method} {route}"},
    ) as metric:
        metric.add_dimension(name="status_class", value=f"{status // 100}xx")
