"""``python -m coda_memory.mcp``: the MCP server on stdio, for desktop agents.

    python -m coda_memory.mcp --user alice
        in-process against the configured database (DATABASE_URL, MEMORY_MODEL_DIR, ...);
        every tool acts for alice.
    python -m coda_memory.mcp --api-url https://.../v1 --api-key KEY [--user alice]
        relays to the API's POST /mcp with the key; --user (sent as X-User-Id) is needed with
        the service key, and with a user-bound key may only name the key's own user.

``CODA_MEMORY_USER``, ``CODA_MEMORY_API_URL`` and ``CODA_MEMORY_API_KEY`` stand in for the flags.
stdout carries the protocol: every log line goes to stderr.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m coda_memory.mcp",
                                     description="coda-memory MCP server on stdio")
    parser.add_argument("--user", default=os.environ.get("CODA_MEMORY_USER"),
                        help="the user every tool acts for (in-process: required)")
    parser.add_argument("--api-url", default=os.environ.get("CODA_MEMORY_API_URL"),
                        help="relay to this API's /mcp instead of using the database directly")
    parser.add_argument("--api-key", default=os.environ.get("CODA_MEMORY_API_KEY"),
                        help="API key for --api-url")
    return parser


async def _relay(url: str, api_key: str, user: str | None, protocol_out: Any) -> None:
    """Serve stdio by forwarding tools/list and tools/call to a remote streamable-HTTP server."""
    import anyio
    import httpx2
    import mcp.types as types
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    from .server import INSTRUCTIONS

    headers = {"X-API-Key": api_key}
    if user:
        headers["X-User-Id"] = user
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/mcp") else "/mcp")
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http, \
            streamable_http_client(endpoint, http_client=http) as (read, write), \
            ClientSession(read, write) as remote:
        await remote.initialize()

        async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
            return await remote.list_tools()

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            return await remote.call_tool(params.name, params.arguments or {})

        server: Server[Any] = Server("coda-memory", instructions=INSTRUCTIONS,
                                     on_list_tools=list_tools, on_call_tool=call_tool)
        stdout = anyio.wrap_file(io.TextIOWrapper(protocol_out, encoding="utf-8"))
        async with stdio_server(stdout=stdout) as (r, w):
            await server.run(r, w, server.create_initialization_options())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The protocol owns the real stdout; anything printed or logged goes to stderr.
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr

    import anyio

    if args.api_url:
        if not args.api_key:
            print("--api-url needs --api-key (or CODA_MEMORY_API_KEY)", file=sys.stderr)
            return 2
        anyio.run(_relay, args.api_url, args.api_key, args.user, protocol_out)
        return 0
    if not args.user:
        print("--user (or CODA_MEMORY_USER) is required: it names the user the tools act for",
              file=sys.stderr)
        return 2

    from ..auth import Caller, Principal
    from ..errors import MemoryServiceError
    from ..models import check_identifier
    from .server import run_stdio
    from .tools import Identity

    try:
        user = check_identifier(args.user, "--user")
    except MemoryServiceError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    # Bound to the one user: even a bug in a tool cannot reach another user's memories.
    identity = Identity(Caller(Principal(key_id="mcp:stdio", user_id=user)), user)
    anyio.run(run_stdio, identity, protocol_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
