"""The MCP server through the official SDK's own clients: streamable HTTP through the McpFunction
Lambda handler (API Gateway events, as on AWS), and stdio through ``python -m coda_memory.mcp``.
Real PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from local.apigw import LambdaContext
from local.services import REPO_ROOT
from tests.apigw import SERVICE_KEY, make_event

MODEL_DIR = REPO_ROOT / "layers" / "model" / "build" / "model"
TOOLS = {"remember", "recall", "get_context", "list_memories", "get_memory", "update_memory", "forget"}


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


class LambdaTransport(httpx.AsyncBaseTransport):
    """httpx requests as API Gateway events through a function's real ``handler``."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        event = make_event(request.method, request.url.path, resource=request.url.path,
                           raw_body=body.decode(), headers=headers, api_key=None)
        # the handler runs its own event loop (mangum), so not on this one
        result = await anyio.to_thread.run_sync(self.handler, event, LambdaContext())
        out = dict(result.get("headers") or {})
        for k, v in (result.get("multiValueHeaders") or {}).items():
            out[k] = v[0]
        return httpx.Response(result["statusCode"], headers=out, content=(result.get("body") or "").encode())


@pytest.fixture()
def mcp_handler(api_env):
    from functions.mcp.app import handler

    return handler


def _connect(handler: Any, headers: dict[str, str]) -> Any:
    @asynccontextmanager
    async def session() -> AsyncIterator[ClientSession]:
        async with httpx.AsyncClient(transport=LambdaTransport(handler), headers=headers, timeout=60) as http, \
                streamable_http_client("http://api.test/mcp", http_client=http) as (read, write, _), \
                ClientSession(read, write) as s:
            await s.initialize()
            yield s

    return session()


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def _exercise_every_tool(s: ClientSession) -> None:
    """remember → recall → get_context → get_memory → forget, then the bad inputs."""
    tools = (await s.list_tools()).tools
    assert {t.name for t in tools} >= TOOLS
    for t in tools:
        assert "user_id" not in t.inputSchema.get("properties", {}), t.name
        assert "user_id" not in t.inputSchema.get("required", []), t.name
        assert t.outputSchema, t.name

    r = await s.call_tool("remember", {"content": "My favourite tea is Darjeeling first flush",
                                       "content_type": "preference", "source_type": "chat", "tags": ["tea"]})
    assert not r.isError, _text(r)
    mid = r.structuredContent["memory_id"]
    assert r.structuredContent["status"] == "created" and mid in _text(r)
    again = await s.call_tool("remember", {"content": "My favourite tea is Darjeeling first flush",
                                           "content_type": "preference", "source_type": "chat"})
    assert again.structuredContent == {"status": "duplicate", "memory_id": mid}

    r = await s.call_tool("recall", {"query": "which tea do I like?", "top_k": 3,
                                     "filters": {"content_types": ["preference"]}})
    assert not r.isError, _text(r)
    assert [m["id"] for m in r.structuredContent["results"]] == [mid]
    assert "Darjeeling" in _text(r)

    r = await s.call_tool("get_context", {"query": "tea", "max_tokens": 100})
    assert not r.isError and r.structuredContent["memory_ids"] == [mid]
    assert "Darjeeling" in _text(r)

    r = await s.call_tool("get_memory", {"memory_id": mid})
    assert not r.isError and r.structuredContent["id"] == mid and "Darjeeling" in _text(r)

    r = await s.call_tool("remember", {"content": "I drink coffee after lunch", "content_type": "preference",
                                       "source_type": "chat"})
    second = r.structuredContent["memory_id"]
    r = await s.call_tool("list_memories", {"limit": 1})
    assert not r.isError, _text(r)
    assert [m["id"] for m in r.structuredContent["memories"]] == [second]
    cursor = r.structuredContent["next_cursor"]
    assert cursor and cursor in _text(r)
    r = await s.call_tool("list_memories", {"limit": 1, "cursor": cursor})
    assert [m["id"] for m in r.structuredContent["memories"]] == [mid] and r.structuredContent["next_cursor"] is None

    r = await s.call_tool("update_memory", {"memory_id": second, "content": "I drink coffee after dinner",
                                            "tags": ["coffee"]})
    assert not r.isError, _text(r)
    assert r.structuredContent["version"] == 2 and r.structuredContent["content"] == "I drink coffee after dinner"
    r = await s.call_tool("update_memory", {"memory_id": second, "content": "My favourite tea is Darjeeling first flush"})
    assert r.isError and r.structuredContent["error"]["code"] == "conflict"
    r = await s.call_tool("update_memory", {"memory_id": second})
    assert r.isError and "give at least one field to change" in _text(r)
    r = await s.call_tool("forget", {"memory_id": second})
    assert not r.isError

    r = await s.call_tool("forget", {"memory_id": mid})
    assert not r.isError and r.structuredContent == {"memory_id": mid, "status": "deleted"}
    r = await s.call_tool("get_memory", {"memory_id": mid})
    assert r.isError and r.structuredContent["error"]["code"] == "not_found"
    r = await s.call_tool("recall", {"query": "tea"})
    assert r.structuredContent["results"] == []

    # bad arguments: tool errors with the API's messages, the session goes on
    bad = [
        ("recall", {"query": "   "}, "query must not be empty"),
        ("recall", {"query": "x", "top_k": 0}, "top_k"),
        ("recall", {"query": "x", "bogus": 1}, "bogus"),
        ("get_context", {"query": "x", "max_tokens": "lots"}, "max_tokens"),
        ("remember", {"content": "x", "content_type": "nope", "source_type": "chat"}, "content_type must be one of"),
        ("remember", {"content_type": "fact", "source_type": "chat"}, "content: Field required"),
        ("get_memory", {"memory_id": "not-a-uuid"}, "memory id must be a UUID"),
        ("forget", {}, "memory_id: Field required"),
        ("list_memories", {"limit": 0}, "limit"),
        ("list_memories", {"cursor": "garbage!"}, "cursor is not valid"),
        ("update_memory", {"content": "x"}, "memory_id"),
        ("update_memory", {"memory_id": str(uuid.uuid4()), "importance": 2}, "importance"),
        ("nonexistent", {}, "unknown tool"),
    ]
    for name, args, expected in bad:
        r = await s.call_tool(name, args)
        assert r.isError, (name, args)
        assert expected in _text(r), (name, _text(r))
    # identity is never an argument
    for name in TOOLS:
        r = await s.call_tool(name, {"user_id": "mallory"})
        assert r.isError and "user_id is not a tool argument" in _text(r), name
    r = await s.call_tool("remember", {"content": "x", "content_type": "fact", "source_type": "chat",
                                       "user_id": "mallory"})
    assert r.isError and r.structuredContent["error"]["code"] == "validation_error"


