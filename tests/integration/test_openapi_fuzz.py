"""Fuzzing the API against its OpenAPI document with schemathesis (pinned in pyproject.toml).

Requests go through the local gateway's WSGI app in-process -- the same app ``make run``
serves on :3000: the API key check, SAM CLI's event building, the functions' real Lambda
handlers, real PostgreSQL and Redis. The document is the committed ``openapi.json``.

Bounded and seeded: hypothesis runs ``derandomize`` (the seed is derived from each test), at
most ``MAX_EXAMPLES`` per operation and phase. Most requests carry the service key; a fixed
share carries no key, a wrong key or a key bound to another user, so the 401/403 paths are
fuzzed too. Checks: not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance -- any failure fails the test.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local.openapi import OPENAPI_FILE
from tests.apigw import SERVICE_KEY

#: per operation and phase; FUZZ_MAX_EXAMPLES=1000 for a deeper run by hand
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "110"))
STATEFUL_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "40"))
MIN_REQUESTS = 1000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
USER_KEY = "fuzz-user-key-0123456789abcdef"
FUZZ_USER = "fuzz-key-owner"

#: what the run did, for the summary test at the end
STATS = {"requests": 0, "stateful": 0, "by_status": {}, "started": None, "finished": None}


@pytest.fixture(scope="module")
def gateway_app(api_env, postgres):
    import psycopg

    from local.gateway import ApiKeyCheck, make_gateway_app
    from local.lambda_invoke import InProcessRunner
    from local.template import load

    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, 'fuzz') ON CONFLICT DO NOTHING",
            (hashlib.sha256(USER_KEY.encode()).hexdigest(), FUZZ_USER),
        )
    template = load()
    runner = InProcessRunner(template, workers=2)
    app = make_gateway_app(template, runner, port=3000, api_key_check=ApiKeyCheck(SERVICE_KEY, postgres.app_url))
    yield app
    runner.shutdown()


# POST /users/{user_id}/import takes NDJSON (a string in the document): sent as text.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

# The committed document (tests/unit/test_openapi.py: equal to what the code generates and to
# what the gateway serves). Loaded at import: the lazy fixture loader of schemathesis does not
# work with pytest 9.2.
schema = schemathesis.openapi.from_path(str(OPENAPI_FILE))


def _key_for(case) -> dict[str, str]:
    """The service key for 85% of the requests; no key, a wrong key or another user's key for
    the rest (chosen from the case itself, so a seeded run repeats exactly)."""
    pick = zlib.crc32(repr((case.method, case.path, case.path_parameters, case.query, case.body)).encode()) % 20
    if pick == 0:
        return {}
    if pick == 1:
        return {"X-API-Key": "wrong-key-" + "x" * 20}
    if pick == 2:
        return {"X-API-Key": USER_KEY}
    return {"X-API-Key": SERVICE_KEY}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case, gateway_app):
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
    case.headers = {**headers, **_key_for(case)}
    response = case.call(app=gateway_app)  # the WSGI app, in-process
    _count(response)
    case.validate_response(response, checks=CHECKS)


def _count(response) -> None:
    STATS["started"] = STATS["started"] or time.perf_counter()
    STATS["requests"] += 1
    STATS["by_status"][response.status_code] = STATS["by_status"].get(response.status_code, 0) + 1
    STATS["finished"] = time.perf_counter()


def test_stateful_sequences_follow_the_documents_links(gateway_app):
    """Sequences along the document's links (POST /ingest -> GET/PATCH/history/DELETE of the
    memory it created), so the operations on existing memories are fuzzed with ids that exist."""
    from hypothesis.stateful import run_state_machine_as_test

    class Sequences(schema.as_state_machine()):
        def before_call(self, case):
            case.headers = {**(case.headers or {}), "X-API-Key": SERVICE_KEY}

        def get_call_kwargs(self, case):
            return {"app": gateway_app}

        def after_call(self, response, case):
            super().after_call(response, case)
            _count(response)
            STATS["stateful"] += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS)

    run_state_machine_as_test(Sequences, settings=settings(
        max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, derandomize=True, deadline=None,
        database=None, suppress_health_check=list(HealthCheck)))


def test_fuzzing_sent_enough_requests():
    """Runs after the fuzz tests (file order): the bound is a floor, not just a ceiling."""
    if STATS["requests"] == STATS["stateful"] or STATS["stateful"] == 0:
        pytest.skip("not every fuzz test ran (selected alone?)")
    took = STATS["finished"] - STATS["started"]
    print(f"\nschemathesis: {STATS['requests']} requests ({STATS['stateful']} in stateful sequences) "
          f"in {took:.1f} s; by status: "
          f"{dict(sorted(STATS['by_status'].items()))}")
    assert STATS["requests"] >= MIN_REQUESTS
    assert {200, 201, 401, 404, 422} <= set(STATS["by_status"])
