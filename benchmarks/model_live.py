"""``hws bench model-live``: this CPU as the device; whole models never used for fitting.

Protocol (nn-Meter's setting, on the machine running the benchmark):

1. **Collect** operator latency here (:func:`~hwsurrogate.datasets.collectors.ops.collect_ops`:
   ~675 random-shape operators of every kind, ``--threads`` threads, eager torch).
2. **Fit** the operator surrogate (:class:`~hwsurrogate.surrogates.models.ops.OperatorLatencyModel`)
   on those rows only: a per-device fit. The CPU's operators run in another regime than the
   GPUs of NeuSight's data (no launch overhead, caches, one core), so rows of other devices would
   only blur its trees; the device's roofline (best GFLOP/s and GB/s) comes from the same run.
3. **Calibrate** the composition on 16 random small networks (plain CNN, MLP and transformer
   stacks drawn from the seed, none of the benchmark's models). Each operator of theirs timed in
   place (:func:`~hwsurrogate.datasets.collectors.ops.collect_inplace_ops`) joins the fit as a
   trace row, and gives the operator model its model-context factors (one per (kind, phase), or
   per (kind, phase, size bucket): ``OperatorLatencyModel._context_scales``, the mechanism of
   NeuSight's training GPUs). Which kinds and buckets get factors is ``OperatorLatencyModel``'s
   CPU default (:data:`DEFAULT_VARIANT`), chosen among :data:`CONTEXT_VARIANTS` by
   leave-one-calibration-model-out error; every run reports that error and the 14 models' error
   of each variant (ablation). Their end-to-end times give
   the per-operator launch gap (:func:`~hwsurrogate.surrogates.wholemodel.fit_gap`, a median).
4. **Build** >= 12 models in code (ResNet-, MobileNet- and VGG-like CNNs, a BERT-like encoder, a
   GPT-like decoder, an MLP; several batch sizes) with shapes the sweep never drew on purpose;
   **measure** each end to end (eager forward under ``torch.inference_mode``, median of samples),
   and **predict** it: its operator table from the torch.fx front end on meta tensors, summed
   by :func:`~hwsurrogate.surrogates.wholemodel.predict_model_latency`.

Error = |predicted - measured| / measured per model. Targets: >= 90% of configurations within
+-10%, mean error <= 5%, whole benchmark <= 15 minutes. The per-op-type breakdown (predicted ms
per op kind and model, with the measured total) is logged to MLflow as a PNG.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from hwsurrogate.benchmarks.report import BenchReport, json_option, log_bench, store_option

__all__ = [
    "CONTEXT_VARIANTS",
    "DEFAULT_VARIANT",
    "MODEL_CASES",
    "bench_model_live",
    "build_cases",
    "context_variant_model",
]

_VECTOR = ("elementwise", "activation", "softmax", "layernorm", "reduction", "copy", "embedding")
_NEUSIGHT = ("elementwise", "activation", "softmax", "layernorm")
_ALL = (*_VECTOR, "conv2d", "linear", "bmm")
#: output sizes (bytes moved) splitting a kind's context factor: under 256 KB, 256 KB-4 MB, over
#: 4 MB (where the diagnosis saw in-place minus alone grow: ~12 us per call, then ~30-40 us per MB)
_BUCKETS = (2.0**18, 2.0**22)
#: the CPU default of ``OperatorLatencyModel`` (``CPU_CONTEXT_KINDS``): the lowest
#: leave-one-calibration-model-out error averaged over three runs; each run reports them again
DEFAULT_VARIANT = "factors only, vector kinds"
#: model-context variants of the operator fit: name -> (the in-place calibration rows: "no" / "in
#: trees" (they also train the trees, as NeuSight's traces do) / "factors only"; context kinds;
#: context bytes edges); None: ``OperatorLatencyModel``'s defaults for this device (the CPU ones)
CONTEXT_VARIANTS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]] | None] = {
    "sweep only": ("no", (), ()),
    "in trees, no factors": ("in trees", (), ()),
    "in trees, NeuSight's kinds": ("in trees", _NEUSIGHT, ()),
    "in trees, all kinds": ("in trees", _ALL, ()),
    "in trees, all kinds, size buckets": ("in trees", _ALL, _BUCKETS),
    "factors only, NeuSight's kinds": ("factors only", _NEUSIGHT, ()),
    "factors only, all kinds": ("factors only", _ALL, ()),
    "factors only, vector kinds, size buckets": ("factors only", _VECTOR, _BUCKETS),
    "factors only, all kinds, size buckets": ("factors only", _ALL, _BUCKETS),
    DEFAULT_VARIANT: None,
}


def context_variant_model(variant: str, ops: Any, inplace: Any, devices: Any) -> Any:
    """The operator model of one :data:`CONTEXT_VARIANTS` entry, fitted on the sweep (+ in-place rows)."""
    import polars as pl

    from hwsurrogate.surrogates.models.ops import OperatorLatencyModel

    spec = CONTEXT_VARIANTS[variant]
    if spec is None:  # the defaults, as `hws train ops` fits the same rows
        return OperatorLatencyModel().fit(pl.concat([ops, inplace], how="diagonal_relaxed"), devices)
    use, kinds, edges = spec
    rows = pl.concat([ops, inplace], how="diagonal_relaxed") if use != "no" and inplace.height else ops
    return OperatorLatencyModel(
        context_kinds=kinds, context_bytes_edges=edges, trace_in_trees=use == "in trees"
    ).fit(rows, devices)


@dataclass(frozen=True)
class _Case:
    name: str
    family: str
    build: Callable[[], Any]
    input_shape: tuple[int, ...]
    input_dtype: str = "fp32"
    seqlen: int | None = None
    num_layer: int | None = None


# ----------------------------------------------------------------------------- the models
def _resnet(width: int = 24, blocks: tuple[int, ...] = (2, 2, 2), classes: int = 100) -> Any:
    import torch.nn as nn

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )
            self.act = nn.ReLU()

        def forward(self, x: Any) -> Any:
            return self.act(self.b2(self.c2(self.act(self.b1(self.c1(x))))) + self.short(x))

    layers: list[Any] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for i, n in enumerate(blocks):
        cout = width * 2**i
        for j in range(n):
            layers.append(Basic(cin, cout, 2 if (j == 0 and i > 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def _vgg(widths: tuple[int, ...] = (48, 96, 192), classes: int = 100) -> Any:
    import torch.nn as nn

    layers: list[Any] = []
    cin = 3
    for w in widths:
        layers += [
            nn.Conv2d(cin, w, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 384), nn.ReLU(), nn.Linear(384, classes)]
    return nn.Sequential(*layers)


def _mobilenet(width: int = 24, stages: tuple[int, ...] = (1, 2, 2, 1), classes: int = 100) -> Any:
    import torch.nn as nn

    def sep(cin: int, cout: int, stride: int) -> list[Any]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]  # fmt: skip

    layers: list[Any] = [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6()]
    cin = width
    for i, n in enumerate(stages):
        cout = width * 2 ** (i + 1)
        for j in range(n):
            layers += sep(cin, cout, 2 if j == 0 else 1)
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def _mlp(widths: tuple[int, ...] = (784, 1536, 1536, 768, 10)) -> Any:
    import torch.nn as nn

    layers: list[Any] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def _transformer(cfg: dict[str, Any]) -> Any:
    from hwsurrogate.datasets.frontends.hf_config import CompactTransformer, TransformerConfig

    return CompactTransformer(TransformerConfig(cfg, "benchmark config"))


_BERT = {"model_type": "bert", "hidden_size": 320, "num_hidden_layers": 4, "num_attention_heads": 5,
         "intermediate_size": 1280, "vocab_size": 8000, "max_position_embeddings": 512, "type_vocab_size": 2,
         "hidden_act": "gelu"}  # fmt: skip
_GPT = {"model_type": "gpt2", "n_embd": 384, "n_layer": 4, "n_head": 6, "vocab_size": 6000, "n_positions": 512,
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"]}  # fmt: skip


def build_cases(quick: bool = False) -> list[_Case]:
    """The benchmark's models: (family, batch) configurations, >= 12 unless ``quick``."""
    cases = [
        _Case("mlp-b1", "MLP", _mlp, (1, 784)),
        _Case("mlp-b64", "MLP", _mlp, (64, 784)),
        _Case("mlp-b256", "MLP", _mlp, (256, 784)),
        _Case("resnet-b1", "ResNet", _resnet, (1, 3, 40, 40)),
        _Case("resnet-b8", "ResNet", _resnet, (8, 3, 40, 40)),
        _Case("vgg-b1", "VGG", _vgg, (1, 3, 48, 48)),
        _Case("vgg-b4", "VGG", _vgg, (4, 3, 48, 48)),
        _Case("mobilenet-b1", "MobileNet", _mobilenet, (1, 3, 96, 96)),
        _Case("mobilenet-b8", "MobileNet", _mobilenet, (8, 3, 96, 96)),
        _Case("bert-b1-s96", "BERT", lambda: _transformer(_BERT), (1, 96), "int64", 96, 4),
        _Case("bert-b4-s160", "BERT", lambda: _transformer(_BERT), (4, 160), "int64", 160, 4),
        _Case("gpt-b1-s128", "GPT", lambda: _transformer(_GPT), (1, 128), "int64", 128, 4),
        _Case("gpt-b2-s224", "GPT", lambda: _transformer(_GPT), (2, 224), "int64", 224, 4),
        _Case("resnet-b32", "ResNet", _resnet, (32, 3, 40, 40)),
    ]
    return (
        [c for c in cases if c.name in ("mlp-b64", "resnet-b1", "bert-b1-s96", "gpt-b1-s128")]
        if quick
        else cases
    )