@pytest.mark.anyio
async def test_http_every_tool_for_the_service_keys_x_user_id(mcp_handler, user_id):
    async with _connect(mcp_handler, {"X-API-Key": SERVICE_KEY, "X-User-Id": user_id}) as s:
        info = await s.send_ping()
        assert info is not None
        await _exercise_every_tool(s)


@pytest.mark.anyio
async def test_http_user_bound_key_acts_for_its_user_only(mcp_handler, admin_conn, user_id, api):
    key = f"mcp-user-key-{uuid.uuid4().hex}"
    admin_conn.execute("INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, 'mcp')",
                       (hashlib.sha256(key.encode()).hexdigest(), user_id))
    other = user_id + "-other"
    stored = await anyio.to_thread.run_sync(lambda: api.ingest(user_id=other, content="the other user's secret"))
    assert stored.status == 201
    async with _connect(mcp_handler, {"X-API-Key": key}) as s:
        r = await s.call_tool("remember", {"content": "bound key memory", "content_type": "fact",
                                           "source_type": "chat"})
        assert r.structuredContent["status"] == "created"
        r = await s.call_tool("recall", {"query": "secret"})
        assert all("secret" not in m["content"] for m in r.structuredContent["results"])
    async with _connect(mcp_handler, {"X-API-Key": key, "X-User-Id": user_id}) as s:
        r = await s.call_tool("recall", {"query": "bound key memory"})
        assert len(r.structuredContent["results"]) == 1
    # naming another user in X-User-Id is refused before any tool runs
    status, body = await _post(mcp_handler, {"X-API-Key": key, "X-User-Id": other}, _LIST)
    assert status == 403 and body["error"]["code"] == "forbidden"


_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


async def _post(handler: Any, headers: dict[str, str], body: Any, content_type: str = "application/json"):
    async with httpx.AsyncClient(transport=LambdaTransport(handler), base_url="http://api.test") as client:
        raw = body if isinstance(body, str) else json.dumps(body)
        r = await client.post("/mcp", content=raw, headers={"Content-Type": content_type, **headers})
        return r.status_code, (r.json() if r.content else None)


@pytest.mark.anyio
async def test_http_identity_and_transport_errors_use_the_api_error_schema(mcp_handler, user_id):
    service = {"X-API-Key": SERVICE_KEY}
    status, body = await _post(mcp_handler, service, _LIST)
    assert status == 422 and "X-User-Id header is required" in body["error"]["message"]
    status, body = await _post(mcp_handler, {"X-User-Id": user_id}, _LIST)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await _post(mcp_handler, {**service, "X-User-Id": "bad user"}, _LIST)
    assert status == 422
    with_user = {**service, "X-User-Id": user_id}
    status, body = await _post(mcp_handler, with_user, "{not json")
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = await _post(mcp_handler, with_user, _LIST, content_type="text/plain")
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"
    status, body = await _post(mcp_handler, with_user, {"jsonrpc": "1.0", "id": 1, "method": "x"})
    assert status == 400 and set(body["error"]) == {"code", "message"}
    # without an Accept header (curl): still answered, stateless, no initialize needed
    status, body = await _post(mcp_handler, with_user, _LIST)
    assert status == 200 and {t["name"] for t in body["result"]["tools"]} >= TOOLS
    status, body = await _post(mcp_handler, with_user, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert status == 202 and body is None


# --- stdio -------------------------------------------------------------------------------------


def _stdio_params(api_env: dict[str, str], *args: str) -> StdioServerParameters:
    env = {**os.environ, **api_env, "MEMORY_MODEL_DIR": os.environ.get("MEMORY_MODEL_DIR", str(MODEL_DIR)),
           "PYTHONPATH": str(REPO_ROOT / "src")}
    return StdioServerParameters(command=sys.executable, args=["-m", "coda_memory.mcp", *args],
                                 env=env, cwd=str(REPO_ROOT))


@pytest.mark.anyio
async def test_stdio_every_tool_in_process(api_env, user_id):
    async with stdio_client(_stdio_params(api_env, "--user", user_id)) as (read, write), \
            ClientSession(read, write) as s:
        init = await s.initialize()
        assert init.serverInfo.name == "coda-memory"
        await _exercise_every_tool(s)


def test_stdio_refuses_to_start_without_a_user(api_env):
    import subprocess

    env = {**os.environ, **api_env}
    env.pop("CODA_MEMORY_USER", None)
    r = subprocess.run([sys.executable, "-m", "coda_memory.mcp"], env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "--user" in r.stderr and r.stdout == ""
    r = subprocess.run([sys.executable, "-m", "coda_memory.mcp", "--user", "bad user"], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "--user must match" in r.stderr
