"""The capacity model of docs/capacity.md, as arithmetic anyone can re-run: measured inputs
from ``bench/tenants.py`` (its latest JSON: bytes per memory, PostgreSQL CPU per search of a
10k-memory user sharing its partition with 29 others, per ingest) and, for the layout before
(shared graphs), the figures ``bench/capacity.py`` recorded; the stated assumptions below, and
list prices. Prints the tables the document shows.

    python -m bench.capacity_model [--json bench/results/tenants-latest.json]

Every constant that is not measured is an assumption or a price, named here once.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS

# --- measured before this layout (bench/capacity.py, 2 users x 10,000 memories, 2026-11-27) -------
MEASURED = {
    "bytes_per_memory": 5448.0,  # memories: heap + TOAST + every index, 32 partitions
    "index_bytes_per_memory": 2704.0,  # of which indexes (HNSW 2,073, GIN full text 166, ...)
    "heap_bytes_per_memory": 2744.0,  # heap incl. maps + TOAST
    "audit_bytes_per_ingest": 263.0,  # one memory_audit_log row per stored memory
    "search_pg_cpu_ms": 10.18,  # 10k memories per user, user alone in its partition
    "ingest_pg_cpu_ms": 2.63,
    "search_fn_cpu_ms": 7.35,  # the function's own CPU (embedding, FastAPI, psycopg)
    "ingest_fn_cpu_ms": 8.88,
    "exact_vector_pg_cpu_ms": 13.0,  # nearest 50 over one user's 10k rows without HNSW
}

# --- assumptions (docs/capacity.md "Assumptions") ------------------------------------------------
MEMORIES_PER_USER = 10_000
SEARCHES_PER_USER_DAY = 40  # /search + /context
INGESTS_PER_USER_DAY = 10
PEAK_FACTOR = 3.0  # p95 minute rate / daily mean rate
ACTIVE_USERS_PER_HOUR = 0.10  # share of users whose data must be hot in the cache at peak
VCPU_PER_ACU = 0.25  # estimate: an ACU is ~2 GiB with the CPU of an r-class instance (8 GiB per vCPU)
CACHE_GIB_PER_ACU = 1.36  # estimate: Aurora's default shared_buffers (DBInstanceClassMemory/12038 pages)
TARGET_CPU_UTILISATION = 0.6
LAMBDA_VCPU = 1024 / 1769  # Lambda gives a full vCPU at 1,769 MB; the functions have 1,024 MB
ROUND_TRIPS_MS = 2.0  # two round trips per request (pipeline mode) through the proxy, ~1 ms each
CROWDED_SEARCH_PG_CPU_MS = None  # computed: see search_pg_cpu_ms()
SCATTER_FACTOR = 1.5  # exact scan over a user's rows interleaved with other users' (3 rows/page)
# estimate: hot bytes per memory of an active user if the exact scan read a per-user clustered
# halfvec(384) covering index (768 B + entry overhead) instead of the 2.7 kB heap rows
COMPACT_HOT_BYTES = 1024

# --- list prices (us-east-1, on demand; check before use) ----------------------------------------
ACU_HOUR = 0.12  # Aurora Serverless v2, Aurora Standard
STORAGE_GB_MONTH = 0.10  # Aurora Standard storage
PROXY_ACU_HOUR = 0.015  # RDS Proxy on Serverless v2, billed for at least 8 ACUs
PROXY_MIN_ACU = 8
LAMBDA_GB_S = 0.0000166667
LAMBDA_REQUEST = 0.20 / 1e6
SNAPSTART_CACHE_GB_S = 0.0000015046
SNAPSTART_RESTORE_GB = 0.0001397998
APIGW_REQUEST = 3.50 / 1e6
HOURS_MONTH = 730
DAYS_MONTH = 30.4
MAX_ACU = 256


@dataclass
class Scale:
    users: int

    @property
    def memories(self) -> int:
        return self.users * MEMORIES_PER_USER

    @property
    def users_per_partition(self) -> float:
        return self.users / 32


def vector_step_ms(m: dict[str, float], scale: Scale, regime: str) -> float:
    """PostgreSQL CPU (ms) of the vector step: ``hnsw`` walks the partition's shared graph
    (~50 tuples per co-tenant user at ~9 us each: measured up to ~101 users per graph by
    ``bench/capacity.py --crowding-only``, capped by hnsw.max_scan_tuples), ``exact`` scans the
    user's rows (the code's re-run when the walk comes back short)."""
    if regime == "hnsw":
        return min(50 * max(1.0, scale.users_per_partition), 20_000) * 0.009
    return m["exact_vector_pg_cpu_ms"] * (SCATTER_FACTOR if scale.users_per_partition > 1 else 1.0)


def search_pg_cpu_ms(m: dict[str, float], scale: Scale, regime: str) -> float:
    """PostgreSQL CPU of one search. Measured with the user alone in its partition (HNSW walk
    ~1.3 ms of it). In a partition shared by u users, an HNSW walk that must return 50 of one
    user's rows visits ~50*u tuples (docs/performance.md: 580 tuples, 5.3 ms for u=10: ~9 us each) until
    hnsw.max_scan_tuples (20,000), after which the code re-runs exactly. Planning figure: the
    cheaper of the shared-graph walk and an exact scan (what a per-user switch would choose)."""
    return m["search_pg_cpu_ms"] - 1.3 + vector_step_ms(m, scale, regime)


def model(m: dict[str, float], scale: Scale, regime: str) -> dict[str, Any]:
    day_s = 86_400
    search_rps = scale.users * SEARCHES_PER_USER_DAY / day_s
    ingest_rps = scale.users * INGESTS_PER_USER_DAY / day_s
    s_cpu = search_pg_cpu_ms(m, scale, regime)
    peak_vcpu = PEAK_FACTOR * (search_rps * s_cpu + ingest_rps * m["ingest_pg_cpu_ms"]) / 1000
    cpu_acu = peak_vcpu / VCPU_PER_ACU / TARGET_CPU_UTILISATION
    # hot set: the indexes walked by every search (shared graphs: all of them) while users share
    # partitions' graphs; with exact per-user scans, the rows of the users active in the hour
    hot_index_gib = scale.memories * m["index_bytes_per_memory"] / 2**30
    hot_active_gib = (scale.users * ACTIVE_USERS_PER_HOUR * MEMORIES_PER_USER
                      * m["bytes_per_memory"] / 2**30)
    hot_gib = hot_index_gib if regime == "hnsw" else hot_active_gib
    cache_acu = hot_gib / CACHE_GIB_PER_ACU
    acu = max(0.5, math.ceil(max(cpu_acu, cache_acu) * 2) / 2)
    compact_gib = scale.users * ACTIVE_USERS_PER_HOUR * MEMORIES_PER_USER * COMPACT_HOT_BYTES / 2**30
    compact_acu = (max(0.5, math.ceil(max(cpu_acu, compact_gib / CACHE_GIB_PER_ACU) * 2) / 2)
                   if regime == "exact" else acu)
    storage_gb = (scale.memories * (m["bytes_per_memory"] + m["audit_bytes_per_ingest"])) / 1e9
    requests_month = scale.users * (SEARCHES_PER_USER_DAY + INGESTS_PER_USER_DAY) * DAYS_MONTH
    search_ms = m["search_fn_cpu_ms"] / LAMBDA_VCPU + s_cpu + ROUND_TRIPS_MS
    ingest_ms = m["ingest_fn_cpu_ms"] / LAMBDA_VCPU + m["ingest_pg_cpu_ms"] + ROUND_TRIPS_MS
    share_search = SEARCHES_PER_USER_DAY / (SEARCHES_PER_USER_DAY + INGESTS_PER_USER_DAY)
    lambda_ms = share_search * search_ms + (1 - share_search) * ingest_ms
    lambda_cost = requests_month * (lambda_ms / 1000 * 1.0 * LAMBDA_GB_S + LAMBDA_REQUEST)
    # SnapStart: one cached snapshot per function (2 x 1 GB) all month; restores ~ environments
    # started, estimated as peak concurrency renewed every hour
    peak_conc = PEAK_FACTOR * requests_month / (DAYS_MONTH * day_s) * lambda_ms / 1000
    snap_cost = 2 * 1.0 * HOURS_MONTH * 3600 * SNAPSTART_CACHE_GB_S \
        + max(2.0, peak_conc) * HOURS_MONTH * SNAPSTART_RESTORE_GB
    db_cost = acu * ACU_HOUR * HOURS_MONTH  # sized for the peak all month (upper bound)
    proxy_cost = max(PROXY_MIN_ACU, acu) * PROXY_ACU_HOUR * HOURS_MONTH
    compact_db = compact_acu * ACU_HOUR * HOURS_MONTH
    compact_proxy = max(PROXY_MIN_ACU, compact_acu) * PROXY_ACU_HOUR * HOURS_MONTH
    return {
        "users": scale.users, "memories": scale.memories, "users_per_partition": scale.users_per_partition,
        "regime": regime,
        "storage_gb": storage_gb, "search_pg_cpu_ms": s_cpu, "peak_rps": PEAK_FACTOR * (search_rps + ingest_rps),
        "peak_vcpu": peak_vcpu, "cpu_acu": cpu_acu, "hot_gib": hot_gib, "cache_acu": cache_acu, "acu": acu,
        "fits_one_writer": acu <= MAX_ACU, "compact_acu": compact_acu, "lambda_ms": lambda_ms,
        "requests_month": requests_month,
        "db_month": db_cost, "storage_month": storage_gb * STORAGE_GB_MONTH, "proxy_month": proxy_cost,
        "lambda_month": lambda_cost, "snapstart_month": snap_cost,
        "compact_db_month": compact_db, "compact_proxy_month": compact_proxy,
        "apigw_month": requests_month * APIGW_REQUEST,
    }


# --- measured on this layout (bench/tenants.py; docs/capacity.md section 1) -----------------------
# What an active user's searches read in proportion to its memories: its vectors (heap, primary
# key) and its own graph. Postings (the top 200 per query word) and memory rows (~100
# candidates) are read in proportion to the query, not to the user's memories.
HOT_PARTS = ("memory_vectors heap", "per-user graphs", "memory_vectors primary key")
LARGE = "large (10,000, 30 in its partition)"


def load_tenants(path: Path | None) -> dict[str, float] | None:
    """The per-user layout's inputs from a bench/tenants.py run (None when there is none)."""
    path = path or RESULTS / "tenants-latest.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    st = res["storage"]
    parts = st["parts_per_memory"]
    return {
        "bytes_per_memory": float(st["bytes_per_memory"]),
        "hot_bytes_per_memory": float(sum(parts.get(p, 0) for p in HOT_PARTS)),
        "search_pg_cpu_ms": float(res["users"][LARGE]["coda_tenants"]["pg_cpu_ms"]),
        "ingest_pg_cpu_ms": float(res["ingest"]["pg_cpu_ms"]),
        "audit_bytes_per_ingest": 0.0,  # inside the database size measured
    }


