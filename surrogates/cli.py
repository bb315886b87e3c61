"""``hws train``, ``hws bench``, ``hws adapt`` and ``hws predict``.

Each subcommand lives in the module that owns the model; this file only lists them so that
``--help`` is fast and modules load on first use.
"""

from __future__ import annotations

import click

from hwsurrogate.cli import LazyGroup

S = "hwsurrogate.surrogates"

TRAIN: dict[str, tuple[str, str]] = {
    "gemm": (f"{S}.train_gemm:train_gemm", "GEMM runtime/power/energy trees on the gemm table."),
    "fpga-hls4ml": (f"{S}.train_fpga:train_hls4ml", "hls4ml resource/latency model on the fpga table."),
    "fpga-hlsyn": (
        f"{S}.train_fpga:train_hlsyn",
        "HLSyn/HARP HLS-design model (cycles, resources, validity).",
    ),
    "latency": (
        f"{S}.train_latency:train_latency",
        "Per-device architecture latency predictor (tree and GNN).",
    ),
    "fewshot": (f"{S}.fewshot_cli:train_fewshot", "Meta-train the device-adaptive latency predictor."),
}

BENCH: dict[str, tuple[str, str]] = {
    "gemm-gpperf": (f"{S}.bench_gemm:bench_gpperf", "GPPerf RTX 4070: random 80/20 and shape split."),
    "gemm-neusight": (
        f"{S}.bench_gemm:bench_neusight",
        "NeuSight: train on 5 GPUs, test on H100/L4/A100-80GB.",
    ),
    "gemm-aiconfigurator": (
        f"{S}.bench_gemm:bench_aiconfigurator",
        "aiconfigurator: per GPU, split by (n,k).",
    ),
    "gemm-features": (
        f"{S}.bench_gemm:bench_gemm_features",
        "Speed of the GEMM feature pipeline (100k queries).",
    ),
    "fewshot-gemm": (
        f"{S}.bench_gemm:bench_fewshot_gemm",
        "GEMM on unseen GPUs with 0-100 measurements.",
    ),
    "fpga-hlsyn": (f"{S}.bench_fpga:bench_hlsyn", "HLSyn protocol: held-out kernels, RMSE and validity F1."),
    "fpga-power": (f"{S}.bench_fpga:bench_power", "PowerGear: leave-one-kernel-out power error."),
    "fpga-hls4ml": (f"{S}.bench_fpga:bench_hls4ml", "wa-hls4ml records and dense sweep: SMAPE per target."),
    "latency-single": (
        f"{S}.bench_latency:bench_latency_single",
        "Per-device NB201/FBNet latency, HELP's test set.",
    ),
    "fewshot-help": (
        f"{S}.bench_fewshot:bench_fewshot_help",
        "HELP protocol few-shot latency on unseen devices.",
    ),
    "fewshot-tasks": (
        f"{S}.bench_fewshot:bench_fewshot_tasks",
        "NASFLAT/MultiPredict task suite (N1-N4, NA, F1-F4, FA).",
    ),
    "fewshot-live": (
        f"{S}.bench_fewshot:bench_fewshot_live",
        "This machine as the unseen device (live measurements).",
    ),
    "fewshot-gnn": (
        f"{S}.bench_fewshot:bench_fewshot_gnn",
        "Ablations of the meta-trained GNN encoder (validation devices, MLflow).",
    ),
}

PREDICT: dict[str, tuple[str, str]] = {
    "gemm": (f"{S}.predict_cli:predict_gemm", "Runtime/power/energy of GEMM shapes on a device."),
    "latency": (
        f"{S}.predict_latency_cli:predict_latency",
        "Latency of architectures on a known or adapted device.",
    ),
    "fpga": (f"{S}.predict_cli:predict_fpga", "Resources and cycles of an hls4ml model or HLS design."),
    "gemm-shots": (
        f"{S}.gemm_adapt:suggest_shapes_cli",
        "Which GEMM shapes to measure on a new GPU before hws adapt.",
    ),
}


@click.group(cls=LazyGroup, lazy=TRAIN)
def train() -> None:
    """Train a surrogate on the store, log it to MLflow and register it.

    The registry alias `champion` moves to the new version only when it beats the current
    champion on the same test split.
    """


@click.group(cls=LazyGroup, lazy=BENCH)
def bench() -> None:
    """Run a benchmark and print our metric beside the published anchor.

    Every benchmark takes --json FILE to save all metrics and states its wall time.
    """


@click.group(cls=LazyGroup, lazy=PREDICT)
def predict() -> None:
    """Predict from the command line with the registered champion models."""


@click.command()
@click.option("--task", type=click.Choice(["latency", "gemm"]), default="latency", show_default=True)
@click.option("--device", required=True, help="Name of the new device (must not collide with a known one).")
@click.option(
    "--measurements",
    required=True,
    help="CSV/parquet file of measurements, or 'store' to use the device's rows in the store.",
)
@click.option(
    "--version",
    default=None,
    help="Registered version of the base model to adapt (latency only; default: the champion).",
)
@click.pass_context
def adapt(ctx: click.Context, task: str, device: str, measurements: str, version: str | None) -> None:
    """Adapt a predictor to an unseen device from a handful of measurements (under 2 s).

    \b
    latency: columns space, arch_key, latency_ms (10 HELP reference archs + a few more is best)
    gemm:    columns op, m, n, k, batch, dtype, runtime_ms
    The adapted device is remembered with the model version it was adapted from.
    """
    import importlib

    module, attr = {
        "latency": (f"{S}.fewshot_cli", "adapt_latency"),
        "gemm": (f"{S}.gemm_adapt", "adapt_gemm_cli"),
    }[task]
    kwargs = {"device": device, "measurements": measurements}
    if version is not None:
        if task != "latency":
            raise click.BadParameter(
                f"--version is supported for --task latency only, not {task!r}", param_hint="--version"
            )
        kwargs["version"] = version
    ctx.invoke(getattr(importlib.import_module(module), attr), **kwargs)
