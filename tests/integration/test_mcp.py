"""The MCP server through the clients agents embed: the official Python SDK (2.x) and the
official TypeScript SDK (``@modelcontextprotocol/sdk``, driven by ``tests/mcp_ts/driver.mjs``),
each over streamable HTTP and over stdio. One scenario runs through every client: every tool's
success and error paths, and the rule that a tool error reaches the model as a tool result
(never as a thrown protocol error, which is what the TypeScript SDK made of errors that carried
structured content of another shape than the tool's output schema).

HTTP goes through the local gateway on a real port (SAM CLI's API Gateway emulation, the API key
check, the McpFunction's Lambda handler); stdio through ``python -m coda_memory.mcp``, in-process
(``--user``) and as a relay to the API (``--api-url``). Real PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from local.services import REPO_ROOT, free_port
from tests.apigw import SERVICE_KEY

MODEL_DIR = REPO_ROOT / "layers" / "model" / "build" / "model"
TS_DRIVER = REPO_ROOT / "tests" / "mcp_ts" / "driver.mjs"
TOOLS = {"remember", "recall", "get_context", "list_memories", "get_memory", "update_memory", "forget"}


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def rt(api_env):
    """The local gateway and runner on free ports, as ``make run`` serves them."""
    from local.run import LocalRuntime

    local = LocalRuntime(env={**api_env, "MEMORY_MODEL_DIR": str(MODEL_DIR)}, api_port=free_port(),
                         invoke_port=free_port(), scheduler=False, workers=4)
    local.start()
    yield local
    local.stop()


# --- one view of a tool call, whatever the client -----------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a host gets back from a tool call."""

    is_error: bool
    text: str
    structured: dict[str, Any] | None
    #: the client threw instead of handing back a tool result (the model never sees the message)
    thrown: str | None = None


@dataclass(frozen=True)
class ListedTool:
    name: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None


class McpClient:
    """The operations the scenario needs, implemented once per client SDK."""

    async def tools(self) -> list[ListedTool]:
        raise NotImplementedError

    async def call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        raise NotImplementedError


class PythonSdk(McpClient):
    """A ``ClientSession`` (the initialize handshake) or an ``mcp.Client`` (``server/discover``
    first, the 2026-07-28 protocol when the server offers it)."""

    def __init__(self, session: ClientSession | Client) -> None:
        self.session = session

    async def tools(self) -> list[ListedTool]:
        return [ListedTool(t.name, t.input_schema, t.output_schema) for t in (await self.session.list_tools()).tools]

    async def call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        try:
            r = await self.session.call_tool(name, arguments)
        except (MCPError, RuntimeError) as exc:  # RuntimeError: structured content the schema refuses
            return Outcome(True, "", None, thrown=str(exc))
        text = "\n".join(c.text for c in r.content if c.type == "text")
        return Outcome(r.is_error, text, r.structured_content)


class TypeScriptSdk(McpClient):
    """The TypeScript SDK's ``Client`` in a node process, one JSON line per request."""

    def __init__(self, process: Process) -> None:
        assert process.stdin and process.stdout
        self.process = process
        self.lines = BufferedByteReceiveStream(process.stdout)

    async def read(self) -> dict[str, Any]:
        return json.loads(await self.lines.receive_until(b"\n", 1 << 24))

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin
        await self.process.stdin.send(json.dumps(request).encode() + b"\n")
        return await self.read()

    async def tools(self) -> list[ListedTool]:
        answer = await self._ask({"op": "list"})
        assert answer["ok"], answer
        return [ListedTool(t["name"], t["inputSchema"], t.get("outputSchema")) for t in answer["result"]["tools"]]

    async def call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        answer = await self._ask({"op": "call", "name": name, "arguments": arguments})
        if not answer["ok"]:
            return Outcome(True, "", None, thrown=f"{answer['error']['code']}: {answer['error']['message']}")
        r = answer["result"]
        text = "\n".join(c["text"] for c in r["content"] if c["type"] == "text")
        return Outcome(bool(r.get("isError")), text, r.get("structuredContent"))


# --- the clients, connected --------------------------------------------------------------------


def _server_env(api_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **api_env, "MEMORY_MODEL_DIR": os.environ.get("MEMORY_MODEL_DIR", str(MODEL_DIR)),
            "PYTHONPATH": str(REPO_ROOT / "src")}


def _stdio_args(user: str) -> list[str]:
    return ["-m", "coda_memory.mcp", "--user", user]


@asynccontextmanager
async def python_http(url: str, headers: dict[str, str]) -> AsyncIterator[McpClient]:
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http, \
            streamable_http_client(url, http_client=http) as (read, write), ClientSession(read, write) as s:
        init = await s.initialize()
        assert init.server_info.name == "coda-memory"
        yield PythonSdk(s)


