"""The retrieve function's own CPU per search, in-process, by stage, against a baseline.

    python -m bench.function_cpu [--searches 300] [--rounds 3] [--baseline REF] [--profile]

The retrieve function's real ``handler(event, context)`` is called with API Gateway REST (v1)
events for ``POST /search`` (top_k 10, hybrid) against one user with 10,000 synthetic memories
(``bench/synth.py``, the same load as ``bench/run.py``: database ``coda_bench`` of the bench's
own embedded PostgreSQL). No local gateway: what is counted is this process's CPU
(``time.process_time()``: every thread of the function -- the request thread, the lexical
worker, onnxruntime), not PostgreSQL's.

Stages, each over the same queries and measured directly, so they can be compared between
versions of the code:

* ``handler``: the whole invocation, event in, Lambda proxy answer out;
* ``framework``: the same invocation with the search use case replaced by a recorded answer
  of 10 results -- event to ASGI (mangum), routing, body parsing and validation, the API key
  check and rate limit, encoding the answer into the proxy response; ``framework_empty`` the
  same with an answer of no results, so ``encode_10`` = their difference is the cost of
  encoding ten results;
* ``auth``: the API key check and rate limit alone; ``parse``: JSON body + ``SearchRequest``;
* ``embed``: the query embedding (int8 ONNX MiniLM);
* ``sql``: the search transaction with the vector given: lexical candidates, the ranking
  statement and the access statistics, sequentially on one connection (client CPU of psycopg:
  building parameters, the round trips' syscalls, decoding the rows);
* ``shape``: turning the ranked rows into the answer's dicts.

``handler`` - ``framework`` - ``embed`` - ``sql`` - ``shape`` is what is left: the thread hand-off
of the overlapped lexical query and the transaction plumbing.

``--baseline REF`` (default: the commit this branch last took from ``main``) measures the code at
``REF`` too, in the same run: its ``src/``, ``functions/`` and ``local/`` are extracted with
``git archive`` under ``.local/`` and run in a child process against the same database, rounds
interleaved with the current code's so both see the same machine. ``--profile`` adds the
top functions of a cProfile of the current handler (by own time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import BENCH_KEY, BENCH_PG_DIR, REPO, apigw_event, apply_env, bench_env, machine, write_json

USER = "bench-user-00"
PER_USER = 10_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cpu_ms_per_call(fn: Callable[[Any], Any], args: list[Any]) -> float:
    t = time.process_time()
    for a in args:
        fn(a)
    return (time.process_time() - t) * 1000 / len(args)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def measure(searches: int, rounds: int, profile: bool) -> dict[str, Any]:
    """Every stage of this process's code (run inside the child for each version)."""
    from bench import synth
    from bench.run import SEED
    from local.apigw import InProcessApi, LambdaContext

    api = InProcessApi()
    handler = api.handler("RetrieveFunction")
    from coda_memory import runtime
    from coda_memory.db import search as search_sql
    from coda_memory.models import SearchRequest, load_json_object, parse_model
    from coda_memory.usecases import memories as memories_uc
    from coda_memory.usecases import search as search_uc

    queries = synth.queries(searches, SEED + 7)
    bodies = [{"query": q, "user_id": USER, "top_k": 10} for q in queries]
    events = [apigw_event("POST", "/search", b) for b in bodies]
    ctx = LambdaContext("RetrieveFunction")

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = handler(event, ctx)
        if answer["statusCode"] != 200:
            raise RuntimeError(f"/search answered {answer['statusCode']}: {answer.get('body')}")
        return answer

    for e in events[:30]:  # warm-up: model, pool, plans, caches
        invoke(e)
    recorded = json.loads(invoke(events[0])["body"])
    bodies_bytes = [json.dumps(b).encode() for b in bodies]
    settings_module = __import__("coda_memory.config", fromlist=["get_settings"])
    settings = settings_module.get_settings()
    ranking = search_sql.Ranking.from_settings(settings)
    n = max(settings.candidate_pool, 10)
    req0 = parse_model(SearchRequest, bodies[0])
    vectors = {q: runtime.embedder().embed_one(q) for q in queries}
    rows_seen: list[list[dict[str, Any]]] = []

    def sql(q: str) -> None:
        from coda_memory.usecases.access import record_access

        with runtime.database().user_tx(USER, pipeline=True) as cur:
            lexed = search_sql.lexical_candidates(cur, q, n, req0.filters)
            rows = search_sql.rank(cur, USER, q, vectors[q], lexed, req0.filters, ranking, 10, n, None,
                                   columns=search_uc._COLUMNS)
            record_access(cur, USER, [r["id"] for r in rows])
        if len(rows_seen) < 5:
            rows_seen.append(rows)

    fields = getattr(search_uc, "_RESULT_FIELDS", None)

    def shape(rows: list[dict[str, Any]]) -> None:
        [memories_uc.memory_json(r, fields) for r in rows]

    real_search = search_uc.search

    def stubbed(answer: dict[str, Any]) -> Callable[[Any], float]:
        def run(_: Any) -> float:
            def canned(caller: Any, request: Any) -> dict[str, Any]:
                return answer

            search_uc.search = canned
            try:
                return _cpu_ms_per_call(invoke, events)
            finally:
                search_uc.search = real_search
        return run

    auth = runtime.authenticator()
    limiter = runtime.rate_limiter()

    def authenticate(_: Any) -> None:
        principal = auth.authenticate(BENCH_KEY)
        limiter.check(principal.key_id)

    stages: dict[str, list[float]] = {k: [] for k in (
        "handler", "framework", "framework_empty", "auth", "parse", "embed", "sql", "shape")}
    wall: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        stages["handler"].append(_cpu_ms_per_call(invoke, events))
        wall.append((time.perf_counter() - t0) * 1000 / len(events))
        stages["framework"].append(stubbed(recorded)(None))
        stages["framework_empty"].append(stubbed({**recorded, "results": []})(None))
        stages["auth"].append(_cpu_ms_per_call(authenticate, events))
        stages["parse"].append(_cpu_ms_per_call(
            lambda b: parse_model(SearchRequest, load_json_object(b, "request body", ValueError)), bodies_bytes))
        stages["embed"].append(_cpu_ms_per_call(lambda q: runtime.embedder().embed_one(q), queries))
        stages["sql"].append(_cpu_ms_per_call(sql, queries))
        stages["shape"].append(_cpu_ms_per_call(lambda _: shape(rows_seen[0]), events))
    out: dict[str, Any] = {k: _median(v) for k, v in stages.items()}
    out["encode_10"] = round(out["framework"] - out["framework_empty"], 3)
    out["rest"] = round(out["handler"] - out["framework"] - out["embed"] - out["sql"] - out["shape"], 3)
    out["wall_ms_per_search"] = _median(wall)
    out["rounds"] = {k: [round(x, 3) for x in v] for k, v in stages.items()}
    out["code"] = str(Path(search_uc.__file__).parents[2])
    if profile:
        out["profile"] = _profile(invoke, events)
    return out


