"""Powertools Logger (JSON, correlation id = API Gateway request id), Metrics (EMF) and Tracer.

Log lines carry method, route, status, latency: never keys, content or queries.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "coda-memory")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "CodaMemory")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

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
