"""MCP server for coda-memory: the memory tools for any agent that speaks the Model Context
Protocol (official ``mcp`` SDK, 2.x).

* streamable HTTP (stateless, JSON): ``POST /mcp`` on the API (``functions/mcp/app.py``);
* stdio: ``python -m coda_memory.mcp --user alice`` (in-process against the configured
  database) or ``--api-url URL --api-key KEY`` (relays to a deployed ``/mcp``).

Tools (:mod:`coda_memory.mcp.tools`): remember, recall, get_context, get_memory, forget. They
never take a user id: the connection's key (and ``X-User-Id`` / ``--user`` with the service
key) decides whose memories they touch.

Nothing is imported here, so ``python -m coda_memory.mcp`` can route every log line to stderr
before any logger exists (stdout carries the protocol).
"""
