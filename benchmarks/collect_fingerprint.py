"""Benchmark of the fingerprint collector: wall time and agreement of two runs.

Targets: one run takes under 90 s on this CPU; two runs agree (median relative difference of
the 20 HELP reference-arch latencies <= 5 %).

    python benchmarks/collect_fingerprint.py                 # default protocol; JSON to bench-results/
    python benchmarks/collect_fingerprint.py --timer thread_cpu --repeats 24
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from hwsurrogate.datasets.collectors.environment import cpu_info
from hwsurrogate.datasets.collectors.fingerprint import collect_fingerprint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--timer", choices=["wall", "thread_cpu"], default="wall")
    ap.add_argument(
        "--repeats", type=int, default=None, help="runs per reference arch (default: the collector's)"
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "bench-results" / "collect-fingerprint.json",
    )
    args = ap.parse_args()
    runs, seconds = [], []
    for _ in range(2):
        t0 = time.perf_counter()
        runs.append(
            collect_fingerprint(
                threads=args.threads, timer=args.timer, repeats=args.repeats, progress=False
            ).row(0, named=True)
        )
        seconds.append(time.perf_counter() - t0)
    f1, f2 = (json.loads(r["fingerprint"]) for r in runs)
    rows = [
        {"space": s, "arch_index": int(i), "run1_ms": f1[s][i], "run2_ms": f2[s][i],
         "abs_diff_pct": abs(f1[s][i] - f2[s][i]) / f1[s][i] * 100}
        for s in ("nb201", "fbnet") for i in f1[s]
    ]  # fmt: skip
    table = pl.DataFrame(rows).with_columns(pl.col(pl.Float64).round(3))
    with pl.Config(tbl_rows=30):
        print(table)
    d1, d2 = (json.loads(r["descriptors"])["micro_benchmarks"] for r in runs)
    print(f"micro-benchmarks run1: gemm {d1['gemm_gflops']}, triad {d1['triad_gbs']:.1f} GB/s, "
          f"dispatch {d1['dispatch_overhead_us']:.2f} us")  # fmt: skip
    print(f"micro-benchmarks run2: gemm {d2['gemm_gflops']}, triad {d2['triad_gbs']:.1f} GB/s, "
          f"dispatch {d2['dispatch_overhead_us']:.2f} us")  # fmt: skip
    med = float(np.median(table["abs_diff_pct"].to_numpy()))
    print(f"\nmachine: {cpu_info().model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"threads={args.threads or 'default'}, timer={args.timer}")  # fmt: skip
    print("| check | ours | target |")
    print("|---|---|---|")
    worst = max(seconds)
    print(f"| wall time of one fingerprint | {seconds[0]:.1f} s, {seconds[1]:.1f} s | < 90 s | "
          f"{'PASS' if worst < 90 else 'MISS'}")  # fmt: skip
    print(f"| two runs: median abs difference of 20 reference latencies | {med:.2f} % | <= 5 % | "
          f"{'PASS' if med <= 5 else 'MISS'}")  # fmt: skip
    print(f"wall time: {sum(seconds):.1f} s")
    protocol = json.loads(runs[0]["descriptors"])["fingerprint_protocol"]
    split = (f"{cpu_info().model}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
             f"{protocol['reference_threads']} thread(s), {args.timer}, {protocol['rounds']} rounds x "
             f"{protocol['repeats'] // protocol['rounds']} runs")  # fmt: skip
    result = {
        "benchmark": "collect-fingerprint",
        "command": "python benchmarks/collect_fingerprint.py " + " ".join(sys.argv[1:]),
        "wall_s": round(sum(seconds), 1),
        "protocol": protocol,
        "per_arch": table.to_dicts(),
        "rows": [
            {"metric": "wall time of one fingerprint (s)", "split": split, "ours": round(worst, 1),
             "anchor": None, "target": 90, "direction": "<=", "met": worst < 90},
            {"metric": "two runs: median abs difference of 20 reference latencies (%)", "split": split,
             "ours": round(med, 2), "anchor": None, "target": 5, "direction": "<=", "met": med <= 5},
        ],
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
