"""Benchmark of the GEMM collector's honesty: repeatability and overhead against a bare loop.

1. Re-collecting the same 20 shapes twice: target median |difference| <= 3 %.
2. The largest float32 GEMM: the collector's reported GFLOP/s (median, rotated operands)
   against a bare best-of-N ``numpy.matmul`` loop in the same run: target >= 90 %.

Run (the machine may be shared; say so when reporting):

    nice -n 5 .venv/bin/python benchmarks/collect_gemm.py --threads 1
    nice -n 5 .venv/bin/python benchmarks/collect_gemm.py --threads 1 --timer thread_cpu
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl

from hwsurrogate.datasets.collectors.environment import cpu_info, thread_limit
from hwsurrogate.datasets.collectors.gemm import collect_gemm, gflops, sweep_shapes


def bare_best_gflops(n: int, *, repeats: int, clock=time.perf_counter_ns) -> float:
    """Best-of-N time of numpy.matmul on one fixed (cache-warm) operand pair, same clock as the collector."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        np.matmul(a, b, out=c)
        best = min(best, (clock() - t0) / 1e9)
    return 2 * n**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.5, help="collector window per shape, s")
    ap.add_argument("--largest", type=int, default=1536, help="m=n=k of the largest fp32 GEMM")
    ap.add_argument("--bare-repeats", type=int, default=20)
    ap.add_argument(
        "--timer",
        choices=["wall", "thread_cpu"],
        default="wall",
        help="thread_cpu: the calling thread's CPU clock (needs --threads 1; for shared machines)",
    )
    args = ap.parse_args()
    t_start = time.perf_counter()
    shapes = sweep_shapes("random", n_shapes=19, min_dim=32, max_dim=1024, seed=0)
    shapes = pl.concat([shapes, pl.DataFrame({"m": [args.largest], "n": [args.largest], "k": [args.largest],
                        "batch": [1], "dtype": ["fp32"], "layout": ["nn"]})])  # fmt: skip
    kw = {"threads": args.threads, "min_time_s": args.min_time, "progress": False, "timer": args.timer}
    first = collect_gemm(shapes, **kw)
    second = collect_gemm(shapes, **kw)
    diff = ((first["runtime_ms"] - second["runtime_ms"]).abs() / first["runtime_ms"]) * 100
    table = shapes.select("m", "n", "k").with_columns(
        first["runtime_ms"].round(4).alias("run1_ms"),
        second["runtime_ms"].round(4).alias("run2_ms"),
        diff.round(2).alias("abs_diff_pct"),
        gflops(first).round(1).alias("run1_gflops"),
        (first["runtime_spread_ms"] / first["runtime_ms"] * 100).round(1).alias("iqr_pct"),
    )
    with thread_limit(args.threads):
        clock = time.thread_time_ns if args.timer == "thread_cpu" else time.perf_counter_ns
        bare = bare_best_gflops(args.largest, repeats=args.bare_repeats, clock=clock)
    reported = float(gflops(second)[-1])
    wall = time.perf_counter() - t_start
    with pl.Config(tbl_rows=30, tbl_width_chars=140):
        print(table)
    med = float(diff.median())
    print(f"\nmachine: {cpu_info().model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"threads={args.threads}, timer={args.timer}, window {args.min_time} s/shape")  # fmt: skip
    print("| check | ours | target |")
    print("|---|---|---|")
    print(
        f"| re-collect 20 shapes: median abs difference | {med:.2f} % | <= 3 % | {'PASS' if med <= 3 else 'MISS'}"
    )
    ratio = reported / bare * 100
    print(f"| largest fp32 GEMM {args.largest}^3: collector GFLOP/s vs bare best-of-{args.bare_repeats} numpy loop "
          f"| {reported:.1f} / {bare:.1f} = {ratio:.1f} % | >= 90 % | {'PASS' if ratio >= 90 else 'MISS'}")  # fmt: skip
    print(f"wall time: {wall:.1f} s")


if __name__ == "__main__":
    main()