@asynccontextmanager
async def python_client_auto(url: str, headers: dict[str, str]) -> AsyncIterator[McpClient]:
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        assert client.protocol_version in MODERN_PROTOCOL_VERSIONS  # the server offers the new protocol
        yield PythonSdk(client)


@asynccontextmanager
async def python_stdio(params: StdioServerParameters) -> AsyncIterator[McpClient]:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
        init = await s.initialize()
        assert init.server_info.name == "coda-memory"
        yield PythonSdk(s)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the TypeScript SDK client cannot run")
    if not (TS_DRIVER.parent / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        pytest.fail("the TypeScript SDK is not installed: `make test` runs `npm ci` in tests/mcp_ts")
    return node


@asynccontextmanager
async def typescript(args: list[str], env: dict[str, str] | None = None) -> AsyncIterator[McpClient]:
    async with await anyio.open_process([_node(), str(TS_DRIVER), *args], env=env or dict(os.environ),
                                        cwd=str(TS_DRIVER.parent), stderr=None) as process:
        client = TypeScriptSdk(process)
        hello = await client.read()
        assert hello["ok"] and hello["result"]["server"]["name"] == "coda-memory", hello
        yield client
        assert process.stdin
        await process.stdin.aclose()  # the driver closes its client and ends
        with anyio.fail_after(30):
            assert await process.wait() == 0


Connect = Callable[[Any, dict[str, str], str], Any]

CLIENTS: dict[str, Connect] = {
    "python-sdk/http": lambda rt, env, user: python_http(
        rt.api_url + "/mcp", {"X-API-Key": SERVICE_KEY, "X-User-Id": user}),
    "python-sdk/http-discover": lambda rt, env, user: python_client_auto(
        rt.api_url + "/mcp", {"X-API-Key": SERVICE_KEY, "X-User-Id": user}),
    "python-sdk/stdio": lambda rt, env, user: python_stdio(StdioServerParameters(
        command=sys.executable, args=_stdio_args(user), env=_server_env(env), cwd=str(REPO_ROOT))),
    "python-sdk/stdio-relay": lambda rt, env, user: python_stdio(StdioServerParameters(
        command=sys.executable, args=["-m", "coda_memory.mcp", "--api-url", rt.api_url, "--api-key", SERVICE_KEY,
                                      "--user", user],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}, cwd=str(REPO_ROOT))),
    "typescript-sdk/http": lambda rt, env, user: typescript(
        ["http", rt.api_url + "/mcp", f"X-API-Key={SERVICE_KEY}", f"X-User-Id={user}"]),
    "typescript-sdk/stdio": lambda rt, env, user: typescript(
        ["stdio", sys.executable, *_stdio_args(user)], env=_server_env(env)),
}


# --- the scenario ------------------------------------------------------------------------------


def _ok(out: Outcome) -> dict[str, Any]:
    assert out.thrown is None and not out.is_error, out
    assert out.structured is not None, out
    return out.structured


def _tool_error(out: Outcome, code: str, message: str) -> None:
    """A tool error as the model must see it: a tool result with the code and message as text."""
    assert out.thrown is None, f"the client threw instead of returning the tool error: {out.thrown}"
    assert out.is_error, out
    assert out.structured is None, out  # no structured content: no output schema to break
    assert out.text.startswith(f"{code}: "), out.text
    assert message in out.text, out.text


