"""The local runtime end to end: SAM CLI's local API Gateway and Lambda Invoke services over
the in-process runner, against the real handlers, PostgreSQL and Redis; the scheduler; and
`python -m local.run` as a process (banner, key, clean shutdown with nothing left running)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from local.run import LocalRuntime, template_environment
from local.scheduler import Scheduler, scheduled_event
from local.services import REPO_ROOT, free_port
from local.template import DEFAULT_TEMPLATE, load
from tests.apigw import SERVICE_KEY
from tests.dbrows import new_user

MODEL_DIR = REPO_ROOT / "layers" / "model" / "build" / "model"
needs_api = pytest.mark.skipif(
    not (REPO_ROOT / "functions/ingest/app.py").is_file() or not (MODEL_DIR / "model.onnx").is_file(),
    reason="needs the API functions and the built model (make layer)",
)


@pytest.fixture(scope="module")
def rt(postgres, redis_server):
    from coda_memory import runtime

    saved = dict(os.environ)
    env = {
        "DATABASE_URL": postgres.app_url,
        "REDIS_URL": redis_server.url,
        "MEMORY_API_KEY": SERVICE_KEY,
        "MEMORY_MODEL_DIR": str(MODEL_DIR),
        "MEMORY_RATE_LIMIT_BURST": "0",
    }
    local = LocalRuntime(env=env, api_port=free_port(), invoke_port=free_port(), scheduler=False,
                         workers=16)
    local.start()
    yield local
    local.stop()
    os.environ.clear()
    os.environ.update(saved)
    runtime.reset()


@pytest.fixture()
def http(rt):
    with httpx.Client(base_url=rt.api_url, timeout=30, headers={"X-API-Key": SERVICE_KEY}) as client:
        yield client


@pytest.fixture()
def lam(rt):
    return boto3.client(
        "lambda", endpoint_url=rt.invoke_url, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 0}, read_timeout=60),
    )


# --- gateway ---------------------------------------------------------------------------------


@needs_api
def test_every_route_of_the_template_reaches_its_function(http):
    user = new_user("rt")
    r = http.get("/health")
    assert r.status_code == 200 and r.json()["model"]["dimension"] == 384
    r = http.post("/ingest", json={"content": "I climb in Fontainebleau every spring",
                                   "content_type": "preference", "source_type": "chat", "user_id": user})
    assert r.status_code == 201, r.text
    mid = r.json()["memory_id"]
    r = http.post("/ingest/batch", json={"items": [
        {"content": "Bouldering needs crash pads", "content_type": "fact", "source_type": "chat", "user_id": user}]})
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "created"
    r = http.get(f"/memory/{mid}", params={"user_id": user})
    assert r.status_code == 200 and r.json()["id"] == mid
    r = http.post("/search", json={"query": "rock climbing", "user_id": user, "top_k": 5})
    assert r.status_code == 200 and mid in [m["id"] for m in r.json()["results"]]
    r = http.post("/context", json={"query": "climbing", "user_id": user, "max_tokens": 200})
    assert r.status_code == 200 and mid in r.json()["memory_ids"]
    r = http.delete(f"/memory/{mid}", params={"user_id": user})
    assert r.status_code == 200
    r = http.delete(f"/users/{user}/memories")
    assert r.status_code == 200


@needs_api
def test_gateway_serves_the_openapi_document_and_docs_page_behind_the_key(rt, http):
    from local.openapi import OPENAPI_FILE

    r = http.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == json.loads(OPENAPI_FILE.read_text())  # the committed file is what is served
    r = http.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<script" not in r.text and "/memory/{id}" in r.text and "ErrorBody" in r.text
    with httpx.Client(base_url=rt.api_url, timeout=30) as anon:
        for path in ("/openapi.json", "/docs"):
            assert anon.get(path).status_code == 401
            assert anon.get(path, headers={"X-API-Key": "wrong"}).status_code == 401


@needs_api
def test_a_body_or_query_that_is_not_utf8_is_a_400_not_a_502(http):
    # found by the fuzzer: SAM CLI's gateway answered 502 "Internal server error"
    r = http.post("/search", content=b'{"query": "caf\xe9", "user_id": "u"}',
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == {"code": "bad_request",
                                                          "message": "request body is not valid UTF-8"}
    assert http.get("/memories?user_id=%ff").status_code == 422  # percent-encoded: the handler decides
    assert http.get("/memories", params={"user_id": "caf\u00e9"}).status_code == 422


@needs_api
def test_unknown_routes_get_api_gateways_403(http):
    for method, path in [("GET", "/nope"), ("PUT", "/ingest"), ("GET", "/search"), ("POST", "/memory/x/y"),
                         ("GET", "/")]:
        r = http.request(method, path)
        assert r.status_code == 403, (method, path)
        assert r.json() == {"message": "Missing Authentication Token"}


@needs_api
def test_api_key_is_enforced_at_the_gateway_with_the_contracts_401(rt, admin_conn):
    with httpx.Client(base_url=rt.api_url, timeout=30) as anon:
        unauthorized = {"error": {"code": "unauthorized", "message": "missing or invalid X-API-Key"}}
        assert anon.get("/health").status_code == 401
        assert anon.get("/health").json() == unauthorized
        assert anon.get("/health", headers={"X-API-Key": "wrong"}).json() == unauthorized
        assert anon.post("/search", json={"query": "x", "user_id": "u"}).status_code == 401
        assert anon.get("/health", headers={"X-API-Key": SERVICE_KEY}).status_code == 200
        # a key registered for one user (stored hashed) passes the gateway like a usage-plan key;
        # the handler then decides what it may do
        user_key = f"user-key-{uuid.uuid4().hex}"
        user = new_user("rt")
        admin_conn.execute("INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, 'rt')",
                           (hashlib.sha256(user_key.encode()).hexdigest(), user))
        r = anon.post("/search", headers={"X-API-Key": user_key},
                      json={"query": "x", "user_id": user, "top_k": 1})
        assert r.status_code == 200, r.text
        r = anon.post("/search", headers={"X-API-Key": user_key},
                      json={"query": "x", "user_id": "someone-else", "top_k": 1})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_handler_gets_the_event_sam_local_start_api_would_build(rt):
    """Same top-level shape as `sam local generate-event apigateway aws-proxy`, a fresh request
    id per request, path parameters, and the API key identity API Gateway adds."""
    captured = []

    class Spy:
        template = rt.template

        def is_debugging(self):
            return False

        def invoke(self, name, event, stdout=None, **_):
            captured.append((name, json.loads(event)))
            stdout.write_str(json.dumps({"statusCode": 200, "headers": {}, "body": "{}"}))

    from local.gateway import make_gateway_app

    app = make_gateway_app(rt.template, Spy(), port=3000, api_key_check=lambda k: k == "k")
    client = app.test_client()
    assert client.get("/memory/abc?user_id=u1", headers={"X-API-Key": "k"}).status_code == 200
    assert client.get("/memory/abc?user_id=u1", headers={"X-API-Key": "k"}).status_code == 200
    (name1, e1), (_, e2) = captured
    assert name1 == "IngestFunction"
    sample = json.loads(subprocess.run(
        [str(Path(sys.executable).parent / "sam"), "local", "generate-event", "apigateway", "aws-proxy"],
        capture_output=True, text=True, check=True, env={**os.environ, "SAM_CLI_TELEMETRY": "0"}).stdout)
    assert set(sample) <= set(e1) | {"body"}
    assert e1["resource"] == "/memory/{id}" and e1["pathParameters"] == {"id": "abc"}
    assert e1["httpMethod"] == "GET" and e1["queryStringParameters"] == {"user_id": "u1"}
    assert e1["requestContext"]["identity"]["apiKey"] == "k"
    assert e1["requestContext"]["requestId"] != e2["requestContext"]["requestId"]


@needs_api
def test_fifty_concurrent_clients(rt):
    user = new_user("rt")
    with httpx.Client(base_url=rt.api_url, headers={"X-API-Key": SERVICE_KEY}, timeout=60) as c:
        assert c.post("/ingest", json={"content": "concurrency is fun", "content_type": "fact",
                                       "source_type": "t", "user_id": user}).status_code == 201

    def one(i: int) -> int:
        with httpx.Client(base_url=rt.api_url, headers={"X-API-Key": SERVICE_KEY}, timeout=60) as c:
            if i % 2:
                return c.post("/search", json={"query": f"fun {i}", "user_id": user, "top_k": 3}).status_code
            return c.get("/health").status_code

    t0 = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(one, range(200)))
    assert codes.count(200) == 200, sorted(set(codes))
    assert time.monotonic() - t0 < 60


# --- Lambda Invoke endpoint (boto3) ----------------------------------------------------------


@needs_api
def test_boto3_invoke_of_the_ingest_function_direct_payload(lam, admin_conn):
    user = new_user("rt")
    payload = {"kind": "ingest_events", "events": [
        {"event_id": f"ev-{uuid.uuid4()}", "data": {"event_type": "conversation", "content": "from redis",
                                                    "user_id": user}}]}
    for name in ("IngestFunction", "arn:aws:lambda:us-east-1:000000000000:function:IngestFunction"):
        resp = lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp
        body = json.loads(resp["Payload"].read())
        assert body["results"][0]["status"] in ("created", "duplicate")
    n = admin_conn.execute("SELECT count(*) FROM memories WHERE user_id=%s", (user,)).fetchone()[0]
    assert n == 1  # same event id twice: stored once


@needs_api
def test_boto3_invoke_reports_handler_errors_like_lambda(lam):
    resp = lam.invoke(FunctionName="IngestFunction", Payload=b'{"kind": "ingest_events", "events": []}')
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    err = json.loads(resp["Payload"].read())
    assert err["errorType"] and err["errorMessage"]


def test_boto3_invoke_unknown_function(lam):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName="NoSuchFunction", Payload=b"{}")
    # SAM CLI's start-lambda service answers 404 "ResourceNotFound" (Lambda: ...Exception)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert info.value.response["Error"]["Code"].startswith("ResourceNotFound")


def test_boto3_invoke_of_a_scheduled_job(lam):
    resp = lam.invoke(FunctionName="QuotaResetFunction", Payload=json.dumps(scheduled_event("t")).encode())
    assert "FunctionError" not in resp, resp["Payload"].read()
    out = json.loads(resp["Payload"].read())
    assert out["job"] == "quota_reset" and out["complete"] is True


# --- scheduler -------------------------------------------------------------------------------


def test_scheduler_fires_the_templates_schedules_when_due():
    template = load(DEFAULT_TEMPLATE)
    start = datetime(2026, 3, 4, 23, 59, 30, tzinfo=UTC)
    clock = iter([start, start + timedelta(minutes=1)])
    last = [start]

    def now():
        last[0] = next(clock, last[0])
        return last[0]

    fired = []
    sched = Scheduler(template.schedules, lambda s, e: fired.append((s.function, e)), now=now)
    sched.start()
    deadline = time.monotonic() + 5
    while len(fired) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sched.stop()
    # midnight UTC came first: the daily quota reset, and the every-minute access fold
    assert sorted(f for f, _ in fired) == ["AccessFoldFunction", "QuotaResetFunction"]
    event = fired[0][1]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"


def test_template_environment_excludes_secrets_and_connections():
    env = template_environment(load(DEFAULT_TEMPLATE))
    assert env["POWERTOOLS_SERVICE_NAME"] == "coda-memory"
    assert env["MEMORY_ARCHIVE_AFTER_DAYS"] == "365"
    assert not {k for k in env if k.endswith("_SECRET")}
    assert not {"DATABASE_URL", "REDIS_URL", "MEMORY_API_KEY", "MEMORY_MODEL_DIR", "HOME"} & set(env)


# --- `python -m local.run` as a process ------------------------------------------------------


@needs_api
def test_make_run_process_serves_then_stops_everything(tmp_path):
    from local.services import postmaster_pid
    from tests.runner_process import RunnerProcess

    run = RunnerProcess(pg_dir=REPO_ROOT / ".local" / "pg-runtest", log=tmp_path / "run.log")
    t0 = time.monotonic()
    run.start()
    postmaster = postmaster_pid(run.pg_dir)
    try:
        ready_s = time.monotonic() - t0
        assert "(generated" in run.text and run.subscriber_pid
        with httpx.Client(base_url=f"http://127.0.0.1:{run.api_port}", timeout=60) as c:
            assert c.get("/health").status_code == 401
            r = c.get("/health", headers={"X-API-Key": run.key})
            assert r.status_code == 200, r.text
        fired = subprocess.run([sys.executable, "-m", "local.run", "--invoke-port", str(run.invoke_port),
                                "fire", "quota_reset"], cwd=REPO_ROOT, env=run.env(), capture_output=True,
                               text=True, timeout=120)
        assert fired.returncode == 0, fired.stdout + fired.stderr
        assert "via running runtime" in fired.stdout
        assert re.search(r"GET /health -> 200 [\d.]+ ms \[RetrieveFunction\]", run.log.read_text())
        print(f"make run ready in {ready_s:.1f}s")
    finally:
        run.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        code = run.wait(60)
    assert code == 0, run.log.read_text()
    assert "stopped" in run.log.read_text()
    run.assert_nothing_left(postmaster)


# --- the Docker alternative: local/docker-compose.yml + local/env.json -----------------------


def test_docker_compose_and_env_json_match_the_runner_and_template():
    import inspect
    from urllib.parse import urlparse

    import yaml
    from samcli.yamlhelper import yaml_parse

    from coda_memory.embedder import LAMBDA_LAYER_MODEL_DIR
    from local.services import APP_ROLE, start_postgres

    compose = yaml.safe_load((REPO_ROOT / "local/docker-compose.yml").read_text())
    env = json.loads((REPO_ROOT / "local/env.json").read_text())["Parameters"]
    raw = yaml_parse(DEFAULT_TEMPLATE.read_text())
    declared = raw["Globals"]["Function"]["Environment"]["Variables"]

    # sam local only overrides variables the template declares
    assert set(env) <= set(declared)
    # the same settings the runner gives the functions
    assert {"DATABASE_URL", "REDIS_URL", "MEMORY_API_KEY", "MEMORY_MODEL_DIR"} <= set(env)
    # no AWS lookups locally: the secret ids are blanked
    assert env["DATABASE_URL_SECRET"] == "" and env["MEMORY_API_KEY_SECRET"] == ""
    assert env["MEMORY_MODEL_DIR"] == str(LAMBDA_LAYER_MODEL_DIR) == declared["MEMORY_MODEL_DIR"]

    db = urlparse(env["DATABASE_URL"])
    pg = compose["services"][db.hostname]
    runner_db = inspect.signature(start_postgres).parameters["database"].default
    assert db.username == APP_ROLE
    assert db.path.lstrip("/") == runner_db == pg["environment"]["POSTGRES_DB"]
    assert any(p.endswith(f":{db.port}") for p in pg["ports"])
    assert all(p.startswith("127.0.0.1:") for s in compose["services"].values() for p in s["ports"])
    assert f"PASSWORD '{db.password}'" in (REPO_ROOT / "local/docker-initdb.sql").read_text()
    assert "vector" in pg["image"]

    redis_url = urlparse(env["REDIS_URL"])
    redis_svc = compose["services"][redis_url.hostname]
    assert any(p.endswith(f":{redis_url.port}") for p in redis_svc["ports"])

    # the network the functions' containers join, and parameters for the template's required ones
    assert compose["networks"]["default"]["name"] == "coda-memory"
    given = dict(kv.split("=", 1) for kv in (REPO_ROOT / "local/sam-local-parameters.txt").read_text().split())
    required = {k for k, v in raw["Parameters"].items() if "Default" not in v}
    assert required <= set(given)


def test_a_stopped_runtime_gives_the_process_its_environment_back(postgres, redis_server):
    """The functions run in the test process: what the runtime exported for them (its env and
    the template's values, e.g. MEMORY_ACCESS_STATS=redis) must not outlive it, or later tests
    run under settings they never asked for (found as access counts that went to Redis)."""
    before = dict(os.environ)
    local = LocalRuntime(env={"DATABASE_URL": postgres.app_url, "REDIS_URL": redis_server.url,
                              "MEMORY_API_KEY": SERVICE_KEY, "CODA_TEST_MARKER": "on"},
                         api_port=free_port(), invoke_port=free_port(), scheduler=False, preload=False, workers=1)
    local.start()
    try:
        assert os.environ["CODA_TEST_MARKER"] == "on"
        assert os.environ["MEMORY_ACCESS_STATS"] == "redis"  # the template's value, for the functions
    finally:
        local.stop()
    assert dict(os.environ) == before
