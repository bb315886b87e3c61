"""FBNet few-shot variants: validation mean and FD test mean of each (docs/fewshot.md table).

Folds are those of ``hws bench fewshot-help``: the validation folds of
``bench_fewshot.validation_folds`` (HELP meta-valid devices + leave-one-out mobile meta-train
devices) and the FD test fold (meta-train -> fpga, raspi4, eyeriss); 20 measurements (10 HELP
references + 10 random), ``--seeds`` support draws. One meta-training per variant and fold (the
GNN encoder is cached across variants with the same GNN settings); variants that differ only at
adaptation share it.

    HWSURROGATE_STORE=/work/benchstore HWSURROGATE_DATA_DIR=/work/shared/data \\
        python benchmarks/fewshot_fbnet_variants.py --variants "span + no prior-free ridges","no span component"
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from hwsurrogate.benchmarks.fewshot import read_latency_rows, validation_folds
from hwsurrogate.surrogates.fewshot import (
    FewShotConfig,
    FewShotLatencyRegressor,
    evaluate_help_protocol,
    read_splits,
)

SPACE = "fbnet"
#: the HELP-validation pick (span component, prior-free ridges out); not the default because the
#: NASFLAT task suite's F3/FA collapse with it (see FewShotConfig.span_component)
BASE = replace(FewShotConfig(), span_component=(SPACE,), no_flat=(SPACE,))
#: name -> configuration (each a change of BASE)
VARIANTS: dict[str, FewShotConfig] = {
    "span + no prior-free ridges": BASE,
    "default (no span component, prior-free ridges kept)": FewShotConfig(),
    "no span component": replace(BASE, span_component=()),
    "prior-free ridges kept": replace(BASE, no_flat=()),
    "+ cost-table component (cov x1, x10)": replace(
        BASE, table_component=(SPACE,), table_cov_scales=(1.0, 10.0)
    ),
    "+ physical per-layer features": replace(BASE, physical_features=(SPACE,)),
    "LOO model weights": replace(BASE, weighting="loo"),
    "ms transform only": replace(BASE, transforms=("ms",)),
    "mixture + gaussian priors": replace(BASE, prior="both"),
    "GNN rank loss 0.5": replace(BASE, gnn_rank_loss=0.5),
    "2 GNN encoders": replace(BASE, gnn_ensemble=2),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--variants", default="span + no prior-free ridges", help=f"comma-separated names of {list(VARIANTS)}"
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--splits", default=None, help="splits.json (default: $HWSURROGATE_DATA_DIR/latency)")
    ap.add_argument("--store", default=None, help="dataset store root (default: $HWSURROGATE_STORE)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    split = read_splits(args.splits)[f"help-{SPACE}"]
    frame = read_latency_rows(args.store, SPACE, [*split.train, *split.valid, *split.test])
    folds = [(f"val{i}", tr, tg) for i, (tr, tg) in enumerate(validation_folds(split))]
    folds.append(("test", list(split.train), list(split.test)))
    out = {}
    for name in names:
        cfg = VARIANTS[name]
        per: dict[str, dict[str, float]] = {"validation": {}, "test": {}}
        for fold, train, targets in folds:
            model = FewShotLatencyRegressor(cfg).fit(frame, devices={SPACE: train}, spaces=[SPACE])
            res = evaluate_help_protocol(
                model, frame, SPACE, targets, n_pool=split.n_pool, seeds=range(args.seeds)
            )
            res.pop("_pooled")
            per["test" if fold == "test" else "validation"] |= {d: r["spearman"] for d, r in res.items()}
        out[name] = {k: {"mean": float(np.mean(list(v.values()))), "per_device": v} for k, v in per.items()}
        print(
            f"{name:62s} validation {out[name]['validation']['mean']:.4f}  FD test {out[name]['test']['mean']:.4f}"
        )
    wall = time.perf_counter() - t0
    print(f"wall time: {wall:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"wall_s": round(wall, 1), "seeds": args.seeds, "variants": out}, fh, indent=1)


if __name__ == "__main__":
    main()