def model_per_user(t: dict[str, float], before: dict[str, float], scale: Scale) -> dict[str, Any]:
    """The per-user layout: a search costs the same whatever shares its partition (measured),
    and the cache must hold the structures of the users active in the peak hour."""
    day_s = 86_400
    search_rps = scale.users * SEARCHES_PER_USER_DAY / day_s
    ingest_rps = scale.users * INGESTS_PER_USER_DAY / day_s
    peak_vcpu = PEAK_FACTOR * (search_rps * t["search_pg_cpu_ms"] + ingest_rps * t["ingest_pg_cpu_ms"]) / 1000
    cpu_acu = peak_vcpu / VCPU_PER_ACU / TARGET_CPU_UTILISATION
    hot_gib = scale.users * ACTIVE_USERS_PER_HOUR * MEMORIES_PER_USER * t["hot_bytes_per_memory"] / 2**30
    cache_acu = hot_gib / CACHE_GIB_PER_ACU
    acu = max(0.5, math.ceil(max(cpu_acu, cache_acu) * 2) / 2)
    storage_gb = scale.memories * t["bytes_per_memory"] / 1e9
    requests_month = scale.users * (SEARCHES_PER_USER_DAY + INGESTS_PER_USER_DAY) * DAYS_MONTH
    search_ms = before["search_fn_cpu_ms"] / LAMBDA_VCPU + t["search_pg_cpu_ms"] + ROUND_TRIPS_MS
    ingest_ms = before["ingest_fn_cpu_ms"] / LAMBDA_VCPU + t["ingest_pg_cpu_ms"] + ROUND_TRIPS_MS
    share_search = SEARCHES_PER_USER_DAY / (SEARCHES_PER_USER_DAY + INGESTS_PER_USER_DAY)
    lambda_ms = share_search * search_ms + (1 - share_search) * ingest_ms
    lambda_cost = requests_month * (lambda_ms / 1000 * 1.0 * LAMBDA_GB_S + LAMBDA_REQUEST)
    peak_conc = PEAK_FACTOR * requests_month / (DAYS_MONTH * day_s) * lambda_ms / 1000
    snap_cost = 2 * 1.0 * HOURS_MONTH * 3600 * SNAPSTART_CACHE_GB_S \
        + max(2.0, peak_conc) * HOURS_MONTH * SNAPSTART_RESTORE_GB
    shards = max(1, math.ceil(acu / MAX_ACU))
    return {
        "users": scale.users, "memories": scale.memories, "storage_gb": storage_gb,
        "search_pg_cpu_ms": t["search_pg_cpu_ms"], "peak_rps": PEAK_FACTOR * (search_rps + ingest_rps),
        "peak_vcpu": peak_vcpu, "cpu_acu": cpu_acu, "hot_gib": hot_gib, "cache_acu": cache_acu, "acu": acu,
        "writers": shards, "lambda_ms": lambda_ms, "requests_month": requests_month,
        "db_month": acu * ACU_HOUR * HOURS_MONTH, "storage_month": storage_gb * STORAGE_GB_MONTH,
        "proxy_month": max(PROXY_MIN_ACU * shards, acu) * PROXY_ACU_HOUR * HOURS_MONTH,
        "lambda_month": lambda_cost, "snapstart_month": snap_cost, "apigw_month": requests_month * APIGW_REQUEST,
    }


