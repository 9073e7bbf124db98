"""Scheduled jobs: archival, quota reset, retention purge, consolidation and the fold of the
access statistics (EventBridge ``Schedule`` events in infra/template.yaml).

Plain Lambda handlers, no web framework: each parses nothing, runs one job from
:mod:`coda_memory.usecases.jobs` within the invocation's time budget, logs and returns a summary. An
exception fails the invocation, so Lambda retries it and finally sends it to the jobs DLQ.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "coda-memory-jobs")

from aws_lambda_powertools import Logger

from coda_memory.usecases import jobs

logger = Logger()


def _run(job: str, event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    time_left = (lambda: remaining() / 1000.0) if callable(remaining) else None
    source = (event or {}).get("source", "direct")
    try:
        result = jobs.run_job(job, request_id=request_id, time_left_s=time_left)
    except Exception:
        logger.exception("job failed", extra={"job": job, "trigger": source})
        raise
    summary = result.to_dict()
    logger.info("job finished", extra={"trigger": source, **summary})
    return summary


def archival_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run(jobs.ARCHIVAL, event, context)


def quota_reset_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run(jobs.QUOTA_RESET, event, context)


def consolidation_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run(jobs.CONSOLIDATION, event, context)


def access_fold_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run(jobs.ACCESS_FOLD, event, context)


def retention_purge_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _run(jobs.RETENTION_PURGE, event, context)
