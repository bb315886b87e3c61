"""Benchmark of ``hws collect fpga sweep --ray``: the yosys sweep on 1 node vs 2 nodes of 1 CPU each.

Protocol: the same grid of dense layers (default 8 designs) synthesized (1) locally with one job,
(2) as Ray tasks on a one-node cluster of 1 CPU, (3) on that cluster plus a second 1-CPU node,
all on this machine (``LocalCluster``: ``ray start`` per node, 127.0.0.1, token auth). Rows
are checked equal (ids and cell counts) across the three runs. Reported: the 2-node speed-up
over 1 node (target >= 1.7x), the per-design Ray overhead against the local run, and the
round trip of an empty Ray task. A yowasp warm-up run comes first (its compile cache).

    python benchmarks/ray_sweep.py                       # JSON to bench-results/ray-sweep.json
    python benchmarks/ray_sweep.py --d-in 4,6,8,10,12,14 --json /tmp/ray-sweep.json

Wall times depend on what else runs on the machine: the report records the load average.
"""

from __future__ import annotations

import os
import secrets

# Ray reads its authentication mode when imported: set the token before anything imports ray
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402

from hwsurrogate.benchmarks.report import BenchReport  # noqa: E402
from hwsurrogate.cluster import LocalCluster  # noqa: E402
from hwsurrogate.datasets.collectors.fpga import collect_fpga_sweep, dense_grid  # noqa: E402
from hwsurrogate.datasets.collectors.fpga_yosys import find_yosys  # noqa: E402
from hwsurrogate.datasets.collectors.remote import ray_fpga_submitter, run_on_ray  # noqa: E402


def _key(frame: pl.DataFrame) -> list[tuple[str, float, float, float, str]]:
    cells = [json.dumps(json.loads(e)["cells"], sort_keys=True) for e in frame["extra"]]
    return sorted(zip(frame["measurement_id"], frame["lut"], frame["ff"], frame["dsp"], cells, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-in", default="4,6,8,10", help="input widths (x d-out 2 x RF 1,2)")
    ap.add_argument(
        "--noop-tasks", type=int, default=100, help="empty tasks timed for the per-task round trip"
    )
    ap.add_argument("--json", type=Path,
                    default=Path(__file__).resolve().parents[1] / "bench-results" / "ray-sweep.json")  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("HWSURROGATE_NO_PROGRESS", "1")
    import shlex
    import sys

    report = BenchReport("ray-sweep", command=shlex.join(["python", "benchmarks/ray_sweep.py", *sys.argv[1:]]), protocol="dense grid d_in x d_out=2 x RF 1,2, ap_fixed<8,3>; "
                         "local 1 job vs Ray 1 node (1 CPU) vs Ray 2 nodes (1 CPU each), same machine")  # fmt: skip
    specs = dense_grid([int(x) for x in args.d_in.split(",")], [2], ["ap_fixed<8,3>"], [1, 2])
    toolchain = find_yosys()
    collect_fpga_sweep(specs[:1], toolchain=toolchain, progress=False)  # warm the yowasp cache
    walls: dict[str, float] = {}
    frames: dict[str, pl.DataFrame] = {}

    t0 = time.perf_counter()
    frames["local"] = collect_fpga_sweep(specs, toolchain=toolchain, n_jobs=1, progress=False).frame
    walls["local"] = time.perf_counter() - t0

    cluster = LocalCluster(cpus=1)
    try:
        cluster.start_head()
        import ray

        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        submit = ray_fpga_submitter(expected_version=toolchain.version)
        run_on_ray(str, [0])  # start the node's worker process
        t0 = time.perf_counter()
        run_on_ray(str, list(range(args.noop_tasks)))
        noop_ms = (time.perf_counter() - t0) / args.noop_tasks * 1e3
        collect_fpga_sweep(
            specs[:1], toolchain=toolchain, submit=submit, progress=False
        )  # worker's yosys probe
        t0 = time.perf_counter()
        frames["ray-1"] = collect_fpga_sweep(specs, toolchain=toolchain, submit=submit, progress=False).frame
        walls["ray-1"] = time.perf_counter() - t0

        cluster.add_node("node2")
        run_on_ray(str, [0, 1])
        collect_fpga_sweep(
            specs[:2], toolchain=toolchain, submit=submit, progress=False
        )  # warm node2's worker
        t0 = time.perf_counter()
        frames["ray-2"] = collect_fpga_sweep(specs, toolchain=toolchain, submit=submit, progress=False).frame
        walls["ray-2"] = time.perf_counter() - t0
    finally:
        cluster.stop()

    same = _key(frames["local"]) == _key(frames["ray-1"]) == _key(frames["ray-2"])
    n = len(specs)
    speedup = walls["ray-1"] / walls["ray-2"]
    overhead_s = (walls["ray-1"] - walls["local"]) / n
    load = os.getloadavg()
    report.add("speed-up 2 nodes vs 1 node", f"{n} designs", round(speedup, 3), target=1.7, direction=">=",
               n=n, note=f"1 node {walls['ray-1']:.1f} s, 2 nodes {walls['ray-2']:.1f} s; load avg {load[0]:.1f}")  # fmt: skip
    drift = " (< 0: the machine's load changed between the runs; the empty-task round trip is Ray's own cost)"
    report.add("Ray overhead per design (s)", "1 node vs local 1 job", round(overhead_s, 3), n=n,
               note=f"local {walls['local']:.1f} s; {walls['local'] / n:.2f} s per design"
                    + (drift if overhead_s < 0 else ""))  # fmt: skip
    report.add("empty Ray task round trip (ms)", "1 node", round(noop_ms, 2), n=args.noop_tasks)
    report.data = {"designs": n, "yosys": toolchain.version, "runtime": toolchain.runtime, "cpus": os.cpu_count(),
                   "load_avg_1_5_15": [round(x, 2) for x in load], "rows_identical": same}  # fmt: skip
    report.details = {"wall_s": {k: round(v, 2) for k, v in walls.items()}}
    if not same:
        raise SystemExit("the three runs wrote different rows: not a valid benchmark")
    report.finish().emit(args.json)


if __name__ == "__main__":
    main()
