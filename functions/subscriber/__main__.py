"""Entry point: ``python -m functions.subscriber`` (``--health`` checks a running one).

SIGTERM/SIGINT stop reading, let the batch in flight finish and be acknowledged, and exit 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _health(path: str | None, max_age_s: float) -> int:
    """Exit 0 when the loop touched the health file recently (Docker HEALTHCHECK)."""
    if not path:
        print("SUBSCRIBER_HEALTH_FILE is not set", file=sys.stderr)
        return 1
    try:
        age = time.time() - Path(path).stat().st_mtime
    except OSError:
        return 1
    return 0 if age <= max_age_s else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    health_file = os.environ.get("SUBSCRIBER_HEALTH_FILE") or None
    if "--health" in argv:
        return _health(health_file, float(os.environ.get("SUBSCRIBER_HEALTH_MAX_AGE_S", "300")))

    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "memory-subscriber")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CodaMemory")
    from aws_lambda_powertools import Logger, Metrics

    from ..stop_signals import StopSignals
    from .config import SubscriberSettings
    from .consumer import Subscriber
    from .invoker import LambdaInvoker

    logger = Logger()  # service from POWERTOOLS_SERVICE_NAME
    try:
        settings = SubscriberSettings()
    except Exception as exc:
        logger.error("invalid subscriber configuration", extra={"error": str(exc)})
        return 2
    invoker = LambdaInvoker(
        settings.ingest_function_name,
        endpoint_url=settings.lambda_endpoint_url,
        region=settings.region,
        timeout_s=settings.invoke_timeout_s,
    )
    metrics = Metrics()  # namespace and service from POWERTOOLS_METRICS_NAMESPACE / _SERVICE_NAME
    metrics.set_default_dimensions(consumer_group=settings.group)
    subscriber = Subscriber(
        settings,
        invoker,
        logger=logger,
        metrics=metrics,
        health_file=Path(health_file) if health_file else None,
    )

    def _stop(signum: signal.Signals) -> None:  # on the signal watcher thread, not in a handler
        logger.info("signal received, draining", extra={"signal": signum.name})
        subscriber.stop()

    StopSignals(on_stop=_stop).install()
    subscriber.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
