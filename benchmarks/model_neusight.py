"""``hws bench model-neusight``: whole-model latency of NeuSight's traced transformers on GPUs.

NeuSight's protocol (ASPLOS'25): the operator surrogates are fitted on the five training GPUs
(P4, P100, T4, V100, A100-40GB) only: their operator micro-benchmarks (``neusight_ops`` train
files), their GEMM micro-benchmarks (``neusight`` train files) and their per-op trace rows of
the models NeuSight trains on (BERT-Large, GPT2-Large, Switch); GPT3-XL, GPT3-2.7B and OPT-1.3B
are unseen models, H100, L4 and A100-80GB unseen GPUs. Each traced configuration's operator
table (one layer, replicated ``num_layer`` times as NeuSight's ``replicate_layer`` does) is
predicted op by op and summed; the error is ``|pred - measured| / measured`` of the whole model's
measured end-to-end latency.

Aggregation: ``sum(count * per-call prediction)`` by ``surrogates/wholemodel.py``
(``predict_model_latency``) for an asynchronous GPU run: each call loses the launch overlap
(``overlap_ms``: the median measured time of an empty op on the training GPUs, fitted with the
operator model, never on an end-to-end latency) and host-only ops (0 FLOPs, 0 bytes) cost 0;
``--overlap 0`` is the plain sum. Rows the model cannot predict are estimated there and their
measured share is reported per configuration.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl

from hwsurrogate.benchmarks.gemm import NEUSIGHT_TEST, NEUSIGHT_TRAIN, short_device
from hwsurrogate.benchmarks.report import BenchReport, json_option, log_bench, store_option
from hwsurrogate.datasets.importers import default_path
from hwsurrogate.datasets.importers.neusight_traces import parse_stem, trace_measured_table
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.progress import track
from hwsurrogate.surrogates.models.ops import OperatorLatencyModel, apply_scales, fewshot_scales
from hwsurrogate.surrogates.training.ops import ops_training_rows
from hwsurrogate.surrogates.wholemodel import launch_overlap_ms, predict_model_latency

__all__ = ["aggregate", "bench_model_neusight", "perop_breakdown", "read_anchor_blocks"]

#: models NeuSight trains on (trace rows of the training GPUs may be used); the others are unseen
TRAIN_MODELS = ("bert_large", "gpt2_large", "switch4", "switchxl4")
#: anchor-table model names -> our trace model names
ANCHOR_MODELS = {"BERT-Large": "bert_large", "GPT2-Large": "gpt2_large", "GPT3-XL": "gpt3_xl",
                 "OPT-1.3B": "opt_13", "GPT3-2.7B": "gpt3_27", "SwitchTrans": "switchxl4"}  # fmt: skip
#: per-op-type names of anchors/perop.csv -> our op kinds
PEROP_KINDS = {"BMM": ("bmm",), "FC": ("linear",), "EW": ("elementwise", "activation"),
               "Softmax": ("softmax",), "LN": ("layernorm",)}  # fmt: skip
#: the issue's targets: (GPU, mode) -> mean error %; every configuration of an unseen GPU <= 15 %
MEAN_TARGETS = {("NVIDIA_H100_80GB_HBM3", "inference"): 5.0, ("NVIDIA_L4", "inference"): 10.0,
                ("NVIDIA_H100_80GB_HBM3", "training"): 5.0, ("NVIDIA_A100_80GB_PCIe", "training"): 5.0}  # fmt: skip
NEUSIGHT_MEANS = {("NVIDIA_H100_80GB_HBM3", "inference"): 6.1, ("NVIDIA_L4", "inference"): 14.6,
                  ("NVIDIA_H100_80GB_HBM3", "training"): 6.6, ("NVIDIA_A100_80GB_PCIe", "training"): 7.6}  # fmt: skip
CONFIG_TARGET = 15.0
ANCHOR_SOURCE = "NeuSight (ASPLOS'25) Fig. 7/8 tables (anchors/nvidia_*.csv)"


def read_anchor_blocks(path: Path, method: str = "NeuSight") -> dict[tuple[str, str, int], float]:
    """``(GPU, model, batch) -> error %`` of ``method`` from NeuSight's per-GPU blocks."""
    out: dict[tuple[str, str, int], float] = {}
    gpu, models, batches = None, [], []
    with path.open(newline="") as fh:
        for row in csv.reader(fh):
            if not row or not any(row):
                continue
            if len(row) == 1 or not any(row[1:]):
                gpu = row[0]
            elif row[0] == "Model":
                models, last = [], ""
                for cell in row[1:]:
                    last = cell or last
                    models.append(last)
            elif row[0] == "Batch":
                batches = [int(b) for b in row[1:] if b]
            elif row[0] == method and gpu:
                for m, b, v in zip(models, batches, row[1:], strict=False):
                    if v and m in ANCHOR_MODELS:
                        out[(gpu, ANCHOR_MODELS[m], b)] = float(v)
    return out