MODEL_CASES = tuple(c.name for c in build_cases())


# ----------------------------------------------------------------------------- the plot
def _breakdown_png(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = sorted({k for r in results for k in r["breakdown"]})
    names = [r["model"] for r in results]
    fig, ax = plt.subplots(figsize=(max(8, len(names) * 0.8), 5))
    bottom = np.zeros(len(names))
    for kind in kinds:
        share = np.array([r["breakdown"].get(kind, {}).get("ms", 0.0) / r["measured_ms"] for r in results])
        ax.bar(names, share * 100, bottom=bottom, label=kind)
        bottom += share * 100
    ax.axhline(100, color="black", lw=0.8, ls="--", label="measured")
    ax.set_ylabel("predicted ms by op kind, % of measured")
    ax.set_title("hws bench model-live: per-op-type breakdown of the predictions")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_png(report: BenchReport, results: list[dict[str, Any]]) -> None:
    import tempfile
    from pathlib import Path

    try:
        import mlflow

        from hwsurrogate.surrogates.registry.tracking import start_run

        with tempfile.TemporaryDirectory() as tmp:
            png = str(Path(tmp) / "model_live_breakdown.png")
            _breakdown_png(results, png)
            with start_run("bench", run_name=f"{report.benchmark}-breakdown", benchmark=report.benchmark):
                mlflow.log_artifact(png)
                mlflow.log_dict(results, "per_model.json")
        report.details["breakdown_png"] = "MLflow experiment 'bench', artifact model_live_breakdown.png"
    except Exception as exc:  # tracking must never sink a benchmark
        click.echo(f"(MLflow breakdown plot skipped: {exc})", err=True)


# ----------------------------------------------------------------------------- the command
@click.command("model-live")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads for the operators and the models (the device is local/<host>-cpu-t<N>).")  # fmt: skip
@click.option("--scale", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Operator sweep size (1.0: ~675 operators).")  # fmt: skip
@click.option("--quick", is_flag=True, help="4 models, a quarter of the sweep, shorter timing (a smoke run).")
@click.option(
    "--save", is_flag=True, help="Also write the collected ops, devices and model_latency rows to the store."
)
@click.option("--seed", default=0, show_default=True, help="Seed of the operator sweep.")
@click.option("--timer", type=click.Choice(["auto", "wall", "thread-cpu"]), default="auto", show_default=True,
              help="auto: thread-cpu with --threads 1 (this thread's CPU time: other jobs on a shared machine "
                   "do not inflate it), wall otherwise.")  # fmt: skip
@store_option
@json_option("model-live")
def bench_model_live(threads: int, scale: float, quick: bool, save: bool, seed: int, timer: str,
                     store_root: str | None, json_path: str | None) -> None:  # fmt: skip
    """This CPU as the device: collect operators, fit, predict >= 12 unseen whole models, compare."""
    import numpy as np
    import polars as pl
    import torch

    from hwsurrogate.datasets.collectors.ops import (
        ModelCase,
        calibration_cases,
        collect_inplace_ops,
        collect_model_latency,
        collect_ops,
    )
    from hwsurrogate.datasets.frontends.torch_fx import trace_module
    from hwsurrogate.surrogates.wholemodel import fit_gap, predict_model_latency

    report = BenchReport(
        "model-live",
    )
    load_start = os.getloadavg()[0]
    if timer == "auto":
        timer = "thread-cpu" if threads == 1 else "wall"
    if timer == "thread-cpu" and threads != 1:
        raise click.BadParameter(
            "thread-cpu counts one thread's CPU time: use it with --threads 1", param_hint="--timer"
        )
    clock = timer.replace("-", "_")
    report.protocol = (
        f"this CPU ({threads} thread(s), {timer} timer): operator sweep collected here, per-device fit; "
        "whole models built in the benchmark (never fitted on), measured end to end and predicted; "
        "the context variant, the context factors and the launch gap come from the calibration models only"
    )
    t0 = time.perf_counter()
    sweep_scale = scale * (0.25 if quick else 1.0)
    collected = collect_ops(
        threads=threads, scale=sweep_scale, seed=seed, min_time_s=0.03 if quick else 0.05, timer=clock
    )
    t_collect = time.perf_counter() - t0
    ops, devices = collected.ops, collected.device
    device = devices.row(0, named=True)
    dev = dict(device)

    def tables_of(items: list[tuple[Any, tuple[int, ...], str, str]]) -> list[Any]:
        return [
            trace_module(m, [shape], input_dtypes=[dtype], source=name) for m, shape, dtype, name in items
        ]

    def op_sums(model: Any, tables: list[Any]) -> list[float]:
        return [predict_model_latency(t, lambda x: model.predict_ops(x, dev), mode="inference").latency_ms
                for t in tables]  # fmt: skip

    # calibration: random small networks (not the benchmark's), timed end to end and op by op in
    # place; they choose the context variant, give the context factors and fit the launch gap
    t3 = time.perf_counter()
    calib = calibration_cases(6 if quick else 16, seed=seed + 1)
    calib_meas = collect_model_latency(calib, threads=threads, min_time_s=0.2 if quick else 0.3, timer=clock)
    calib_ms = calib_meas["latency_ms"].to_list()
    inplace = collect_inplace_ops(calib, threads=threads, repeats=9 if quick else 15, timer=clock)
    calib_tables = tables_of([(c.module, c.input_shape, c.input_dtype, c.name) for c in calib])
    calls = [float(t["count"].sum()) for t in calib_tables]
    loco: dict[str, float] = {}
    t_fit = 0.0
    for variant in CONTEXT_VARIANTS:
        errs = []
        for j, case in enumerate(calib):  # leave one calibration model out: fit, gap, then score it
            t1 = time.perf_counter()
            m = context_variant_model(variant, ops, inplace.filter(pl.col("model") != case.name), devices)
            t_fit += time.perf_counter() - t1
            sums = op_sums(m, calib_tables)
            rest = [i for i in range(len(calib)) if i != j]
            g = fit_gap([sums[i] for i in rest], [calls[i] for i in rest], [calib_ms[i] for i in rest])
            errs.append(abs(sums[j] + calls[j] * g - calib_ms[j]) / calib_ms[j] * 100)
        loco[variant] = float(np.mean(errs))
    loco_pick = min(CONTEXT_VARIANTS, key=lambda v: loco[v])  # first listed (simplest) wins a tie
    chosen = DEFAULT_VARIANT
    fitted = {v: context_variant_model(v, ops, inplace, devices) for v in CONTEXT_VARIANTS}
    calib_sums = {v: op_sums(m, calib_tables) for v, m in fitted.items()}
    gaps = {v: fit_gap(calib_sums[v], calls, calib_ms) for v in CONTEXT_VARIANTS}
    model, gap, sums = fitted[chosen], gaps[chosen], calib_sums[chosen]
    calib_err = [abs(p + n * gap - r) / r * 100 for p, n, r in zip(sums, calls, calib_ms, strict=True)]
    t_calib = time.perf_counter() - t3

    cases = build_cases(quick)
    torch.manual_seed(0)
    real = [ModelCase(c.name, c.build(), c.input_shape, c.input_shape[0], c.seqlen, c.input_dtype, c.num_layer)
            for c in cases]  # fmt: skip
    t2 = time.perf_counter()
    measured = collect_model_latency(real, threads=threads, min_time_s=0.3 if quick else 0.6, timer=clock)
    t_measure = time.perf_counter() - t2
    del real
    results: list[dict[str, Any]] = []
    errors, errors_no_gap = [], []
    with torch.device("meta"):
        eval_tables = tables_of([(c.build(), c.input_shape, c.input_dtype, c.name) for c in cases])
    truth = measured["latency_ms"].to_numpy()
    for variant, m in fitted.items():  # every variant on the same sweep and ground truth (ablation)
        pred_v = np.array(op_sums(m, eval_tables)) + gaps[variant] * np.array(
            [t["count"].sum() for t in eval_tables]
        )
        err_v = np.abs(pred_v - truth) / truth * 100
        tag = f"context variant '{variant}'" + (" (default)" if variant == chosen else " (ablation)")
        report.add("configurations within +-10% (%)", f"all, {tag}", float((err_v <= 10.0).mean() * 100),
                   direction=">=", n=len(err_v))  # fmt: skip
        report.add("mean latency error %", f"all, {tag}", float(err_v.mean()), n=len(err_v),
                   note=f"leave-one-calibration-model-out {loco[variant]:.1f} %, gap {gaps[variant] * 1e3:.1f} us")  # fmt: skip
    for case, meas, table in zip(cases, measured.iter_rows(named=True), eval_tables, strict=True):
        pred = predict_model_latency(table, lambda t: model.predict_ops(t, dev), mode="inference", gap_ms=gap)
        no_gap = pred.latency_ms - gap * float(table["count"].sum())
        err = abs(pred.latency_ms - meas["latency_ms"]) / meas["latency_ms"] * 100
        errors.append(err)
        errors_no_gap.append(abs(no_gap - meas["latency_ms"]) / meas["latency_ms"] * 100)
        results.append({"model": case.name, "family": case.family, "input_shape": list(case.input_shape),
                        "measured_ms": meas["latency_ms"], "predicted_ms": pred.latency_ms, "error_pct": err,
                        "predicted_no_gap_ms": no_gap,
                        "unmodeled_share": pred.unmodeled_share, "unmodeled_ops": pred.unmodeled_ops,
                        "n_ops": table.height, "breakdown": pred.breakdown})  # fmt: skip
        report.add("latency error %", case.name, err, target=10.0,
                   note=f"measured {meas['latency_ms']:.3g} ms, predicted {pred.latency_ms:.3g} ms")  # fmt: skip
    # the same models timed again with the same settings, seconds later: how far two measurements
    # of one model differ on this machine bounds how any prediction can score against either
    torch.manual_seed(0)
    again = [ModelCase(c.name, c.build(), c.input_shape, c.input_shape[0], c.seqlen, c.input_dtype, c.num_layer)
             for c in cases]  # fmt: skip
    repeat = collect_model_latency(again, threads=threads, min_time_s=0.3 if quick else 0.6, timer=clock)
    del again
    rep = repeat["latency_ms"].to_numpy()
    drift = np.abs(rep - truth) / truth * 100
    report.add("repeat measurement within +-10% of the first (%)", "all", float((drift <= 10.0).mean() * 100),
               direction=">=", n=len(drift),
               note="the same models timed again right after the predictions: the ground truth's own spread on "
                    f"this machine (worst {cases[int(drift.argmax())].name} {drift.max():.1f} %)")  # fmt: skip
    report.add("mean |repeat - first| / first %", "all", float(drift.mean()), n=len(drift))
    predicted = np.array([r["predicted_ms"] for r in results])
    vs_repeat = np.abs(predicted - rep) / rep * 100
    report.add("configurations within +-10% (%)", "all, scored against the repeat measurement",
               float((vs_repeat <= 10.0).mean() * 100), direction=">=", n=len(vs_repeat),
               note=f"mean error {vs_repeat.mean():.1f} %")  # fmt: skip
    for r, second in zip(results, rep, strict=True):
        r["repeat_measured_ms"] = float(second)
    errs = np.array(errors)
    within = float((errs <= 10.0).mean() * 100)
    report.add("configurations within +-10% (%)", "all", within, target=90.0, direction=">=", n=len(errs),
               anchor=99.0, anchor_source="nn-Meter (MobiSys'21), Pixel4 CPU, 26k models")  # fmt: skip
    report.add("mean latency error %", "all", float(errs.mean()), target=5.0, n=len(errs))
    no_gap_errs = np.array(errors_no_gap)
    report.add("configurations within +-10% (%)", "all, no launch gap (ablation)",
               float((no_gap_errs <= 10.0).mean() * 100), direction=">=", n=len(errs))  # fmt: skip
    report.add(
        "mean latency error %", "all, no launch gap (ablation)", float(no_gap_errs.mean()), n=len(errs)
    )
    report.add("mean latency error %", "calibration models (fitting data)", float(np.mean(calib_err)),
               n=len(calib_err), note=f"fitted launch gap {gap * 1e3:.2f} us per operator call")  # fmt: skip
    for family in sorted({c.family for c in cases}):
        fam = [r["error_pct"] for r in results if r["family"] == family]
        report.add("mean latency error %", family, float(np.mean(fam)), n=len(fam))
    if save:
        from hwsurrogate.datasets.collectors.ops import MODEL_SOURCE, SOURCE
        from hwsurrogate.datasets.store import DatasetStore

        store = DatasetStore(store_root)
        part = device["device_id"].split("/", 1)[1]
        store.append("ops", pl.concat([ops, inplace], how="diagonal_relaxed"), partition=f"{SOURCE}:{part}")
        store.replace("devices", devices, partition=f"{SOURCE}:{part}")
        store.append("model_latency", measured, partition=f"{MODEL_SOURCE}:{part}")
    wall = time.perf_counter() - report._t0
    report.add("wall time s", "whole benchmark", wall, target=900.0)
    report.data = {
        "device": device["device_id"],
        "device_name": device["name"],
        "roofline": f"{device['peak_fp32_gflops']:.1f} GFLOP/s, {device['mem_bw_gbs']:.1f} GB/s (measured here)",
        "operators collected": ops.height,
        "models": len(cases),
        "launch gap": f"{gap * 1e3:.2f} us per operator call (fitted on {len(calib)} calibration models)",
        "context variant": f"{chosen} (the CPU default; leave-one-calibration-model-out {loco[chosen]:.1f} % "
        f"mean error; this run's lowest: {loco_pick}, {loco[loco_pick]:.1f} %)",
        "context factors": ", ".join(
            f"{'/'.join(map(str, k))} {v:.2f}" for k, v in sorted(model.context_scale_.items(), key=str)
        )
        or "none",
        "seconds": f"collect {t_collect:.0f}, fit {t_fit:.0f}, calibrate {t_calib:.0f}, measure models {t_measure:.0f} "
        "(and once more for the repeat)",
    }
    report.details = {"per_model": results, "threads": threads, "timer": clock, "gap_ms": gap,
                      "context_variant": chosen, "context_loco_pick": loco_pick, "context_loco_mean_error_pct": loco,
                      "context_scale": {"/".join(map(str, k)): v for k, v in model.context_scale_.items()},
                      "inplace_rows": inplace.height,
                      "calibration": [{"model": c.name, "input_shape": list(c.input_shape), "measured_ms": r,
                                       "predicted_no_gap_ms": p, "calls": n}
                                      for c, p, n, r in zip(calib, sums, calls, calib_meas["latency_ms"], strict=True)], "scale": sweep_scale, "quick": quick, "seed": seed,
                      "loadavg_1min_start_end": [load_start, os.getloadavg()[0]], "cpus": os.cpu_count(),
                      "load_note": "a load average near or above the CPU count means other jobs shared the cores: "
                                   "timings (measured and collected) are noisy"}  # fmt: skip
    _log_png(report, results)
    log_bench(report)
    report.emit(json_path)
