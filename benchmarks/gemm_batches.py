"""One GEMM query and large GEMM batches through a served copy's model, for before/after comparisons.

Times ``predict_frame`` of the model in a served copy (``<store>/models/served/hws-gemm/*.pkl``,
written by ``hws predict gemm``) on one query (best and median of 2,000), on 10,000 rows and on
``--rows`` rows, with seeded queries on the model's first device. Run it with two checkouts'
interpreters on the same copy, alternating, to compare code versions (the pickle holds the
model's state; each checkout's code answers)::

    for i in 1 2; do
      ../main/.venv/bin/python benchmarks/gemm_batches.py --copy COPY.pkl --label before
      .venv/bin/python benchmarks/gemm_batches.py --copy COPY.pkl --label after
    done

One JSON line per run on stdout, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import polars as pl


def queries(device: str, n: int, rng: np.random.Generator) -> pl.DataFrame:
    dims = (2 ** rng.uniform(9, 13, size=(n, 3))).astype(np.int64)
    return pl.DataFrame({
        "device_id": [device] * n, "op": ["gemm"] * n, "m": dims[:, 0], "n": dims[:, 1], "k": dims[:, 2],
        "batch": np.ones(n, dtype=np.int64), "dtype": ["fp32"] * n,
        "layout": rng.choice(["nn", "nt", "tn", "tt"], n).tolist(),
    })  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copy", type=Path, required=True, help="a served copy of hws-gemm (our own pickle)")
    ap.add_argument("--label", default="run")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the large batch")
    ap.add_argument("--repeats", type=int, default=1, help="runs of the large batch")
    args = ap.parse_args()
    with args.copy.open("rb") as fh:  # a file this project wrote (see docs/cli.md, pickle caution)
        model = pickle.load(fh).model
    rng = np.random.default_rng(5)
    device = model.devices[0]
    out: dict = {"label": args.label, "loadavg_before": round(os.getloadavg()[0], 2)}
    one = queries(device, 1, rng)
    model.predict_frame(one)
    times = []
    for _ in range(2000):
        t0 = time.perf_counter()
        model.predict_frame(one)
        times.append(time.perf_counter() - t0)
    out["one_query_ms_best"] = round(min(times) * 1e3, 4)
    out["one_query_ms_median"] = round(float(np.median(times)) * 1e3, 4)
    for n, repeats in ((10_000, 3), (args.rows, args.repeats)):
        q = queries(device, n, rng)
        model.predict_frame(q.head(1000))
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.predict_frame(q)
            runs.append(round(time.perf_counter() - t0, 3))
        out[f"rows_{n}_s"] = runs
    out["loadavg_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