async def exercise_every_tool(c: McpClient, user: str) -> None:
    """remember → recall → get_context → get_memory → list → update → forget, then every tool's
    error paths; the session goes on after each error."""
    tools = await c.tools()
    assert {t.name for t in tools} == TOOLS
    for t in tools:
        assert "user_id" not in t.input_schema.get("properties", {}), t.name
        assert t.output_schema and t.output_schema["type"] == "object", t.name
    remember_schema = next(t.input_schema for t in tools if t.name == "remember")
    assert remember_schema["required"] == ["content"]

    tea = "My favourite tea is Darjeeling first flush"
    out = _ok(await c.call("remember", {"content": tea, "content_type": "preference", "source_type": "chat",
                                        "tags": ["tea"]}))
    mid = out["memory_id"]
    assert out["status"] == "created"
    assert _ok(await c.call("remember", {"content": tea})) == {"status": "duplicate", "memory_id": mid,
                                                               "similar": []}

    # a changed fact: remember shows the close memory, supersedes retires it from recall
    lisbon = _ok(await c.call("remember", {"content": "I live in Lisbon"}))["memory_id"]
    out = await c.call("remember", {"content": "I live in Porto now"})
    porto = _ok(out)["memory_id"]
    assert f"you already remember: 'I live in Lisbon' (id {lisbon}); pass supersedes=[id]" in out.text
    _ok(await c.call("update_memory", {"memory_id": lisbon, "superseded_by": porto}))
    out = await c.call("get_memory", {"memory_id": lisbon})
    assert _ok(out)["superseded_by"] == porto and f"superseded by {porto}" in out.text
    assert f"{porto} supersedes {lisbon}" in out.text
    found = [m["id"] for m in _ok(await c.call("recall", {"query": "I live in", "top_k": 10}))["results"]]
    assert porto in found and lisbon not in found
    moved = _ok(await c.call("remember", {"content": "I live in Braga", "supersedes": [porto],
                                          "relations": [{"type": "relates_to", "target_id": lisbon}]}))
    assert _ok(await c.call("get_memory", {"memory_id": porto}))["superseded_by"] == moved["memory_id"]
    _tool_error(await c.call("remember", {"content": "I live in Faro", "supersedes": [porto]}), "conflict",
                moved["memory_id"])
    for gone in (lisbon, porto, moved["memory_id"]):
        _ok(await c.call("forget", {"memory_id": gone}))

    # only the content: content_type "fact", source_type "mcp"
    bare = _ok(await c.call("remember", {"content": "The office moves to Lyon in March"}))
    assert bare["status"] == "created"
    memory = _ok(await c.call("get_memory", {"memory_id": bare["memory_id"]}))
    assert (memory["content_type"], memory["source_type"], memory["user_id"]) == ("fact", "mcp", user)
    _ok(await c.call("forget", {"memory_id": bare["memory_id"]}))

    out = await c.call("recall", {"query": "which tea do I like?", "top_k": 3,
                                  "filters": {"content_types": ["preference"]}})
    assert [m["id"] for m in _ok(out)["results"]] == [mid] and "Darjeeling" in out.text

    out = await c.call("get_context", {"query": "tea", "max_tokens": 100})
    assert _ok(out)["memory_ids"] == [mid] and "Darjeeling" in out.text

    out = await c.call("get_memory", {"memory_id": mid})
    assert _ok(out)["id"] == mid and "Darjeeling" in out.text

    second = _ok(await c.call("remember", {"content": "I drink coffee after lunch", "content_type": "preference",
                                           "source_type": "chat"}))["memory_id"]
    out = await c.call("list_memories", {"limit": 1})
    page = _ok(out)
    assert [m["id"] for m in page["memories"]] == [second]
    cursor = page["next_cursor"]
    assert cursor and cursor in out.text
    page = _ok(await c.call("list_memories", {"limit": 1, "cursor": cursor}))
    assert [m["id"] for m in page["memories"]] == [mid] and page["next_cursor"] is None

    updated = _ok(await c.call("update_memory", {"memory_id": second, "content": "I drink coffee after dinner",
                                                 "tags": ["coffee"]}))
    assert updated["version"] == 2 and updated["content"] == "I drink coffee after dinner"
    _tool_error(await c.call("update_memory", {"memory_id": second, "content": tea}), "conflict", mid)
    _tool_error(await c.call("update_memory", {"memory_id": second}), "validation_error",
                "give at least one field to change")
    _ok(await c.call("forget", {"memory_id": second}))

    assert _ok(await c.call("forget", {"memory_id": mid})) == {"memory_id": mid, "status": "deleted"}
    _tool_error(await c.call("get_memory", {"memory_id": mid}), "not_found", "")
    _tool_error(await c.call("forget", {"memory_id": mid}), "not_found", "")
    assert _ok(await c.call("recall", {"query": "tea"}))["results"] == []

    # bad arguments: the API's messages, as tool results
    bad = [
        ("recall", {"query": "   "}, "query must not be empty"),
        ("recall", {"query": "x", "top_k": 0}, "top_k"),
        ("recall", {"query": "x", "bogus": 1}, "bogus"),
        ("recall", {"query": "x", "filters": {"created_after": "0001-01-01T00:00:05+04:00"}},
         "filters.created_after: must lie within the years 0001 to 9999"),
        ("get_context", {"query": "x", "max_tokens": "lots"}, "max_tokens"),
        ("get_context", {"query": ""}, "query must not be empty"),
        ("remember", {"content": "x", "content_type": "nope"}, "content_type must be one of"),
        ("remember", {"content_type": "fact"}, "content: Field required"),
        ("remember", {"content": "x", "expires_at": "9999-12-31T23:59:59-05:00"}, "expires_at: must lie within"),
        ("list_memories", {"created_before": "2020-01-01T00:00:00+24:00"}, "created_before"),
        ("get_memory", {"memory_id": "not-a-uuid"}, "memory id must be a UUID"),
        ("forget", {}, "memory_id: Field required"),
        ("list_memories", {"limit": 0}, "limit"),
        ("list_memories", {"cursor": "garbage!"}, "cursor is not valid"),
        ("update_memory", {"content": "x"}, "memory_id"),
        ("update_memory", {"memory_id": str(uuid.uuid4()), "importance": 2}, "importance"),
    ]
    for name, args, expected in bad:
        out = await c.call(name, args)
        assert out.thrown is None and out.is_error and out.structured is None, (name, args, out)
        assert expected in out.text, (name, out.text)
    _tool_error(await c.call("nonexistent", {}), "not_found", "unknown tool")
    # identity is never an argument
    for name in sorted(TOOLS):
        _tool_error(await c.call(name, {"user_id": "mallory"}), "validation_error", "user_id is not a tool argument")


