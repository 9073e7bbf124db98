"""CloudFormation custom resource ``Custom::DatabaseSchema`` (infra/template.yaml, created
database only): on Create and Update, :func:`coda_memory.provision.provision`; on Delete,
nothing (the database outlives the resource). The result goes to the pre-signed ResponseURL
CloudFormation gives; a failure is reported as FAILED with a reason that carries no secret,
so the deploy stops and rolls back instead of waiting for an hour. The work runs on a thread
the handler waits for until ``REPLY_MARGIN_S`` before the function's timeout: a provisioning
that hangs (an unanswered connection, a lock) is answered FAILED in time too, because a
function killed by its timeout never answers and CloudFormation would wait its hour.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from typing import Any

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "coda-memory-migrate")

from aws_lambda_powertools import Logger

from coda_memory import provision

logger = Logger()
PHYSICAL_ID = "coda-memory-schema"
#: Seconds before the function's timeout at which a provisioning still running is given up and
#: answered FAILED; the answer's own PUT is bounded by RESPONSE_TIMEOUT_S, well inside it.
REPLY_MARGIN_S = 20.0
RESPONSE_TIMEOUT_S = 10.0


def _respond(event: dict[str, Any], context: Any, status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps({
        "Status": status,
        "Reason": f"{reason} (log stream: {getattr(context, 'log_stream_name', '?')})"[:1000],
        "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_ID,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "Data": data,
    }).encode()
    url = str(event["ResponseURL"])
    if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
        raise ValueError("ResponseURL must be https")
    request = urllib.request.Request(url, data=body, method="PUT",  # noqa: S310 - scheme checked above
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_S) as response:  # noqa: S310
        response.read()


def _provision(event: dict[str, Any], store: Any) -> tuple[str, str, dict[str, Any]]:
    """(status, reason, data) of the request; never raises."""
    request_type = event.get("RequestType")
    try:
        data: dict[str, Any] = {}
        if request_type in ("Create", "Update"):
            if store is None:
                import boto3

                store = boto3.client("secretsmanager")
            target = provision.Target.from_properties(event.get("ResourceProperties") or {})
            data = provision.provision(target, store)
            logger.info("database provisioned", extra=data)
        elif request_type != "Delete":
            raise ValueError(f"unknown RequestType {request_type!r}")
        return "SUCCESS", f"{request_type} done", data
    except Exception as exc:
        logger.exception("database provisioning failed")
        # The type and the first line only: psycopg's messages name host and role, never a password.
        return "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", {}


def handler(event: dict[str, Any], context: Any, store: Any = None) -> dict[str, Any]:
    outcome: list[tuple[str, str, dict[str, Any]]] = []
    # A daemon thread: one that hangs must not keep the process (or a test run) from ending.
    worker = threading.Thread(target=lambda: outcome.append(_provision(event, store)), daemon=True)
    worker.start()
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    worker.join(max(0.0, remaining_ms() / 1000 - REPLY_MARGIN_S) if remaining_ms else None)
    if outcome:
        status, reason, data = outcome[0]
    else:
        logger.error("database provisioning still running near the function's timeout: answering FAILED")
        status, reason, data = "FAILED", f"{event.get('RequestType')} did not finish before the function's timeout", {}
    _respond(event, context, status, reason, data)
    return {"Status": status, "Data": data}
