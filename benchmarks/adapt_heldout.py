"""Held-out error of a GEMM adaptation vs its fit error, and what computing it costs.

    python benchmarks/adapt_heldout.py --store ./store --device aiconfigurator/l40s --shots 10

Fits the GEMM runtime model on the NeuSight source (as ``hws train gemm --source neusight``
does, without MLflow), adapts it to ``--device`` from ``--shots`` random measured shapes with
:func:`hwsurrogate.surrogates.adapt.adapt_gemm` (into a temporary store), and prints the fit MAPE,
the held-out (5-fold) MAPE the record now carries, the MAPE on ``--test`` other shapes of the device,
and the seconds of the adaptation and of the held-out estimate. Single-threaded (as the CLI).
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.adapt import adapt_gemm, predict_adapted
from hwsurrogate.surrogates.features import DEVICE_DESCRIPTORS
from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor
from hwsurrogate.surrogates.training.metrics import mape


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="store")
    ap.add_argument("--source", default="neusight")
    ap.add_argument("--device", default="aiconfigurator/l40s")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-iter", type=int, default=600)
    ap.add_argument(
        "--model-cache", default=None, help="pickle of the fitted model (written once, then read)"
    )
    args = ap.parse_args()
    store = DatasetStore(args.store)
    devices = store.read("devices")
    train = store.scan("gemm").filter(pl.col("source") == args.source).collect()
    t0 = time.perf_counter()
    cache = Path(args.model_cache) if args.model_cache else None
    if cache is not None and cache.is_file():
        model = pickle.loads(cache.read_bytes())
    else:
        with threadpool_limits(limits=2, user_api="openmp"):
            reg = GemmRegressor(devices=devices, max_iter=args.max_iter).fit(train, train["runtime_ms"])
        model = GemmPyfunc(reg)
        if cache is not None:
            cache.write_bytes(pickle.dumps(model))
    fit_s = time.perf_counter() - t0

    class Served:  # the Predictor contract adapt_gemm reads (name, version, model)
        name, version = "hws-gemm", "bench"

        def __init__(self, m: GemmPyfunc) -> None:
            self.model = m

    target = (
        store.scan("gemm")
        .filter((pl.col("device_id") == args.device) & (pl.col("dtype") == args.dtype))
        .collect()
    )
    desc = devices.filter(pl.col("device_id") == args.device).select(
        [c for c in DEVICE_DESCRIPTORS if c in devices.columns]
    )
    runs = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        idx = rng.permutation(target.height)
        shots = target[idx[: args.shots]].select("op", "m", "n", "k", "batch", "dtype", "runtime_ms")
        test = target[idx[args.shots : args.shots + args.test]]
        meas = pl.concat([shots, pl.concat([desc] * shots.height)], how="horizontal")
        with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1, user_api="openmp"):
            t = time.perf_counter()
            record, _ = adapt_gemm(
                args.device.replace("/", "-") + "-new", meas, store_root=tmp, predictor=Served(model)
            )
            total = time.perf_counter() - t
            q = test.select("op", "m", "n", "k", "batch", "dtype", "layout")
            pred = predict_adapted(model, record, q)["runtime_ms"].to_numpy()
        runs.append(
            {
                "seed": seed,
                "fit_mape_before": round(record.fit_mape_before, 1),
                "fit_mape_after": round(record.fit_mape_after, 1),
                "heldout_mape": round(record.heldout_mape, 1) if record.heldout_mape is not None else None,
                "heldout_method": record.heldout_method,
                f"test_mape_{test.height}_shapes": round(mape(test["runtime_ms"].to_numpy(), pred), 1),
                "fit_seconds": record.fit_seconds,
                "heldout_seconds": record.heldout_seconds,
                "adapt_gemm_seconds": round(total, 3),
            }
        )
    print(json.dumps({"device": args.device, "dtype": args.dtype, "shots": args.shots,
                      "model_fit_seconds": round(fit_s, 1), "runs": runs}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