@pytest.mark.anyio
@pytest.mark.parametrize("client", sorted(CLIENTS))
async def test_every_tool_through_every_client_and_transport(client, rt, api_env, user_id):
    async with CLIENTS[client](rt, api_env, user_id) as c:
        await exercise_every_tool(c, user_id)


# --- identity and the HTTP envelope -----------------------------------------------------------


@pytest.mark.anyio
async def test_http_user_bound_key_acts_for_its_user_only(rt, admin_conn, user_id, api):
    key = f"mcp-user-key-{uuid.uuid4().hex}"
    admin_conn.execute("INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, 'mcp')",
                       (hashlib.sha256(key.encode()).hexdigest(), user_id))
    other = user_id + "-other"
    stored = await anyio.to_thread.run_sync(lambda: api.ingest(user_id=other, content="the other user's secret"))
    assert stored.status == 201
    url = rt.api_url + "/mcp"
    async with python_http(url, {"X-API-Key": key}) as c:
        assert _ok(await c.call("remember", {"content": "bound key memory"}))["status"] == "created"
        found = _ok(await c.call("recall", {"query": "secret"}))["results"]
        assert [m["content"] for m in found] == ["bound key memory"]
    async with python_http(url, {"X-API-Key": key, "X-User-Id": user_id}) as c:
        assert len(_ok(await c.call("recall", {"query": "bound key memory"}))["results"]) == 1
    # naming another user in X-User-Id is refused before any tool runs
    status, body = _post(rt, {"X-API-Key": key, "X-User-Id": other}, _LIST)
    assert status == 403 and body["error"]["code"] == "forbidden"


_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


def _post(rt: Any, headers: dict[str, str], body: Any, content_type: str = "application/json"):
    raw = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(rt.api_url + "/mcp", content=raw, headers={"Content-Type": content_type, **headers}, timeout=60)
    return r.status_code, (r.json() if r.content else None)


def test_http_identity_and_transport_errors_use_the_api_error_schema(rt, user_id):
    service = {"X-API-Key": SERVICE_KEY}
    status, body = _post(rt, service, _LIST)
    assert status == 422 and "X-User-Id header is required" in body["error"]["message"]
    status, body = _post(rt, {"X-User-Id": user_id}, _LIST)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = _post(rt, {**service, "X-User-Id": "bad user"}, _LIST)
    assert status == 422
    with_user = {**service, "X-User-Id": user_id}
    status, body = _post(rt, with_user, "{not json")
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = _post(rt, with_user, _LIST, content_type="text/plain")
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"
    status, body = _post(rt, with_user, {"jsonrpc": "1.0", "id": 1, "method": "x"})
    assert status == 400 and set(body["error"]) == {"code", "message"}
    # without an Accept header (curl): still answered, stateless, no initialize needed
    status, body = _post(rt, with_user, _LIST)
    assert status == 200 and {t["name"] for t in body["result"]["tools"]} == TOOLS
    status, body = _post(rt, with_user, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert status == 202 and body is None
    # a tool error is a result without structured content, over the raw protocol too
    status, body = _post(rt, with_user, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                         "params": {"name": "recall", "arguments": {"query": ""}}})
    assert status == 200 and body["result"]["isError"] is True and "structuredContent" not in body["result"]
    assert body["result"]["content"] == [{"type": "text", "text": "validation_error: query: query must not be empty"}]


# --- stdio start-up -----------------------------------------------------------------------------


def test_stdio_refuses_to_start_without_a_user(api_env):
    env = {**os.environ, **api_env}
    env.pop("CODA_MEMORY_USER", None)
    r = subprocess.run([sys.executable, "-m", "coda_memory.mcp"], env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "--user" in r.stderr and r.stdout == ""
    r = subprocess.run([sys.executable, "-m", "coda_memory.mcp", "--user", "bad user"], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "--user must match" in r.stderr