def _profile(invoke: Callable[[Any], Any], events: list[Any]) -> list[str]:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for e in events:
        invoke(e)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    return buf.getvalue().splitlines()


# --- parent: data, versions, report -----------------------------------------------------------


def _merge_base() -> str:
    return subprocess.check_output(["git", "merge-base", "HEAD", "main"], cwd=REPO, text=True).strip()


def extract(ref: str) -> Any:
    """The code at ``ref`` (``src``, ``functions``, ``local``, ``infra``) under .local/; the
    benchmark itself is always this one."""
    sha = subprocess.check_output(["git", "rev-parse", ref], cwd=REPO, text=True).strip()
    dest = REPO / ".local" / f"fncpu-{sha[:12]}"
    if not (dest / "src").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "src", "functions", "local", "infra"],
                                 cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest, sha


def run_child(root: Any, env: dict[str, str], searches: int, profile: bool) -> dict[str, Any]:
    child_env = {**os.environ, **env, "PYTHONPATH": f"{root}/src:{root}:{REPO}"}
    # both versions load the model the repository built
    child_env.setdefault("MEMORY_MODEL_DIR", str(REPO / "layers" / "model" / "build" / "model"))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.function_cpu", "--child", "--searches", str(searches), "--rounds", "1",
         *(["--profile"] if profile else [])],
        cwd=root, env=child_env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child for {root} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--searches", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per version")
    p.add_argument("--baseline", default=None, help="git ref of the baseline (default: merge-base with main)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--access-stats", choices=("transaction", "redis"), default="transaction",
                   help="redis: access statistics counted in a Redis this run starts (read-only search)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(measure(args.searches, args.rounds, args.profile)))
        return 0

    from bench.run import DATABASE, ensure_loaded, server_memory, settle
    from local.services import start_postgres

    pg = start_postgres(BENCH_PG_DIR, database=DATABASE)
    env = bench_env(pg.app_url)
    env.update({"MEMORY_DB_POOL_MAX": "1", "MEMORY_EMBED_THREADS": "1"})  # as on Lambda: one request at a time
    redis_server = None
    if args.access_stats == "redis":
        from local.services import start_redis

        redis_server = start_redis()
        env.update({"MEMORY_ACCESS_STATS": "redis", "REDIS_URL": redis_server.url})
    apply_env(env)
    load = ensure_loaded(pg, [USER], PER_USER, reload=False)
    settle(pg)
    server = server_memory(pg)
    versions: dict[str, Any] = {"current": (REPO, "working tree")}
    if not args.no_baseline:
        root, sha = extract(args.baseline or _merge_base())
        versions["baseline"] = (root, sha)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in versions}
    loadavg = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name in (list(versions) if r % 2 == 0 else list(reversed(versions))):
            log(f"round {r + 1}/{args.rounds}: {name} ...")
            runs[name].append(run_child(versions[name][0], env, args.searches,
                                        args.profile and name == "current" and r == 0))
            loadavg.append(os.getloadavg()[0])
    if redis_server is not None:
        redis_server.stop()
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        keys = [k for k in results[0] if isinstance(results[0][k], (int, float))]
        summary[name] = {"ref": versions[name][1], **{k: _median([x[k] for x in results]) for k in keys}}
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
           "loadavg_1m": [round(x, 2) for x in loadavg], "load": load, "server": server,
           "searches_per_round": args.searches, "rounds": args.rounds, "access_stats": args.access_stats,
           "summary": summary, "runs": runs}
    report(summary)
    if args.profile and runs["current"] and "profile" in runs["current"][0]:
        print("\n".join(runs["current"][0]["profile"]))
    print(f"\nwrote {write_json('function_cpu', res)}")
    return 0


STAGES = ("handler", "framework", "framework_empty", "encode_10", "auth", "parse", "embed", "sql", "shape",
          "rest", "wall_ms_per_search")


def report(summary: dict[str, Any]) -> None:
    names = list(summary)
    print(f"\n{'function CPU per search (ms)':32}" + "".join(f"{n:>14}" for n in names))
    for stage in STAGES:
        print(f"{stage:32}" + "".join(f"{summary[n].get(stage, float('nan')):>14.3f}" for n in names))


if __name__ == "__main__":
    sys.exit(main())
