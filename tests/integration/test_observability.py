"""Per-request log records: correlation id from API Gateway, route template, status, latency,
and nothing secret (no key, no content, no query)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from coda_memory.observability import logger
from local.apigw import LambdaContext
from tests.apigw import SERVICE_KEY, make_event


@pytest.fixture()
def log_lines() -> Iterator[io.StringIO]:
    """The Powertools logger at INFO, writing into a buffer."""
    handler = logger.registered_handler
    level = logger.log_level
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    logger.setLevel("INFO")
    try:
        yield buffer
    finally:
        logger.setLevel(level)
        handler.setStream(previous)


def _records(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_request_record_carries_request_id_route_and_status_but_no_secret(api, user_id, log_lines):
    secret = "the launch code is 0000-very-private"
    assert api.ingest(user_id=user_id, content=secret).status == 201
    event = make_event("GET", f"/memory/{'0' * 8}-0000-0000-0000-{'0' * 12}", resource="/memory/{id}",
                       path_parameters={"id": f"{'0' * 8}-0000-0000-0000-{'0' * 12}"},
                       query={"user_id": user_id})
    answer = api.handlers["ingest"](event, LambdaContext())
    assert answer["statusCode"] == 404
    records = [r for r in _records(log_lines) if r.get("message") == "request"]
    assert [(r["method"], r["route"], r["status"]) for r in records] == [
        ("POST", "/ingest", 201), ("GET", "/memory/{id}", 404),
    ]
    assert records[-1]["correlation_id"] == event["requestContext"]["requestId"]
    assert all(isinstance(r["latency_ms"], float | int) and r["latency_ms"] >= 0 for r in records)
    text = log_lines.getvalue()
    assert secret not in text and SERVICE_KEY not in text


def test_unknown_route_is_recorded_with_its_path(api, log_lines):
    event = make_event("GET", "/nope", resource="/nope")
    assert api.handlers["retrieve"](event, LambdaContext())["statusCode"] == 404
    records = [r for r in _records(log_lines) if r.get("message") == "request"]
    assert [(r["route"], r["status"]) for r in records] == [("/nope", 404)]
