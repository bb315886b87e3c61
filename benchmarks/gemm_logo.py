"""Leave-one-training-GPU-out (LOGO) selection evidence for the cross-GPU GEMM model.

Every GEMM design choice of ``hws bench gemm-neusight`` / ``fewshot-gemm`` is picked here, on
NeuSight's 5 *training* GPUs only: each one is held out in turn, the model is fitted on the
other 4 (their train files) and scored on the held-out GPU's rows. The test GPUs (H100, L4,
A100-80GB) take no part.

Two scorings of the held-out GPU:

- ``test-file`` rows (default): NeuSight's test file also measures the training GPUs, on the
  same LLM-like shape set as the test GPUs (aligned dims, large shapes); the train files hold
  random, mostly unaligned shapes. This is the distribution the benchmark scores.
- ``train-file`` rows (``--eval train``): the random shapes.

Usage::

    export HWSURROGATE_STORE=$PWD/store HWSURROGATE_DATA_DIR=../shared/data
    hws data import neusight
    python benchmarks/gemm_logo.py zero-shot [--seeds 1,2,3] [--eval test|train]
    python benchmarks/gemm_logo.py few-shot [--repeats 5]
    python benchmarks/gemm_logo.py gp [--repeats 3]

``zero-shot`` compares feature sets (with/without the alignment features, with NeuSight's
original P4 row of 40 x 64 SMs vs the datasheet's 20 x 128) by fitting histogram gradient
boosting on the shared feature pipeline with the benchmark's tree settings. ``few-shot`` runs the
real adaptation (``fit_adaptation``) with and without the source-GPU term and over its ridge
(steps 1-3, the GP off); ``gp`` runs the full adaptation over the step-4 GP's constants.
Both print mean MAPE over GPU x op, per GPU x op, and CPU and wall time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from hwsurrogate.benchmarks.gemm import (
    NEUSIGHT_TRAIN,
    NEUSIGHT_TREE,
    fit_neusight_base,
    neusight_frames,
)
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.features import gemm_feature_names, gemm_features
from hwsurrogate.surrogates.fewshot.gemm import GemmAdaptConfig, fit_adaptation, predict_with_correction
from hwsurrogate.surrogates.training.metrics import ape

ALIGN = ("align_n", "align_k", "align_nk")
P4 = "neusight/Tesla_P4"


def _split(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("extra").str.json_path_match("$.split")


def _short(device: str) -> str:
    return device.split("/", 1)[1][:12]


def _table(results: dict[str, dict[str, float]]) -> None:
    keys = list(next(iter(results.values())))
    print(f"{'variant':<34} {'mean':>6}  " + " ".join(f"{k:>18}" for k in keys))
    for name, r in sorted(results.items(), key=lambda kv: np.mean(list(kv[1].values()))):
        print(f"{name:<34} {np.mean(list(r.values())):6.2f}  " + " ".join(f"{r[k]:18.1f}" for k in keys))


def zero_shot(seeds: list[int], evaluate: str, rows_per_gpu: int) -> None:
    store = DatasetStore()
    frame = store.read("gemm", source="neusight").filter(pl.col("device_id").is_in(list(NEUSIGHT_TRAIN)))
    devices = store.read("devices")
    p4_json = devices.with_columns(
        pl.when(pl.col("device_id") == P4).then(40).otherwise(pl.col("cores")).alias("cores")
    )
    full = gemm_feature_names()
    variants = {
        "alignment features (chosen)": (full, devices),
        "no alignment features": ([c for c in full if c not in ALIGN], devices),
        "no alignment, P4 as 40x64 SMs": ([c for c in full if c not in ALIGN], p4_json),
    }
    results: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        sub = pl.concat(
            [
                g.sample(min(g.height, rows_per_gpu), seed=seed) if key[1] == "train" else g
                for key, g in frame.with_columns(_split(frame).alias("_split")).group_by(
                    "device_id", "_split", maintain_order=True
                )
            ]
        )
        is_test = (sub["_split"] == "test").to_numpy()
        dev, op = sub["device_id"].to_numpy(), sub["op"].to_numpy()
        y = sub["runtime_ms"].to_numpy()
        for name, (cols, table) in variants.items():
            feats = gemm_features(sub, table)
            x = feats.select(cols).to_numpy()
            roof = feats["roofline_ms"].to_numpy()
            for held in NEUSIGHT_TRAIN:
                fit = (dev != held) & ~is_test
                ev = (dev == held) & (is_test if evaluate == "test" else ~is_test)
                model = HistGradientBoostingRegressor(
                    max_iter=300, learning_rate=0.1, random_state=0, **NEUSIGHT_TREE
                ).fit(x[fit], np.log(y[fit] / roof[fit]))
                pred = np.exp(model.predict(x[ev])) * roof[ev]
                errors = ape(y[ev], pred)
                for o in ("bmm", "linear"):
                    key = f"{_short(held)} {o}"
                    results.setdefault(name, {}).setdefault(key, []).append(float(errors[op[ev] == o].mean()))
        print(
            f"seed {seed}: "
            + ", ".join(f"{n} {np.mean([v[-1] for v in r.values()]):.2f}" for n, r in results.items())
        )
    _table({n: {k: float(np.mean(v)) for k, v in r.items()} for n, r in results.items()})


def few_shot(repeats: int, shots: list[int], ridges: list[float]) -> None:
    steps123 = replace(GemmAdaptConfig(), use_gp=False)
    configs = {"steps 1+2 (no source term)": replace(steps123, use_sources=False)}
    configs |= {f"steps 1+2+3, source ridge {r:g}": replace(steps123, source_ridge=r) for r in ridges}
    _few_shot_configs(configs, repeats, shots)


def gp_grid(repeats: int, shots: list[int]) -> None:
    """Step 4's constants: GP lengthscale x (signal sd, noise sd), and no GP (steps 1-3)."""
    base = GemmAdaptConfig()
    configs = {"steps 1-3 (no GP)": replace(base, use_gp=False)}
    for ell in (3.0, 4.0, 6.0):
        for sig, noise in ((0.2, 0.1), (0.2, 0.05), (0.15, 0.1)):
            configs[f"GP l={ell:g} s={sig:g} noise={noise:g}"] = replace(
                base, gp_lengthscale=ell, gp_signal_sd=sig, gp_noise_sd=noise
            )
    _few_shot_configs(configs, repeats, shots)


