#!/usr/bin/env python3
"""Embedding speed: single-text latency, batched throughput and cold start.

    python bench/embed_speed.py [--model-dir DIR] [--threads N] [--no-fp32]

Measures the int8 model (default model dir) and, when ``.cache/model-fp32/model.onnx`` exists
(kept by ``layers/model/build.py``), the fp32 ONNX export as a baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from bench.common import machine as machine_info  # noqa: E402
from bench.common import percentile as pct  # noqa: E402
from coda_memory.embedder import Embedder, default_model_dir  # noqa: E402

FP32_DIR = REPO / ".cache" / "model-fp32"

SHORT = [
    "remind me to call my mother on sunday afternoon please",
    "the deploy failed again because of a flaky integration test",
    "I prefer window seats and vegetarian meals on long flights",
    "our standup moved to ten thirty starting next monday morning",
    "the invoice for march was paid twice by mistake last week",
    "she likes hiking in the alps and reading science fiction",
    "postgres vacuum is taking hours on the biggest memories table",
    "book a table for four at seven on friday near the office",
]
LONG = (
    "The team gathered early on Monday to review the incident from the weekend, when a "
    "misconfigured load balancer routed all traffic to a single availability zone. "
) * 20  # well past 256 tokens: measures the truncated 256-token case


def machine() -> str:
    info = machine_info()
    return (
        f"{info['nproc']} CPUs (nproc {len(os.sched_getaffinity(0))}), {info['cpu']}, "
        f"Python {info['python']}"
    )


def latency(emb: Embedder, texts: list[str], n: int) -> list[float]:
    for t in texts[:3]:
        emb.embed_one(t)  # warm up
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        emb.embed_one(texts[i % len(texts)])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def throughput(emb: Embedder, batch_size: int | None, rounds: int = 10) -> float:
    batch = [f"{SHORT[i % len(SHORT)]} {i}" for i in range(32)]
    emb.embed(batch, batch_size=batch_size)
    t0 = time.perf_counter()
    for _ in range(rounds):
        emb.embed(batch, batch_size=batch_size)
    return rounds * len(batch) / (time.perf_counter() - t0)


_COLD = """
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {src!r})
from coda_memory.embedder import Embedder
t1 = time.perf_counter()
e = Embedder({model_dir!r}, threads={threads})
t2 = time.perf_counter()
e.embed_one("hello world, this is the first embedding")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t3 - t0)
"""


def cold_start(model_dir: Path, threads: int, runs: int = 5) -> dict[str, float]:
    code = _COLD.format(src=str(REPO / "src"), model_dir=str(model_dir), threads=threads)
    rows = []
    walls = []
    for _ in range(runs):
        w0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        walls.append(time.perf_counter() - w0)
        rows.append([float(x) for x in out.stdout.split()])
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    return {
        "import": med[0],
        "session": med[1],
        "first": med[2],
        "total": med[3],
        "process_wall": statistics.median(walls),
    }


def report(label: str, model_dir: Path, threads: int) -> None:
    emb = Embedder(model_dir, threads=threads)
    size = (model_dir / "model.onnx").stat().st_size / 1e6
    print(f"\n== {label}: {model_dir} ({size:.1f} MB, {emb.quantization}, threads={threads})")
    short = latency(emb, SHORT, 300)
    print(
        f"short (~10 words) single-text ms: p50 {pct(short, 50):.2f}  p95 {pct(short, 95):.2f}"
        f"  p99 {pct(short, 99):.2f}"
    )
    long = latency(emb, [LONG], 60)
    print(
        f"256-token single-text ms:         p50 {pct(long, 50):.2f}  p95 {pct(long, 95):.2f}"
        f"  p99 {pct(long, 99):.2f}"
    )
    default_tp = throughput(emb, None)
    print(
        f"batch of 32 short texts, default (batch_size={emb.default_batch_size}): "
        f"{default_tp:.0f} texts/s"
    )
    if emb.default_batch_size != 32:
        print(
            f"batch of 32 short texts, batch_size=32 (not batch-invariant): "
            f"{throughput(emb, 32):.0f} texts/s"
        )
    cold = cold_start(model_dir, threads)
    print(
        f"cold start (median of 5 subprocesses): import {cold['import']:.3f}s + session "
        f"{cold['session']:.3f}s + first embedding {cold['first']:.3f}s = {cold['total']:.3f}s"
        f"  (whole process incl. interpreter {cold['process_wall']:.3f}s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-fp32", action="store_true", help="skip the fp32 baseline")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    report("int8", args.model_dir or default_model_dir(), args.threads)
    if not args.no_fp32 and (FP32_DIR / "model.onnx").is_file():
        report("fp32 baseline", FP32_DIR, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
