"""Collectors: measure on the machine they run on and return schema-conforming frames.

One module per measurement, each writing nothing itself (``hws collect``, :mod:`hwsurrogate.cli.collect`,
delivers the rows to the store or a service):

- :mod:`.gemm`: GEMM runtimes (numpy / torch, CPU / CUDA) with power and energy (:mod:`.power`);
- :mod:`.dnn_latency`: NB201 / FBNet (:mod:`.nasnets`) or your own model's inference latency;
- :mod:`.fingerprint`: one ``devices`` row: descriptors, micro-benchmarks, HELP reference latencies;
- :mod:`.fpga`: FPGA resources from HLS / Vivado reports (:mod:`.fpga_reports`) or yosys synthesis
  of generated layers (:mod:`.fpga_rtl`, :mod:`.fpga_yosys`);
- :mod:`.environment` and :mod:`.timing`: what every collector records about the machine, and how
  it times.

The names below are imported from their modules on first use (the collectors load numpy, polars
and torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module (under this package) that defines it
_LAZY = {
    "collect_gemm": "gemm",
    "gflops": "gemm",
    "sweep_shapes": "gemm",
    "collect_latency": "dnn_latency",
    "random_arch_keys": "dnn_latency",
    "collect_fingerprint": "fingerprint",
    "collect_fpga_reports": "fpga",
    "collect_fpga_sweep": "fpga",
    "capture_environment": "environment",
    "cpu_info": "environment",
    "local_device_id": "environment",
    "thread_limit": "environment",
}

__all__ = [
    "capture_environment",
    "collect_fingerprint",
    "collect_fpga_reports",
    "collect_fpga_sweep",
    "collect_gemm",
    "collect_latency",
    "cpu_info",
    "gflops",
    "local_device_id",
    "random_arch_keys",
    "sweep_shapes",
    "thread_limit",
]

if TYPE_CHECKING:
    from hwsurrogate.datasets.collectors.dnn_latency import collect_latency, random_arch_keys
    from hwsurrogate.datasets.collectors.environment import (
        capture_environment,
        cpu_info,
        local_device_id,
        thread_limit,
    )
    from hwsurrogate.datasets.collectors.fingerprint import collect_fingerprint
    from hwsurrogate.datasets.collectors.fpga import collect_fpga_reports, collect_fpga_sweep
    from hwsurrogate.datasets.collectors.gemm import collect_gemm, gflops, sweep_shapes


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
