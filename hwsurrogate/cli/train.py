"""``hws train``: train a surrogate, log it to MLflow and register it."""

from __future__ import annotations

import click

from hwsurrogate.cli.lazy import LazyGroup

S = "hwsurrogate.surrogates"

TRAIN: dict[str, tuple[str, str]] = {
    "gemm": (f"{S}.training.gemm:train_gemm", "GEMM runtime/power/energy trees on the gemm table."),
    "fpga-hls4ml": (f"{S}.training.fpga:train_hls4ml", "hls4ml resource/latency model on the fpga table."),
    "fpga-hlsyn": (
        f"{S}.training.fpga:train_hlsyn",
        "HLSyn/HARP HLS-design model (cycles, resources, validity).",
    ),
    "latency": (
        f"{S}.training.latency:train_latency",
        "Per-device architecture latency predictor (tree and GNN).",
    ),
    "fewshot": (f"{S}.fewshot.cli:train_fewshot", "Meta-train the device-adaptive latency predictor."),
}


@click.group(cls=LazyGroup, lazy=TRAIN)
def train() -> None:
    """Train a surrogate on the store, log it to MLflow and register it.

    The registry alias `champion` moves to the new version only when it beats the current
    champion on the same test split.
    """