def read_perop(path: Path) -> dict[str, float]:
    """NeuSight's out-of-distribution per-op-type error % (anchors/perop.csv)."""
    rows = list(csv.reader(path.open(newline="")))
    kinds = rows[1][1:]
    neusight = next(r for r in rows if r and r[0] == "NeuSight")[1:]
    half = len(kinds) // 2  # first half in distribution, second half out of distribution
    return {k: float(v) for k, v in zip(kinds[half:], neusight[half : 2 * half], strict=True)}


def aggregate(table: pl.DataFrame, per_call_ms: np.ndarray, overlap_ms: float = 0.0) -> dict[str, Any]:
    """Whole-model latency through :func:`~hwsurrogate.surrogates.wholemodel.predict_model_latency`.

    ``sum(count * per-call ms)`` (less ``overlap_ms`` per call, host-only ops free, when it is
    > 0); rows the model cannot predict are estimated there from the modeled rows' efficiency
    and their share is reported (``unmodeled_share``).
    """
    mode = "training" if bool((table["phase"] == "backward").any()) else "inference"
    pred = predict_model_latency(table, lambda _t: per_call_ms, mode=mode, overlap_ms=overlap_ms)
    return {"latency_ms": float(pred.latency_ms), "unmodeled_share": float(pred.unmodeled_share),
            "unmodeled_ops": pred.unmodeled_ops}  # fmt: skip


def perop_breakdown(per_kind: pl.DataFrame, kinds: tuple[str, ...]) -> pl.DataFrame:
    """The per-op-type error of ``kinds`` out of distribution, by GPU and mode.

    ``per_kind``: the benchmark's ``per_op_kind`` details (gpu, config, mode, op_kind, phase,
    measured_ms, pred_ms, ood). Per (gpu, mode): the configurations, their mean per-op-type error
    (``|sum pred - sum measured| / sum measured`` per configuration, as the per-op-type row), and
    the predicted / measured sums of the forward and of the backward rows with the backward share
    of the measured time.
    """
    part = per_kind.filter(pl.col("ood") & pl.col("op_kind").is_in(list(kinds)))
    per_config = part.group_by("gpu", "mode", "config").agg(pl.col("measured_ms").sum(), pl.col("pred_ms").sum())
    err = per_config.filter(pl.col("measured_ms") > 0).group_by("gpu", "mode").agg(
        pl.len().alias("configs"), ((pl.col("pred_ms") / pl.col("measured_ms") - 1).abs() * 100).mean().alias("err_pct")
    )  # fmt: skip

    def ratio(phase: str) -> pl.Expr:
        sel = pl.col("phase") == phase
        return (pl.col("pred_ms").filter(sel).sum() / pl.col("measured_ms").filter(sel).sum()).alias(f"{phase}_pred_over_measured")

    sums = part.group_by("gpu", "mode").agg(
        ratio("forward"), ratio("backward"),
        (pl.col("measured_ms").filter(pl.col("phase") == "backward").sum() / pl.col("measured_ms").sum() * 100
         ).alias("backward_share_pct"),
    )  # fmt: skip
    return err.join(sums, on=["gpu", "mode"]).sort("gpu", "mode")


