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

``--backward MODE`` (repeatable; ``OperatorLatencyModel(backward_vector=MODE)``) runs the check
the backward vector kinds allow instead. Only V100 has training traces among the training GPUs.
The check holds out one *training trace* of a training GPU at a time (V100: BERT-Large b2, b8,
GPT2-Large b1) and fits on every other row (all five GPUs); then it holds out the whole GPU (LOGO:
no backward trace rows left, so only ``recipe``, which fits nothing on them, models its backward
vector rows). It prints each held-out trace's end-to-end error, its error against the measured
per-op latencies aggregated the same way (the operator model's error without the composition
floor), and its backward vector kinds' predicted / measured per-op sums.
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


def _training_traces(held: str) -> list[tuple[str, pl.DataFrame, float]]:
    """(model name, measured operator table, measured e2e ms) of ``held``'s training-mode traces."""
    out = []
    for csv_path in sorted((default_path("neusight_traces") / "label" / held).glob("*-train-*.csv.gz")):
        stem = csv_path.name.removesuffix(".csv.gz")
        meta = parse_stem(stem)
        summary = csv_path.with_name(f"{stem}.json")
        if meta is None or meta["model"] not in TRAIN_MODELS or not summary.exists():
            continue
        out.append((stem, trace_measured_table(csv_path), float(json.loads(summary.read_text())["e2e_latency"])))
    return out


def backward_check(ops: pl.DataFrame, gemm: pl.DataFrame, devices: pl.DataFrame, modes: list[str]) -> None:
    """Leave one training trace out (training GPUs' training-mode traces) per ``backward_vector`` mode."""
    rows = {r["device_id"]: r for r in devices.iter_rows(named=True)}
    vector = ["elementwise", "activation", "softmax", "layernorm", "embedding"]
    results = []
    for dev in NEUSIGHT_TRAIN:
        traces = _training_traces(dev.removeprefix("neusight/"))
        # each trace held out alone, then the whole GPU held out (LOGO: no training traces left)
        held = [(stem, [(stem, table, e2e)]) for stem, table, e2e in traces]
        held += [("LOGO", traces)] if traces else []
        for unit, cases in held:
            if unit == "LOGO":
                train, g = ops.filter(pl.col("device_id") != dev), gemm.filter(pl.col("device_id") != dev)
            else:
                keep = (pl.col("device_id") != dev) | (pl.col("model").fill_null("") != unit)
                train, g = ops.filter(keep), gemm
            for mode in modes:
                with threadpool_limits(1):
                    model = OperatorLatencyModel(backward_vector=mode).fit(train, devices, g)
                for stem, table, e2e in cases:
                    name = f"{dev.removeprefix('neusight/')} {stem}" + (" (LOGO)" if unit == "LOGO" else "")
                    _score(results, model, mode, name, table, e2e, rows[dev], vector)
    frame = pl.DataFrame(results)
    loco = frame.filter(~pl.col("held_out").str.ends_with("(LOGO)"))
    with pl.Config(tbl_rows=50, tbl_width_chars=220, float_precision=3):
        print(frame)
        for name, part in (("leave one training trace out", loco), ("V100 held out (LOGO)", frame.filter(
                pl.col("held_out").str.ends_with("(LOGO)")))):  # fmt: skip
            print(name)
            print(part.group_by("backward_vector", maintain_order=True).agg(
                pl.col("e2e_err_pct").mean().alias("mean e2e error %"),
                pl.col("per_op_sum_err_pct").mean().alias("mean per-op sum error %"),
                *[(pl.col(f"{k}_bwd_pred/meas") - 1).abs().mean().mul(100).alias(f"{k} bwd |err| %") for k in vector],
            ))  # fmt: skip


def _score(results: list[dict], model: OperatorLatencyModel, mode: str, name: str, table: pl.DataFrame,
           e2e: float, device: dict, vector: list[str]) -> None:  # fmt: skip
    """One held-out training trace's row of :func:`backward_check` (appended to ``results``)."""
    pred = model.predict_ops(table.drop("latency_ms"), device)
    agg = aggregate(table, pred, model.empty_op_ms)["latency_ms"]
    # against the measured per-op latencies aggregated the same way: the operator model's own
    # error on the trace, without the composition floor (per-op sum against end to end)
    per_op = aggregate(table, table["latency_ms"].to_numpy(), model.empty_op_ms)["latency_ms"]
    count = table["count"].to_numpy().astype(np.float64)
    kinds, back = table["op_kind"].to_numpy(), (table["phase"] == "backward").to_numpy()
    row = {"held_out": name, "backward_vector": mode, "e2e_err_pct": abs(agg / e2e - 1) * 100,
           "per_op_sum_err_pct": abs(agg / per_op - 1) * 100}  # fmt: skip
    for kind in vector:
        sel = back & (kinds == kind)
        meas = float((count * table["latency_ms"].to_numpy())[sel].sum())
        row[f"{kind}_bwd_pred/meas"] = float(np.nansum((count * pred)[sel]) / meas) if meas else None
    results.append(row)
    print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ceiling", action="append", default=None,
                        help="gemm_power_ceiling variant (a quantile in (0, 1], or 'none'); repeatable")  # fmt: skip
    parser.add_argument(
        "--store", default=None, help="dataset store (default: $HWSURROGATE_STORE or ./store)"
    )
    parser.add_argument("--backward", action="append", default=None,
                        help="backward_vector variant (op_ratio, kind_ratio, trees); repeatable: runs the "
                        "leave-one-training-trace-out check instead of LOGO")  # fmt: skip
    args = parser.parse_args()
    variants = [None if v == "none" else float(v) for v in (args.ceiling or ["none", "0.99"])]
    store = DatasetStore(args.store)
    ops, gemm, devices = ops_training_rows(
        store, devices=list(NEUSIGHT_TRAIN), trace_models=list(TRAIN_MODELS), micro_split="train"
    )
    if gemm is None:
        raise SystemExit("no gemm rows: run `hws data import neusight` first")
    gemm = gemm.filter(pl.col("source") == "neusight")
    if args.backward:
        backward_check(ops, gemm, devices, args.backward)
        return
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
