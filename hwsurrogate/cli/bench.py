"""``hws bench``: benchmarks against published results.

The benchmark commands live in :mod:`hwsurrogate.benchmarks` (``gemm``, ``fpga``, ``latency``,
``fewshot``). Importing those modules loads scikit-learn, torch and MLflow (2 s and more), so
each is imported by a loader below only when one of its benchmarks runs; ``hws bench --help``
lists them from the one-line helps here.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from hwsurrogate.cli.lazy import LazyGroup, Loader

__all__ = ["bench"]


def _gemm() -> dict[str, click.Command]:
    from hwsurrogate.benchmarks import gemm, gemm_fewshot

    commands = (gemm.bench_gpperf, gemm.bench_neusight, gemm.bench_aiconfigurator, gemm.bench_gemm_features,
                gemm_fewshot.bench_fewshot_gemm)  # fmt: skip
    return {c.name or "": c for c in commands}


def _fpga() -> dict[str, click.Command]:
    from hwsurrogate.benchmarks import fpga, fpga_fewshot, fpga_frontend

    commands = (fpga.bench_hlsyn, fpga.bench_power, fpga.bench_hls4ml, fpga_frontend.bench_hls4ml_frontend,
                fpga_fewshot.bench_hlsyn_fewshot)  # fmt: skip
    return {c.name or "": c for c in commands}


def _latency() -> dict[str, click.Command]:
    from hwsurrogate.benchmarks import latency

    return {c.name or "": c for c in (latency.bench_latency_single,)}


def _fewshot() -> dict[str, click.Command]:
    from hwsurrogate.benchmarks import fewshot, fewshot_gnn, fewshot_live

    commands = (fewshot.bench_fewshot_help, fewshot.bench_fewshot_tasks, fewshot_live.bench_fewshot_live,
                fewshot_gnn.bench_fewshot_gnn)  # fmt: skip
    return {c.name or "": c for c in commands}


def _stories() -> dict[str, click.Command]:
    from hwsurrogate.benchmarks import stories

    return {"stories": stories.bench_stories}


def _model() -> dict[str, click.Command]:
    from hwsurrogate.benchmarks import model_live, model_neusight

    return {c.name or "": c for c in (model_neusight.bench_model_neusight, model_live.bench_model_live)}


def _store() -> dict[str, click.Command]:
    from hwsurrogate.benchmarks import store_readers

    return {"store-readers": store_readers.bench_store_readers}


#: benchmark name -> (loader of its module's commands, one-line help), in the order listed
BENCHMARKS = {
    "gemm-gpperf": (_gemm, "GPPerf RTX 4070: random 80/20 and shape split."),
    "gemm-neusight": (_gemm, "NeuSight: train on 5 GPUs, test on H100/L4/A100-80GB."),
    "gemm-aiconfigurator": (_gemm, "aiconfigurator: per GPU, split by (n,k)."),
    "gemm-features": (_gemm, "Speed of the GEMM feature pipeline (100k queries)."),
    "fewshot-gemm": (_gemm, "GEMM on unseen GPUs with 0-100 measurements."),
    "fpga-hlsyn": (_fpga, "HLSyn protocol: held-out kernels, RMSE and validity F1."),
    "fpga-power": (_fpga, "PowerGear: leave-one-kernel-out power error."),
    "fpga-hls4ml": (_fpga, "wa-hls4ml records and dense sweep: SMAPE per target."),
    "fpga-hlsyn-fewshot": (_fpga, "HLSyn adaptation: 5/10/20 designs per held-out kernel, 30% holdout, 5 repeats."),
    "fpga-hls4ml-frontend": (_fpga, "wa-hls4ml records rebuilt in PyTorch through hls4ml: consistency, SMAPE."),
    "latency-single": (_latency, "Per-device NB201/FBNet latency, HELP's test set."),
    "fewshot-help": (_fewshot, "HELP protocol few-shot latency on unseen devices."),
    "fewshot-tasks": (_fewshot, "NASFLAT/MultiPredict task suite (N1-N4, NA, F1-F4, FA)."),
    "fewshot-live": (_fewshot, "This machine as the unseen device (live measurements)."),
    "fewshot-gnn": (_fewshot, "Ablations of the meta-trained GNN encoder (validation devices, MLflow)."),
    "stories": (_stories, "Every README user story run as written; answers checked against measurements."),
    "model-neusight": (_model, "NeuSight: whole transformers on unseen GPUs from operator surrogates."),
    "model-live": (_model, "This CPU as the device: whole models never fitted on, measured and predicted."),
    "store-readers": (_store, "hws serve, 16 clients downloading 50k-row pages: RSS, /healthz p99."),
}


@click.group(cls=LazyGroup, short_help="Run a benchmark against published results and print the table.")
def bench() -> None:
    """Run a benchmark and print our metric beside the published anchor.

    Every benchmark takes --json FILE to save all metrics and states its wall time.
    """


def _loader(load: Callable[[], dict[str, click.Command]], name: str) -> Loader:
    """Loader of benchmark ``name``: imports its module (through ``load``) and picks the command."""
    return lambda: load()[name]


for _name, (_load, _help) in BENCHMARKS.items():
    bench.add_lazy_command(_name, _loader(_load, _name), _help)
