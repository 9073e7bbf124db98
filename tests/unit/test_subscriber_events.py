"""Parsing stream entries and the subscriber's settings (pure: no Redis, no Lambda)."""

from __future__ import annotations

import json
import os

import pytest

from functions.subscriber.config import LOCAL_LAMBDA_ENDPOINT, SubscriberSettings
from functions.subscriber.consumer import parse_entry


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({b"data": b"not json"}, "not JSON"),
        ({b"data": b"[1, 2]"}, "not a JSON object"),
        ({b"data": b'"text"'}, "not a JSON object"),
        ({b"data": b'{"content": "x", "user_id": "u"}'}, "missing field(s): event_type"),
        ({b"data": b'{"event_type": "m", "user_id": "u"}'}, "missing field(s): content"),
        ({b"data": b'{"event_type": "m", "content": "", "user_id": "u"}'}, "content"),
        ({b"data": b'{"event_type": "m", "content": 5, "user_id": "u"}'}, "wrong type"),
        (
            {b"data": b'{"event_type": "m", "content": "x", "user_id": "u", "metadata": 3}'},
            "wrong type for field(s): metadata",
        ),
        ({b"data": b"\xff\xfe"}, "not valid UTF-8"),
        ({b"event_id": b"e1"}, "missing field 'data'"),
    ],
)
def test_parse_entry_rejects_malformed(fields, problem):
    entry = parse_entry("1-0", fields, 1)
    assert entry.problem is not None and problem in entry.problem
    assert entry.event is None


def test_parse_entry_event_id_explicit_or_derived():
    data = json.dumps({"event_type": "m", "content": "hi", "user_id": "u"}).encode()
    assert parse_entry("5-1", {b"data": data, b"event_id": b"evt-1"}, 1).event_id == "evt-1"
    derived = parse_entry("5-1", {b"data": data}, 3)
    assert derived.event_id == "stream:5-1" and derived.attempts == 3 and derived.problem is None
    assert derived.request() == {"event_id": "stream:5-1", "data": json.loads(data)}


def test_settings_defaults(monkeypatch):
    for name in (
        "LAMBDA_ENDPOINT_URL",
        "AWS_EXECUTION_ENV",
        "ECS_CONTAINER_METADATA_URI",
        "ECS_CONTAINER_METADATA_URI_V4",
        "SUBSCRIBER_NAME",
        "INGEST_FUNCTION_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = SubscriberSettings()
    assert settings.lambda_endpoint_url == LOCAL_LAMBDA_ENDPOINT
    assert settings.ingest_function_name == "IngestFunction"
    assert settings.stream == "memory.ingest.stream" and settings.channel == "memory.ingest"
    assert settings.group == "memory-subscriber" and settings.dlq_stream == "memory.ingest.dlq"
    assert settings.batch_size == 100 and settings.batch_window_ms == 100
    assert settings.name.endswith(f"-{os.getpid()}")
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")
    assert SubscriberSettings().lambda_endpoint_url is None
    monkeypatch.setenv("LAMBDA_ENDPOINT_URL", "http://example:1")
    monkeypatch.setenv("SUBSCRIBER_NAME", "worker-7")
    settings = SubscriberSettings()
    assert settings.lambda_endpoint_url == "http://example:1" and settings.name == "worker-7"