def _few_shot_configs(configs: dict[str, GemmAdaptConfig], repeats: int, shots: list[int]) -> None:
    store = DatasetStore()
    out = []
    for held in NEUSIGHT_TRAIN:
        train, test, devices = neusight_frames(store, [d for d in NEUSIGHT_TRAIN if d != held], [held])
        test = test.filter(_split(test) == "test")
        base = fit_neusight_base(train, devices, max_rows=40_000, max_iter=300, device_features=True)
        desc = devices.filter(pl.col("device_id") == held)
        y, ops = test["runtime_ms"].to_numpy(), test["op"].to_numpy()
        zero = base.predict(test, extra_devices=desc)
        for s in shots:
            for rep in range(repeats):
                rng = np.random.default_rng(1000 * rep + s)  # the draws of `hws bench fewshot-gemm`
                support = np.sort(rng.choice(test.height, size=s, replace=False))
                mask = np.ones(test.height, dtype=bool)
                mask[support] = False
                preds = {"zero-shot": zero}
                for name, cfg in configs.items():
                    corr, _, _ = fit_adaptation(base, test[support], desc, y[support], cfg)
                    preds[name] = predict_with_correction(base, corr, test, desc)
                for name, p in preds.items():
                    errors = ape(y, p)
                    for o in ("bmm", "linear"):
                        sel = mask & (ops == o)
                        out.append({"method": name, "shots": s, "gpu": f"{_short(held)} {o}", "mape": float(errors[sel].mean())})  # fmt: skip
        print(f"held out {held}: done", flush=True)
    df = pl.DataFrame(out).group_by("method", "shots", "gpu").agg(pl.col("mape").mean())
    for s in shots:
        print(f"\n{s} shots (mean over {repeats} draws)")
        part = df.filter(pl.col("shots") == s)
        _table(
            {
                m: dict(zip(g["gpu"], g["mape"], strict=True))
                for (m,), g in part.sort("gpu").group_by("method")
            }
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("zero-shot", "few-shot", "gp"))
    ap.add_argument("--seeds", default="1,2,3", help="zero-shot: training-row subsample seeds")
    ap.add_argument(
        "--eval", default="test", choices=("test", "train"), help="zero-shot: held-out rows scored"
    )
    ap.add_argument("--rows-per-gpu", type=int, default=12_000, help="zero-shot: train-file rows per GPU")
    ap.add_argument("--repeats", type=int, default=5, help="few-shot: support draws per size")
    ap.add_argument("--shots", default="5,10,20")
    ap.add_argument("--ridges", default="0.1,0.3,1,3", help="few-shot: source-term ridge values")
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    with threadpool_limits(limits=1, user_api="openmp"):
        if args.mode == "zero-shot":
            zero_shot([int(s) for s in args.seeds.split(",")], args.eval, args.rows_per_gpu)
        elif args.mode == "gp":
            gp_grid(args.repeats, [int(s) for s in args.shots.split(",")])
        else:
            few_shot(
                args.repeats,
                [int(s) for s in args.shots.split(",")],
                [float(r) for r in args.ridges.split(",")],
            )
    print(f"\nwall time {time.perf_counter() - t0:.1f} s, CPU time {time.process_time() - c0:.1f} s")


if __name__ == "__main__":
    main()
