"""``hws collect``: measure on this machine and write rows to the store (or push them to a service)."""

from __future__ import annotations

import click

from hwsurrogate.cli.lazy import LazyGroup

C = "hwsurrogate.datasets.collectors"

COLLECT: dict[str, tuple[str, str]] = {
    "gemm": (
        f"{C}.gemm:collect_gemm_cmd",
        "Time GEMM shapes (numpy/torch on CPU, torch on CUDA) with power/energy.",
    ),
    "latency": (
        f"{C}.dnn_latency:collect_latency_cmd",
        "Measure NB201/FBNet or your own model's inference latency.",
    ),
    "fingerprint": (
        f"{C}.fingerprint:collect_fingerprint_cmd",
        "Record this device: descriptors, micro-benchmarks, reference latencies.",
    ),
    "fpga": (
        f"{C}.fpga:collect_fpga_cmd",
        "Parse HLS/Vivado reports, or synthesize dense layers with yosys.",
    ),
}


@click.group(cls=LazyGroup, lazy=COLLECT)
def collect() -> None:
    """Measure on this machine and write rows to the store.

    Every row records its environment (library versions, device, clocks, threads) so rows from
    different machines are comparable. `--push URL` sends rows to a running `hws serve`.
    """
