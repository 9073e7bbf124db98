"""The MCP server without a database: tool definitions and what a failing tool turns into
(the SDK's in-process client; the real tools run in tests/integration/test_mcp.py)."""

from __future__ import annotations

import dataclasses

import anyio
import pytest
from mcp import Client

from coda_memory.auth import Caller, Principal
from coda_memory.mcp import server as mcp_server
from coda_memory.mcp import tools as mcp_tools

IDENTITY = mcp_tools.Identity(Caller(Principal("test", "alice")), "alice")


def _run(check) -> None:
    async def main() -> None:
        async with Client(mcp_server.build_server(IDENTITY)) as client:
            await check(client)

    anyio.run(main)


def test_tools_are_listed_with_schemas_and_never_a_user_id():
    async def check(client) -> None:
        listed = (await client.list_tools()).tools
        assert [t.name for t in listed] == list(mcp_tools.TOOLS)
        assert set(mcp_tools.TOOLS) == {"remember", "recall", "get_context", "list_memories", "get_memory",
                                        "update_memory", "forget"}
        for tool in listed:
            assert tool.input_schema["type"] == "object" and tool.output_schema["type"] == "object"
            assert "user_id" not in str(tool.input_schema), tool.name
        update = next(t for t in listed if t.name == "update_memory")
        assert update.input_schema["required"] == ["memory_id"]
        assert {"memory_id", "content", "expires_at"} <= set(update.input_schema["properties"])
        remember = next(t for t in listed if t.name == "remember")
        assert remember.input_schema["required"] == ["content"]
        props = remember.input_schema["properties"]
        assert (props["content_type"]["default"], props["source_type"]["default"]) == ("fact", "mcp")

    _run(check)
    assert mcp_server.tool_definitions() is mcp_server.tool_definitions()  # built once


@pytest.mark.parametrize("broken", ["bad output", "crash"])
def test_a_failing_tool_is_a_tool_error_not_a_crash(monkeypatch, broken):
    def run(identity, arguments):
        if broken == "crash":
            raise RuntimeError("boom: secret detail")
        return "ok", {"status": "not-a-status"}  # breaks IngestResult's schema

    monkeypatch.setitem(mcp_tools.TOOLS, "remember", dataclasses.replace(mcp_tools.TOOLS["remember"], run=run))

    async def check(client) -> None:
        result = await client.call_tool("remember", {"content": "x"})
        assert result.is_error and result.structured_content is None
        assert [c.text for c in result.content] == ["internal_error: internal error"]  # nothing of the exception
        assert len((await client.list_tools()).tools) == len(mcp_tools.TOOLS)  # the session goes on

    _run(check)
