"""What the analytics routes cost (``python -m bench.stats [--sizes 1000 10000 50000]
[--samples 200]``).

One user per size, each with the mix a long-lived memory ends up with: synthetic everyday texts
(``bench.synth``: names, places, food, work), created over the last two years, 0-4 tags drawn
from a vocabulary of 40, access counts from a skewed distribution, and about 4% deleted, 10%
archived, 5% superseded and 2% expired memories. Rows are loaded directly as the schema owner
(the statistics and vector triggers fire as for any write; the vectors are random: the stats
never read them). Then, interleaved in one run so they see the same machine:

* ``GET /users/{user_id}/stats`` for each user, in-process through the real handler (p50/p95/p99)
  and the PostgreSQL CPU per call (the app role's backends, /proc);
* the baseline of the same run: ``GET /memories?limit=20`` for the same user (the console's first
  page: one index range, the cheapest read of that user);
* ``GET /stats`` (service key: every user) over all loaded memories;
* what counting on write costs the writes: ``POST /ingest`` and 20-item batches with the tally
  triggers on and off, alternating.

Twice: as loaded (every memory older than a year and rarely recalled is still live, and the
expired ones are not purged: the worst case, since ``archival_due`` and the expired memories
are read from the rows), and after the archival and retention-purge runs a deployment makes
every night.

The route's target: at most 50 ms p95 for a 50k-memory user.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import synth
from bench.common import BENCH_PG_DIR, Handlers, apply_env, backend_cpu, bench_env, machine, percentiles, write_json
from bench.run import server_memory

DATABASE = "coda_bench_stats"
TAGS = [f"{w}" for w in (
    "family", "work", "travel", "health", "food", "finance", "hobby", "friends", "project", "home", "car",
    "music", "books", "sport", "school", "garden", "pets", "shopping", "plans", "ideas", "meeting", "birthday",
    "doctor", "holiday", "weekend", "coffee", "recipe", "movie", "deadline", "phone", "email", "bank", "gym",
    "kids", "partner", "neighbour", "office", "flight", "hotel", "dentist")]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(admin: Any, user: str, count: int, seed: int) -> None:
    """``count`` memories of ``user`` in every state, in batches of 2,000 rows."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    items = list(synth.memories(user, count, seed))
    for a in range(0, count, 2000):
        chunk = items[a:a + 2000]
        rows = {"c": [], "t": [], "at": [], "tags": [], "acc": [], "imp": [], "del": [], "arch": [], "exp": []}
        for it in chunk:
            rows["c"].append(it["content"])
            rows["t"].append(it["content_type"])
            rows["at"].append((now - timedelta(minutes=rng.randint(0, 730 * 24 * 60))).isoformat())
            rows["tags"].append("{" + ",".join(rng.sample(TAGS, rng.randint(0, 4))) + "}")
            rows["acc"].append(min(int(rng.paretovariate(1.2)) - 1, 500))
            rows["imp"].append(round(rng.uniform(0.2, 0.95), 2))
            state = rng.random()
            rows["del"].append(state < 0.04)
            rows["arch"].append(0.04 <= state < 0.14)
            rows["exp"].append("2025-01-01T00:00:00+00:00" if 0.14 <= state < 0.16 else None)
        admin.execute(
            """INSERT INTO memories (user_id, content, content_type, embedding, source_type, content_hash, created_at,
                                     tags, access_count, importance, deleted, deleted_at, archived, expires_at)
               SELECT %s, c, t, (SELECT array_agg(random() - 0.5)::vector FROM generate_series(1, 384 + 0 * n)),
                      'bench', md5(c), at, tg::text[], acc, imp, d, CASE WHEN d THEN now() END, ar, ex
               FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::int[], %s::real[],
                           %s::bool[], %s::bool[], %s::timestamptz[]) WITH ORDINALITY
                    AS x(c, t, at, tg, acc, imp, d, ar, ex, n)""",
            (user, rows["c"], rows["t"], rows["at"], rows["tags"], rows["acc"], rows["imp"], rows["del"],
             rows["arch"], rows["exp"]))
    # about 5% superseded by the user's newest live memory (what a history of corrections leaves)
    admin.execute(
        """WITH newest AS (SELECT id FROM memories WHERE user_id = %s AND NOT deleted AND NOT archived
                           AND expires_at IS NULL ORDER BY created_at DESC LIMIT 1)
           UPDATE memories m SET superseded_by = (SELECT id FROM newest), superseded_at = now()
           WHERE m.user_id = %s AND NOT m.deleted AND NOT m.archived AND m.expires_at IS NULL
             AND m.id <> (SELECT id FROM newest) AND random() < 0.06""", (user, user))
    admin.execute(
        """INSERT INTO user_quotas (user_id, memory_count, max_memories, max_daily_ingestions)
           SELECT %s, count(*), 1000000, 1000000 FROM memories WHERE user_id = %s AND NOT deleted
           ON CONFLICT (user_id) DO UPDATE SET memory_count = excluded.memory_count""", (user, user))


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def run(sizes: list[int], samples: int) -> dict[str, Any]:
    import psycopg

    from local.services import start_postgres

    pg = start_postgres(BENCH_PG_DIR, database=DATABASE, fresh_database=True)
    apply_env(bench_env(pg.app_url))
    admin = psycopg.connect(pg.admin_url, autocommit=True)
    users = {size: f"stats-{size}" for size in sizes}
    t0 = time.perf_counter()
    for i, (size, user) in enumerate(users.items()):
        load(admin, user, size, seed=11 + i)
    admin.execute("VACUUM ANALYZE memories")
    memory = server_memory(pg)  # shared_buffers as a deployment sizes it, and the tables prewarmed
    total = admin.execute("SELECT count(*) FROM memories").fetchone()[0]
    log(f"loaded {total} memories in {time.perf_counter() - t0:.0f} s; measuring ...")
    api = Handlers()

    def get(path: str) -> None:
        route, _, query = path.partition("?")
        status, body = api.call("GET", route, query=dict(q.split("=") for q in query.split("&")) if query else None)
        assert status == 200, (path, status, body)

    routes = {f"user_{size}": f"/users/{user}/stats" for size, user in users.items()}
    routes |= {f"list_{size}": f"/memories?user_id={user}&limit=20" for size, user in users.items()}
    routes["all_users"] = "/stats"
    res: dict[str, Any] = {"sizes": sizes, "memories": total, "machine": machine(), "server": memory, "phases": {}}
    for phase in ("before the nightly jobs", "after the nightly jobs"):
        if phase.startswith("after"):
            from coda_memory import runtime
            from coda_memory.usecases import jobs

            for job in ("archival", "retention_purge"):
                t1 = time.perf_counter()
                done = jobs.run_job(job, runtime.database())
                log(f"{job}: {done.affected} rows in {time.perf_counter() - t1:.0f} s")
            admin.execute("VACUUM ANALYZE memories")
        for path in routes.values():  # plans, caches
            for _ in range(3):
                get(path)
        ms: dict[str, list[float]] = {k: [] for k in routes}
        cpu: dict[str, float] = dict.fromkeys(routes, 0.0)
        for _ in range(samples):
            for key, path in routes.items():
                before = backend_cpu(admin, DATABASE)
                ms[key].append(timed(lambda p=path: get(p)))
                cpu[key] += backend_cpu(admin, DATABASE) - before
        res["phases"][phase] = {key: {"path": routes[key], **percentiles(values),
                                      "pg_cpu_ms_per_call": round(cpu[key] * 1000 / len(values), 2)}
                                for key, values in ms.items()}
    res["write_cost"] = write_cost(api, admin, users[sizes[-1]], samples)
    admin.close()
    return res


