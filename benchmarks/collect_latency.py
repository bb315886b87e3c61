"""Benchmark of the latency collector's repeatability: 50 NB201 archs measured twice.

Target: Spearman rank correlation >= 0.95 between the two passes (each pass measures all 50
archs once, in the same order, batch 1, fp32, CPU).

    nice -n 5 .venv/bin/python benchmarks/collect_latency.py --threads 1
    nice -n 5 .venv/bin/python benchmarks/collect_latency.py --threads 1 --timer thread_cpu
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl

from hwsurrogate.datasets.collectors.dnn_latency import collect_latency, random_arch_keys
from hwsurrogate.datasets.collectors.environment import cpu_info
from hwsurrogate.surrogates.training.metrics import ape, spearman


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-archs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--timer", choices=["wall", "thread_cpu"], default="wall")
    ap.add_argument("--min-time", type=float, default=0.0, help="minimum timed window per arch, s")
    ap.add_argument("--rounds", type=int, default=1, help="passes the repeats are split over")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    keys = random_arch_keys("nb201", args.n_archs, seed=args.seed)
    kw = {
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "progress": False,
        "timer": args.timer,
    }
    first = collect_latency("nb201", keys, **kw)
    t1 = time.perf_counter()
    second = collect_latency("nb201", keys, **kw)
    wall = time.perf_counter() - t0
    a, b = first["latency_ms"].to_numpy(), second["latency_ms"].to_numpy()
    rho = spearman(a, b)
    rel = ape(a, b)
    table = pl.DataFrame(
        {"arch_key": keys, "pass1_ms": a.round(3), "pass2_ms": b.round(3), "abs_diff_pct": rel.round(2)}
    )
    with pl.Config(tbl_rows=60, fmt_str_lengths=100, tbl_width_chars=160):
        print(table)
    print(f"\nmachine: {cpu_info().model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"threads={args.threads}, repeats={args.repeats}, warmup={args.warmup}, timer={args.timer}, min_time={args.min_time} s, rounds={args.rounds}")  # fmt: skip
    print("| check | ours | target |")
    print("|---|---|---|")
    print(f"| Spearman between two passes over {args.n_archs} NB201 archs | {rho:.4f} | >= 0.95 | "
          f"{'PASS' if rho >= 0.95 else 'MISS'}")  # fmt: skip
    print(f"| median abs difference | {np.median(rel):.2f} % | (info) |")
    print(f"| latency range | {a.min():.2f} .. {a.max():.2f} ms | (info) |")
    print(f"wall time: {wall:.1f} s (first pass {t1 - t0:.1f} s)")


if __name__ == "__main__":
    main()