def load_measured(path: Path | None) -> dict[str, float]:
    m = dict(MEASURED)
    path = path or RESULTS / "capacity-latest.json"
    if path.is_file():
        res = json.loads(path.read_text())
        st = res["storage"]
        parts = {p["part"]: p["bytes_per_memory"] for p in st["parts"]}
        total = next(v for k, v in parts.items() if k.startswith("total"))
        index = sum(v for k, v in parts.items() if k.startswith("index "))
        m.update(bytes_per_memory=total, index_bytes_per_memory=index, heap_bytes_per_memory=total - index,
                 audit_bytes_per_ingest=st["audit_bytes_per_row"],
                 search_pg_cpu_ms=res["search"]["postgres_cpu_ms"], ingest_pg_cpu_ms=res["ingest"]["postgres_cpu_ms"],
                 search_fn_cpu_ms=res["search"]["function_cpu_ms"], ingest_fn_cpu_ms=res["ingest"]["function_cpu_ms"],
                 exact_vector_pg_cpu_ms=res["exact_vector_step"]["postgres_cpu_ms"])
    return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    m = load_measured(None)
    t = load_tenants(args.json)
    if t is not None:
        print("per-user layout, measured (bench/tenants.py):", json.dumps({k: round(v, 2) for k, v in t.items()}))
        print(f"\n{'users':>10} {'storage GB':>11} {'search pg ms':>12} {'peak req/s':>10} {'peak vCPU':>9} "
              f"{'CPU ACU':>8} {'hot GiB':>9} {'cache ACU':>9} {'ACU':>7} {'writers':>7} {'Aurora $':>9} "
              f"{'storage $':>9} {'proxy $':>8} {'Lambda $':>8} {'SnapStart $':>11} {'total $':>9} {'(API GW $)':>10}")
        for u in (1_000, 100_000, 1_000_000):
            r = model_per_user(t, m, Scale(u))
            total = r["db_month"] + r["storage_month"] + r["proxy_month"] + r["lambda_month"] + r["snapstart_month"]
            print(f"{u:>10,} {r['storage_gb']:>11,.0f} {r['search_pg_cpu_ms']:>12.2f} {r['peak_rps']:>10,.1f} "
                  f"{r['peak_vcpu']:>9.2f} {r['cpu_acu']:>8.1f} {r['hot_gib']:>9,.0f} {r['cache_acu']:>9,.1f} "
                  f"{r['acu']:>7,.1f} {r['writers']:>7} {r['db_month']:>9,.0f} {r['storage_month']:>9,.0f} "
                  f"{r['proxy_month']:>8,.0f} {r['lambda_month']:>8,.0f} {r['snapstart_month']:>11,.0f} "
                  f"{total:>9,.0f} {r['apigw_month']:>10,.0f}")
        print("\nbefore (shared graphs per partition; bench/capacity.py figures of 2026-11-27):")
    print("inputs:", json.dumps({k: round(v, 2) for k, v in m.items()}))
    rows = [model(m, Scale(u), regime) for u in (1_000, 100_000, 1_000_000) for regime in ("hnsw", "exact")]
    print(f"\n{'users':>10} {'memories':>14} {'storage GB':>11} {'search pg ms':>12} {'peak req/s':>10} "
          f"{'vector':>6} {'peak vCPU':>9} {'CPU ACU':>8} {'hot GiB':>9} {'cache ACU':>9} {'ACU':>7} "
          f"{'compact ACU':>11}")
    for r in rows:
        print(f"{r['users']:>10,} {r['memories']:>14,} {r['storage_gb']:>11,.0f} {r['search_pg_cpu_ms']:>12.1f} "
              f"{r['peak_rps']:>10,.1f} {r['regime']:>6} {r['peak_vcpu']:>9.2f} {r['cpu_acu']:>8.1f} "
              f"{r['hot_gib']:>9,.0f} {r['cache_acu']:>9,.1f} {r['acu']:>7,.1f} {r['compact_acu']:>11,.1f}")
    print(f"\n{'users':>10} {'req/month':>14} {'Lambda ms':>9} {'Aurora ACU':>11} {'storage':>9} {'proxy':>8} "
          f"{'Lambda':>8} {'SnapStart':>9} {'(API GW)':>9} {'total':>10}  ($/month, ACU = max(CPU, cache) all month)")
    for r in rows:
        total = r["db_month"] + r["storage_month"] + r["proxy_month"] + r["lambda_month"] + r["snapstart_month"]
        print(f"{r['users']:>10,} {r['requests_month']:>14,.0f} {r['lambda_ms']:>9.1f} {r['db_month']:>11,.0f} "
              f"{r['storage_month']:>9,.0f} {r['proxy_month']:>8,.0f} {r['lambda_month']:>8,.0f} "
              f"{r['snapstart_month']:>9,.0f} {r['apigw_month']:>9,.0f} {total:>10,.0f}")
    print(f"\n{'users':>10} {'vector':>6} {'compact ACU':>11} {'Aurora':>9} {'proxy':>8} {'total':>9}"
          "  ($/month with the compact per-user layout; storage, Lambda, SnapStart as above)")
    for r in rows:
        if r["regime"] == "exact":
            total = (r["compact_db_month"] + r["compact_proxy_month"] + r["storage_month"] + r["lambda_month"]
                     + r["snapstart_month"])
            print(f"{r['users']:>10,} {r['regime']:>6} {r['compact_acu']:>11,.1f} {r['compact_db_month']:>9,.0f} "
                  f"{r['compact_proxy_month']:>8,.0f} {total:>9,.0f}")
    print(f"\none writer: at most {MAX_ACU} ACU (Aurora Serverless v2); compact ACU = with the per-user "
          "halfvec layout (estimate), same CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
