"""Leave-one-training-GPU-out (LOGO) selection evidence for ``hws bench model-neusight``.

The operator model's design choices are picked here on NeuSight's five *training* GPUs only:
each is held out in turn, the operator model is fitted on the other four (the same rows
``hws bench model-neusight`` fits on: operator and GEMM micro-benchmark train files, trace rows
of the training models) and the held-out GPU's traced configurations of the training models
(BERT-Large, GPT2-Large) are predicted end to end with the benchmark's aggregation
(:func:`~hwsurrogate.benchmarks.model_neusight.aggregate`, launch overlap on). H100, L4 and
A100-80GB take no part.

Usage::

    export HWSURROGATE_STORE=$PWD/store HWSURROGATE_DATA_DIR=../shared/data
    hws data import neusight && hws data import neusight_ops && hws data import neusight_traces
    python benchmarks/model_neusight_logo.py [--ceiling 0.99 --ceiling none ...]

Each ``--ceiling`` is one variant of ``OperatorLatencyModel(gemm_power_ceiling=...)`` (``none``:
no power-limited GEMM ceiling). Prints, per variant, the mean end-to-end error per held-out GPU,
the held-out GPU's ``linear`` predicted / measured per-op sum, and the LOGO mean.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from hwsurrogate.benchmarks.gemm import NEUSIGHT_TRAIN
from hwsurrogate.benchmarks.model_neusight import TRAIN_MODELS, aggregate
from hwsurrogate.datasets.importers import default_path
from hwsurrogate.datasets.importers.neusight_traces import parse_stem, trace_measured_table
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.models.ops import OperatorLatencyModel
from hwsurrogate.surrogates.training.ops import ops_training_rows


def _configs(gpu: str) -> list[tuple[pl.DataFrame, float]]:
    """(measured operator table, measured end-to-end ms) of ``gpu``'s training-model traces."""
    out = []
    for csv_path in sorted((default_path("neusight_traces") / "label" / gpu).glob("*.csv.gz")):
        meta = parse_stem(csv_path.name.removesuffix(".csv.gz"))
        summary = csv_path.with_name(csv_path.name.replace(".csv.gz", ".json"))
        if meta is None or meta["model"] not in TRAIN_MODELS or not summary.exists():
            continue
        out.append((trace_measured_table(csv_path), float(json.loads(summary.read_text())["e2e_latency"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ceiling", action="append", default=None,
                        help="gemm_power_ceiling variant (a quantile in (0, 1], or 'none'); repeatable")  # fmt: skip
    parser.add_argument(
        "--store", default=None, help="dataset store (default: $HWSURROGATE_STORE or ./store)"
    )
    args = parser.parse_args()
    variants = [None if v == "none" else float(v) for v in (args.ceiling or ["none", "0.99"])]
    store = DatasetStore(args.store)
    ops, gemm, devices = ops_training_rows(
        store, devices=list(NEUSIGHT_TRAIN), trace_models=list(TRAIN_MODELS), micro_split="train"
    )
    if gemm is None:
        raise SystemExit("no gemm rows: run `hws data import neusight` first")
    gemm = gemm.filter(pl.col("source") == "neusight")
    rows = {r["device_id"]: r for r in devices.iter_rows(named=True)}
    results = []
    for held in NEUSIGHT_TRAIN:
        train = [d for d in NEUSIGHT_TRAIN if d != held]
        configs = _configs(held.removeprefix("neusight/"))
        for ceiling in variants:
            with threadpool_limits(1):
                model = OperatorLatencyModel(gemm_power_ceiling=ceiling).fit(
                    ops.filter(pl.col("device_id").is_in(train)), devices, gemm.filter(pl.col("device_id").is_in(train))
                )  # fmt: skip
            errs, lin_pred, lin_meas = [], 0.0, 0.0
            for table, e2e in configs:
                pred = model.predict_ops(table.drop("latency_ms"), rows[held])
                errs.append(abs(aggregate(table, pred, model.empty_op_ms)["latency_ms"] / e2e - 1) * 100)
                lin = (table["op_kind"] == "linear").to_numpy()
                count = table["count"].to_numpy().astype(np.float64)
                lin_pred += float(np.nansum((count * pred)[lin]))
                lin_meas += float((count * table["latency_ms"].to_numpy())[lin].sum())
            results.append({"ceiling": str(ceiling), "held_out": held, "configs": len(configs),
                            "e2e_err_pct": float(np.mean(errs)), "linear_pred_over_measured": lin_pred / lin_meas})  # fmt: skip
            print(results[-1], flush=True)
    frame = pl.DataFrame(results)
    with pl.Config(tbl_rows=50, tbl_width_chars=160):
        print(frame)
        print(
            frame.group_by("ceiling", maintain_order=True).agg(
                pl.col("e2e_err_pct").mean().alias("LOGO mean %")
            )
        )


if __name__ == "__main__":
    main()