TRIGGERS = ("memories_tallies_insert", "memories_tallies_update", "memories_tallies_delete")


def write_cost(api: Handlers, admin: Any, user: str, samples: int) -> dict[str, Any]:
    """What counting on write costs a write: single ingests and 20-item batches with the tally
    triggers on and off, alternating in blocks of 10 (ALTER TABLE between blocks), same user."""
    out: dict[str, dict[str, list[float]]] = {"on": {"ingest": [], "batch": []}, "off": {"ingest": [], "batch": []}}
    n = 0
    for block in range(max(2, samples // 10)):
        mode = "on" if block % 2 == 0 else "off"
        for trigger in TRIGGERS:
            admin.execute(f"ALTER TABLE memories {'ENABLE' if mode == 'on' else 'DISABLE'} TRIGGER {trigger}")
        for _ in range(10):
            n += 1
            body = {"user_id": user, "content": f"write cost probe {n} about the weekend plans",
                    "content_type": "fact", "source_type": "bench", "tags": ["probe", f"p{n % 7}"]}
            out[mode]["ingest"].append(timed(lambda b=body: api.call("POST", "/ingest", b)))
            items = [{**body, "content": f"write cost batch {n} item {j}"} for j in range(20)]
            out[mode]["batch"].append(timed(lambda i=items: api.call("POST", "/ingest/batch", {"items": i})))
    for trigger in TRIGGERS:
        admin.execute(f"ALTER TABLE memories ENABLE TRIGGER {trigger}")
    return {mode: {kind: percentiles(v) for kind, v in kinds.items()} for mode, kinds in out.items()}


def report(res: dict[str, Any]) -> None:
    print(f"\n{res['memories']} memories, shared_buffers {res['server']['shared_buffers']}, prewarmed "
          f"{res['server']['prewarmed']}; p50 / p95 / p99 ms, PostgreSQL CPU ms per call")
    for phase, routes in res["phases"].items():
        print(f" {phase}")
        for key, row in routes.items():
            print(f"  {key:<12} {row['path']:<44} {row['p50']:>7} {row['p95']:>7} {row['p99']:>7}"
                  f"   pg {row['pg_cpu_ms_per_call']}")
    print(" writes with the tally triggers on / off (p50 / p95 ms)")
    for kind in ("ingest", "batch"):
        on, off = res["write_cost"]["on"][kind], res["write_cost"]["off"][kind]
        print(f"  {kind:<8} on {on['p50']} / {on['p95']}   off {off['p50']} / {off['p95']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    res = run(args.sizes, args.samples)
    report(res)
    write_json("stats", res)
    print(json.dumps(res["phases"], indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
