"""What the MCP layer costs on top of the REST handlers (``python -m bench.mcp``).

Both through the functions' real ``handler(event, context)`` with API Gateway events, one
client, against the bench's own embedded PostgreSQL (``.local/pg-bench``, database
``coda_bench_mcp``): ``POST /search`` vs ``POST /mcp`` ``tools/call recall`` with the same query
(stateless streamable HTTP: a fresh MCP transport and server session per request, as on Lambda),
plus ``tools/list``. One user with ``--memories`` synthetic memories.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from bench import synth
from bench.common import (
    BENCH_KEY,
    BENCH_PG_DIR,
    Handlers,
    apply_env,
    bench_env,
    machine,
    percentiles,
    write_json,
)

USER = "bench-mcp-user"


def _time(n: int, call: Callable[[int], None]) -> dict[str, dict[str, float]]:
    """Wall time and this process' CPU time (every thread: the handler, the MCP server's worker
    thread; PostgreSQL's is its own) per call, ms. CPU time hardly moves with the machine's load,
    so it compares the two paths even on a busy machine."""
    wall, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        call(i)
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - t0) * 1000)
    return {"wall": percentiles(wall), "cpu": percentiles(cpu)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)

    from local.services import start_postgres

    pg = start_postgres(BENCH_PG_DIR, database="coda_bench_mcp", fresh_database=True)
    apply_env(bench_env(pg.app_url))
    api = Handlers()
    memories = list(synth.memories(USER, args.memories, seed=7))
    for start in range(0, len(memories), 100):
        api.ingest_batch(memories[start:start + 100])
    queries = synth.queries(50, seed=7)

    def rest(i: int) -> None:
        api.search(queries[i % len(queries)], USER, top_k=10)

    def mcp(body: dict[str, Any]) -> Any:
        result = api._api("POST", "/mcp", raw_body=json.dumps(body), api_key=BENCH_KEY,
                          headers={"X-User-Id": USER, "Accept": "application/json, text/event-stream"})
        if result["statusCode"] != 200:
            raise RuntimeError(f"/mcp answered {result['statusCode']}: {result.get('body')}")
        return json.loads(result["body"])

    def recall(i: int) -> None:
        out = mcp({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                   "params": {"name": "recall", "arguments": {"query": queries[i % len(queries)], "top_k": 10}}})
        assert not out["result"].get("isError"), out

    def list_tools(i: int) -> None:
        mcp({"jsonrpc": "2.0", "id": i, "method": "tools/list"})

    for warm in (rest, recall, list_tools):
        for i in range(10):
            warm(i)
    results = {
        "memories": args.memories,
        "rest_search": _time(args.requests, rest),
        "mcp_recall": _time(args.requests, recall),
        "mcp_tools_list": _time(args.requests, list_tools),
        "machine": machine(),
    }
    path = write_json("mcp", results)
    print(f"{'call':<18}{'wall p50':>9}{'p95':>7}{'p99':>7}{'cpu p50':>9}{'p95':>7}{'p99':>7}  (ms)")
    for name in ("rest_search", "mcp_recall", "mcp_tools_list"):
        w, c = results[name]["wall"], results[name]["cpu"]
        print(f"{name:<18}{w['p50']:>9}{w['p95']:>7}{w['p99']:>7}{c['p50']:>9}{c['p95']:>7}{c['p99']:>7}")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