def _devices(store: DatasetStore) -> dict[str, Mapping[str, object]]:
    table = store.read("devices")
    return {r["device_id"]: r for r in table.iter_rows(named=True)}


def _fit(store: DatasetStore, max_iter: int) -> tuple[OperatorLatencyModel, dict[str, int]]:
    ops, gemm, devices = ops_training_rows(
        store, devices=list(NEUSIGHT_TRAIN), trace_models=list(TRAIN_MODELS), micro_split="train"
    )
    if gemm is None:
        raise TrainingDataError("model-neusight: no gemm rows; run `hws data import neusight` first")
    gemm = gemm.filter(pl.col("source") == "neusight")
    model = OperatorLatencyModel(max_iter=max_iter).fit(ops, devices, gemm)
    return model, {"ops_rows": ops.height, "gemm_rows": gemm.height, **model.n_rows_}


def _breakdown_figure(per_kind: pl.DataFrame) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpus = per_kind["gpu"].unique().sort().to_list()
    fig, axes = plt.subplots(1, len(gpus), figsize=(5 * len(gpus), 4.5), squeeze=False)
    for ax, gpu in zip(axes[0], gpus, strict=True):
        part = per_kind.filter(pl.col("gpu") == gpu).sort("measured_ms", descending=True)
        x = np.arange(part.height)
        ax.bar(x - 0.2, part["measured_ms"].to_numpy(), 0.4, label="measured (per-op sum)")
        ax.bar(x + 0.2, part["pred_ms"].to_numpy(), 0.4, label="predicted")
        ax.set_xticks(x, part["op_kind"].to_list(), rotation=45, ha="right")
        ax.set_yscale("log")
        ax.set_title(f"{gpu}: time per op kind, all configs")
        ax.set_ylabel("ms (summed over configurations)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _log_plot(per_kind: pl.DataFrame) -> str | None:
    try:
        import matplotlib.pyplot as plt
        import mlflow

        from hwsurrogate.surrogates.registry.tracking import start_run

        fig = _breakdown_figure(per_kind)
        with start_run("bench", run_name="model-neusight-breakdown", benchmark="model-neusight") as run:
            mlflow.log_figure(fig, "plots/model_neusight_per_op_type.png")
        plt.close(fig)
        return str(run.info.run_id)
    except Exception as exc:  # tracking must never sink a benchmark
        click.echo(f"(MLflow plot logging skipped: {exc})", err=True)
        return None


def _fewshot_rows(
    report: BenchReport,
    model: OperatorLatencyModel,
    devices: Mapping[str, Mapping[str, object]],
    kept: Mapping[tuple[str, str], tuple[pl.DataFrame, np.ndarray, float]],
    *,
    shots: int,
    draws: int,
    overlap_ms: float,
) -> None:
    """Few-shot: ``shots`` measured operator rows of the unseen GPU (drawn from its BERT-Large
    traces) give one scale (:func:`fewshot_scale`); scored on its other models' configurations."""
    for dev_id in NEUSIGHT_TEST:
        gpu = short_device(dev_id)
        pool = [t for (g, c), (t, _, _) in kept.items() if g == gpu and c.startswith("bert_large")]
        targets = [(c, v) for (g, c), v in kept.items() if g == gpu and not c.startswith("bert_large")]
        if not pool or not targets:
            continue
        support = pl.concat(pool, how="vertical_relaxed").filter(pl.col("op_kind") != "other")
        zero = [abs(aggregate(t, p, overlap_ms)["latency_ms"] / e - 1) * 100 for _, (t, p, e) in targets]
        errs = []
        weight = support["latency_ms"] * support["count"]
        for seed in range(draws):
            # the user measures the ops that carry the time: draw rows with probability ~ their time
            rng = np.random.default_rng(seed)
            idx = rng.choice(support.height, size=min(shots, support.height), replace=False,
                             p=(weight / weight.sum()).to_numpy())  # fmt: skip
            rows = support[idx]
            scales = fewshot_scales(
                model, rows.drop("latency_ms"), rows["latency_ms"].to_numpy(), devices[dev_id]
            )
            errs.append(np.mean([abs(aggregate(t, apply_scales(t, p, scales), overlap_ms)["latency_ms"] / e - 1) * 100
                                 for _, (t, p, e) in targets]))  # fmt: skip
        report.add("mean e2e error % (few-shot)", f"{gpu} {shots} measured ops", float(np.mean(errs)),
                   n=len(targets), note=f"mean over {draws} draws of {shots} operator rows from the GPU's BERT-Large "
                   f"traces drawn with probability ~ their time (GEMM: time-weighted scale; other kinds: median ratio; a group with < 3 rows stays zero-shot); scored on its {len(targets)} non-BERT configurations, "
                   f"whose zero-shot mean is {np.mean(zero):.1f} %")  # fmt: skip


@click.command("model-neusight")
@json_option("model-neusight")
@store_option
@click.option("--max-iter", default=300, show_default=True, help="Boosting iterations per tree group.")
@click.option(
    "--shots", default=10, show_default=True, help="Measured operator rows of the unseen GPU (few-shot row)."
)
@click.option("--draws", default=5, show_default=True, help="Random draws of the few-shot rows.")
@click.option(
    "--overlap/--no-overlap",
    default=True,
    show_default=True,
    help="Aggregate as an asynchronous GPU run (launch overlap = the training GPUs' empty-op time, "
    "host-only ops free); --no-overlap: the plain sum of per-op predictions.",
)
def bench_model_neusight(
    json_path: str | None, store_root: str | None, max_iter: int, shots: int, draws: int, overlap: bool
) -> None:
    """NeuSight protocol: whole-model latency of traced transformers on GPUs never trained on.

    Needs `hws data import neusight`, `neusight_ops` and `neusight_traces` in the store and the
    trace files under $HWSURROGATE_DATA_DIR/models/neusight_traces (for the layer replication).
    """
    report = BenchReport(
        "model-neusight",
        "NeuSight (ASPLOS'25): operator surrogates fitted on P4, P100, T4, V100, A100-40GB only "
        "(their operator + GEMM micro-benchmark train files and their trace rows of BERT-Large, "
        "GPT2-Large, Switch); every traced configuration predicted op by op with NeuSight's layer "
        "replication and summed"
        + (" as an asynchronous GPU run (each call less the training GPUs' median empty-op time; host-only "
           "ops free)" if overlap else "") + "; error = |pred - measured| / measured end-to-end latency",
    )  # fmt: skip
    store = DatasetStore(store_root)
    root = default_path("neusight_traces")
    label = root / "label"
    if not label.is_dir():
        raise click.ClickException(f"trace folder {label} not found: set HWSURROGATE_DATA_DIR")
    devices = _devices(store)
    model, sizes = _fit(store, max_iter)
    # every NeuSight device is a GPU: one overlap for all, the operator model's empty-op time
    overlap_ms = launch_overlap_ms(model, devices[NEUSIGHT_TRAIN[0]]) if overlap else 0.0
    inf_anchor = read_anchor_blocks(root / "anchors" / "nvidia_inf.csv")
    train_anchor = read_anchor_blocks(root / "anchors" / "nvidia_train.csv")
    perop_anchor = read_perop(root / "anchors" / "perop.csv")

    configs: list[dict[str, Any]] = []
    per_kind: list[dict[str, Any]] = []
    kept: dict[tuple[str, str], tuple[pl.DataFrame, np.ndarray, float]] = {}
    files = sorted(
        f for f in label.glob("*/*.csv.gz") if f.with_name(f.name.replace(".csv.gz", ".json")).exists()
    )
    for csv_path in track(files, "predicting traced configurations"):
        gpu, stem = csv_path.parent.name, csv_path.name.removesuffix(".csv.gz")
        meta = parse_stem(stem)
        dev_id = f"neusight/{gpu}"
        if meta is None or dev_id not in devices:
            continue
        e2e = float(json.loads(csv_path.with_name(f"{stem}.json").read_text())["e2e_latency"])
        table = trace_measured_table(csv_path)
        pred = model.predict_ops(table.drop("latency_ms"), devices[dev_id])
        agg = aggregate(table, pred, overlap_ms)
        floor_agg = aggregate(table, table["latency_ms"].to_numpy(), overlap_ms)["latency_ms"]
        kept[(gpu, stem)] = (table, pred, e2e)
        count = table["count"].to_numpy().astype(np.float64)
        measured = count * table["latency_ms"].to_numpy()
        unmodeled = float(measured[~np.isfinite(pred)].sum() / measured.sum() * 100)
        anchors = train_anchor if meta["mode"] == "training" else inf_anchor
        model_name = str(meta["model"])
        anchor = anchors.get(
            (gpu, "switchxl4" if model_name.startswith("switch") else model_name, int(meta["batch"]))
        )
        unseen_gpu = dev_id in NEUSIGHT_TEST
        configs.append({
            "gpu": gpu, "config": stem, "model": model_name, "mode": meta["mode"], "batch": meta["batch"],
            "measured_ms": e2e, "pred_ms": agg["latency_ms"], "err": abs(agg["latency_ms"] / e2e - 1) * 100,
            "floor": abs(measured.sum() / e2e - 1) * 100, "floor_agg": abs(floor_agg / e2e - 1) * 100,
            "anchor": anchor, "unmodeled_pct": unmodeled,
            "unseen_gpu": unseen_gpu, "ood": unseen_gpu or model_name not in TRAIN_MODELS,
        })  # fmt: skip
        kinds, phases = table["op_kind"].to_numpy(), table["phase"].to_numpy()
        for k, ph in sorted(set(zip(kinds, phases, strict=True))):
            sel = (kinds == k) & (phases == ph)
            p = count[sel] * pred[sel]
            per_kind.append({
                "gpu": gpu, "config": stem, "mode": meta["mode"], "op_kind": str(k), "phase": str(ph),
                "measured_ms": float(measured[sel].sum()), "pred_ms": float(np.nansum(p)), "ood": configs[-1]["ood"],
            })  # fmt: skip
    res = pl.DataFrame(configs)
    kinds_frame = pl.DataFrame(per_kind)

    # per configuration (unseen GPUs first), beside NeuSight's published error
    order = res.with_columns(pl.col("unseen_gpu").not_().alias("_o")).sort("_o", "gpu", "mode", "config")
    for r in order.iter_rows(named=True):
        tag = "unseen GPU" if r["unseen_gpu"] else ("unseen model" if r["ood"] else "training GPU+model")
        report.add(
            "e2e error %", f"{short_device(r['gpu'])} {r['config']}", r["err"], anchor=r["anchor"],
            target=CONFIG_TARGET if r["unseen_gpu"] else None, anchor_source=ANCHOR_SOURCE, n=1,
            note=f"{tag}; measured {r['measured_ms']:.1f} ms, predicted {r['pred_ms']:.1f} ms; floor "
            f"{r['floor']:.1f} %; unmodeled {r['unmodeled_pct']:.2f} % of measured time",
        )  # fmt: skip
    # per GPU x mode means, against the targets where it sets one
    means = res.group_by("gpu", "mode").agg(
        pl.col("err").mean(), pl.col("err").max().alias("worst"), pl.col("floor").mean(), pl.col("floor_agg").mean(),
        pl.col("anchor").mean().alias("anchor_same"), pl.col("anchor").count().alias("n_anchor"), pl.len(),
    ).sort("gpu", "mode")  # fmt: skip
    for r in means.iter_rows(named=True):
        key = (r["gpu"], r["mode"])
        report.add(
            "mean e2e error %", f"{short_device(r['gpu'])} {r['mode']}", r["err"],
            anchor=NEUSIGHT_MEANS.get(key, r["anchor_same"]), target=MEAN_TARGETS.get(key),
            anchor_source="NeuSight's mean over its table's configurations" if key in NEUSIGHT_MEANS
            else "NeuSight's mean over the same configurations", n=r["len"],
            note=f"worst {r['worst']:.1f} %; NeuSight over the same {r['n_anchor']} configs: "
            f"{r['anchor_same'] if r['anchor_same'] is not None else float('nan'):.1f} %",
        )  # fmt: skip
    unseen = res.filter(pl.col("unseen_gpu"))
    report.add("max e2e error % (unseen GPUs)", "H100, L4, A100-80GB, all configurations",
               float(unseen["err"].max()), anchor=28.2, target=CONFIG_TARGET,
               anchor_source="NeuSight's worst: OPT-1.3B on L4", n=unseen.height)  # fmt: skip
    # the floor: measured per-op latencies summed with the same replication vs measured end to end
    for r in means.iter_rows(named=True):
        report.add("floor % (measured per-op sum vs e2e)", f"{short_device(r['gpu'])} {r['mode']}", r["floor"],
                   n=r["len"], note="what a perfect per-op predictor that sums would still miss")  # fmt: skip
        if overlap_ms > 0:
            report.add("floor % (measured per-op, same aggregation)", f"{short_device(r['gpu'])} {r['mode']}",
                       r["floor_agg"], n=r["len"], note=f"the measured per-op latencies aggregated as the predictions "
                       f"are (launch overlap {overlap_ms * 1000:.1f} us per call, host-only ops free)")  # fmt: skip
    # per-op-type error out of distribution, beside anchors/perop.csv
    ood = kinds_frame.filter(pl.col("ood"))
    for name, kinds in PEROP_KINDS.items():
        part = ood.filter(pl.col("op_kind").is_in(list(kinds))).group_by("gpu", "config").agg(
            pl.col("measured_ms").sum(), pl.col("pred_ms").sum()
        ).filter(pl.col("measured_ms") > 0)  # fmt: skip
        err = (part["pred_ms"] / part["measured_ms"] - 1).abs() * 100
        report.add("per-op-type error % (OOD)", f"{name} ({'+'.join(kinds)})", float(err.mean()),
                   anchor=perop_anchor.get(name), target=perop_anchor.get(name), anchor_source="NeuSight anchors/perop.csv (OOD)",
                   n=part.height, note="|sum pred - sum measured| / sum measured of that op type per configuration")  # fmt: skip
    _fewshot_rows(report, model, devices, kept, shots=shots, draws=draws, overlap_ms=overlap_ms)
    totals = kinds_frame.group_by("gpu", "op_kind").agg(pl.col("measured_ms").sum(), pl.col("pred_ms").sum())
    run_id = _log_plot(totals)
    report.data = {**sizes, "configurations": res.height, "unseen_gpu_configurations": unseen.height,
                   "max_iter": max_iter, "overlap_ms": overlap_ms,
                   "backward_ratios": {"/".join(k): round(v, 3) for k, v in model.backward_ratio_.items()},
                   "breakdown_plot_run": run_id or "not logged"}  # fmt: skip
    report.details = {"configurations": res.to_dicts(), "per_gpu_mode": means.to_dicts(),
                      "per_op_kind": kinds_frame.to_dicts(), "covered_kinds": sorted(model.covered_kinds),
                      "per_op_type_breakdown": {name: perop_breakdown(kinds_frame, kinds).to_dicts()
                                                for name, kinds in PEROP_KINDS.items()}}  # fmt: skip
    log_bench(report)
    report.emit(json_path)
