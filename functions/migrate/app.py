"""CloudFormation custom resource ``Custom::DatabaseSchema`` (infra/template.yaml, created
database only): on Create and Update, :func:`coda_memory.provision.provision`; on Delete,
nothing (the database outlives the resource). The result goes to the pre-signed ResponseURL
CloudFormation gives; a failure is reported as FAILED with a reason that carries no secret,
so the deploy stops and rolls back instead of waiting for an hour.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "coda-memory-migrate")

from aws_lambda_powertools import Logger

from coda_memory import provision

logger = Logger()
PHYSICAL_ID = "coda-memory-schema"


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
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()


def handler(event: dict[str, Any], context: Any, store: Any = None) -> dict[str, Any]:
    request_type = event.get("RequestType")
    data: dict[str, Any] = {}
    try:
        if request_type in ("Create", "Update"):
            if store is None:
                import boto3

                store = boto3.client("secretsmanager")
            target = provision.Target.from_properties(event.get("ResourceProperties") or {})
            data = provision.provision(target, store)
            logger.info("database provisioned", extra=data)
        elif request_type != "Delete":
            raise ValueError(f"unknown RequestType {request_type!r}")
        status, reason = "SUCCESS", f"{request_type} done"
    except Exception as exc:
        logger.exception("database provisioning failed")
        # The type and the first line only: psycopg's messages name host and role, never a password.
        status, reason = "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    _respond(event, context, status, reason, data)
    return {"Status": status, "Data": data}
