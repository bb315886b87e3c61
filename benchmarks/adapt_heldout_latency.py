"""Held-out error of a latency adaptation vs its fit error, and what computing it costs.

    python benchmarks/adapt_heldout_latency.py --store ./store

Meta-trains the few-shot latency model (default config) on 8 HELP NB201 devices (2,000 random
architectures), adapts it to a ninth from 10 and 20 random measurements with
:meth:`AdaptedDeviceRegistry.adapt` (in a temporary store), and prints the fit MAPE
(``support_mape``), the held-out MAPE / Spearman the record now carries (``heldout``), the
MAPE / Spearman on 500 other architectures, and the seconds of the adaptation and of the held-out
estimate.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.fewshot import FewShotConfig, FewShotLatencyRegressor
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry
from hwsurrogate.surrogates.training.metrics import mape, spearman


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="store")
    args = ap.parse_args()
    lat = (
        DatasetStore(args.store)
        .scan("latency")
        .filter((pl.col("source") == "help") & (pl.col("space") == "nb201"))
        .select("device_id", "space", "arch_key", "latency_ms")
        .collect()
    )
    devs = lat["device_id"].unique().sort().to_list()
    target, sources = devs[0], devs[1:9]
    keys = lat.filter(pl.col("device_id") == target)["arch_key"].unique().sort().to_list()
    sub = np.random.default_rng(0).choice(keys, 2000, replace=False).tolist()
    train = lat.filter(pl.col("device_id").is_in(sources) & pl.col("arch_key").is_in(sub))
    t = time.perf_counter()
    model = FewShotLatencyRegressor(FewShotConfig()).fit(train)
    print(f"meta-fit {time.perf_counter() - t:.1f} s on {len(sources)} devices; target {target}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        reg = AdaptedDeviceRegistry(tmp)
        reg.export_model(model, "1", champion=True)
        rows = lat.filter(pl.col("device_id") == target)
        for n in (10, 20):
            meas = rows.sample(n, seed=1).select("space", "arch_key", "latency_ms")
            t = time.perf_counter()
            dev = reg.adapt("me/dev", meas)
            total = time.perf_counter() - t
            rest = rows.filter(~pl.col("arch_key").is_in(meas["arch_key"].to_list())).sample(500, seed=2)
            pred = reg.predict_latency("me/dev", "nb201", rest["arch_key"].to_list())
            y = rest["latency_ms"].to_numpy()
            held = dev.heldout["per_space"]["nb201"]
            print(
                f"{n} measurements: fit MAPE {dev.support_mape['nb201']:.2f} %; held-out ({held['method']}) "
                f"MAPE {held['mape']:.2f} %, Spearman {held['spearman']:.3f}; 500 other archs MAPE "
                f"{mape(y, pred):.2f} %, Spearman {spearman(y, pred):.3f}; adapt {total:.3f} s of which "
                f"held-out {dev.heldout['seconds']:.3f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
