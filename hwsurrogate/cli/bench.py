"""``hws bench``: benchmarks against published results."""

from __future__ import annotations

import click

from hwsurrogate.cli.lazy import LazyGroup

B = "hwsurrogate.benchmarks"

BENCH: dict[str, tuple[str, str]] = {
    "gemm-gpperf": (f"{B}.gemm:bench_gpperf", "GPPerf RTX 4070: random 80/20 and shape split."),
    "gemm-neusight": (
        f"{B}.gemm:bench_neusight",
        "NeuSight: train on 5 GPUs, test on H100/L4/A100-80GB.",
    ),
    "gemm-aiconfigurator": (
        f"{B}.gemm:bench_aiconfigurator",
        "aiconfigurator: per GPU, split by (n,k).",
    ),
    "gemm-features": (
        f"{B}.gemm:bench_gemm_features",
        "Speed of the GEMM feature pipeline (100k queries).",
    ),
    "fewshot-gemm": (
        f"{B}.gemm:bench_fewshot_gemm",
        "GEMM on unseen GPUs with 0-100 measurements.",
    ),
    "fpga-hlsyn": (f"{B}.fpga:bench_hlsyn", "HLSyn protocol: held-out kernels, RMSE and validity F1."),
    "fpga-power": (f"{B}.fpga:bench_power", "PowerGear: leave-one-kernel-out power error."),
    "fpga-hls4ml": (f"{B}.fpga:bench_hls4ml", "wa-hls4ml records and dense sweep: SMAPE per target."),
    "latency-single": (
        f"{B}.latency:bench_latency_single",
        "Per-device NB201/FBNet latency, HELP's test set.",
    ),
    "fewshot-help": (
        f"{B}.fewshot:bench_fewshot_help",
        "HELP protocol few-shot latency on unseen devices.",
    ),
    "fewshot-tasks": (
        f"{B}.fewshot:bench_fewshot_tasks",
        "NASFLAT/MultiPredict task suite (N1-N4, NA, F1-F4, FA).",
    ),
    "fewshot-live": (
        f"{B}.fewshot:bench_fewshot_live",
        "This machine as the unseen device (live measurements).",
    ),
    "fewshot-gnn": (
        f"{B}.fewshot:bench_fewshot_gnn",
        "Ablations of the meta-trained GNN encoder (validation devices, MLflow).",
    ),
}


@click.group(cls=LazyGroup, lazy=BENCH)
def bench() -> None:
    """Run a benchmark and print our metric beside the published anchor.

    Every benchmark takes --json FILE to save all metrics and states its wall time.
    """
