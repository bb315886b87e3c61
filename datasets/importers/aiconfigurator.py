"""Importer: NVIDIA aiconfigurator: GEMM latency on 11 accelerators, NVML power on B200/GB200/H200.

Read the source README under ``$HWSURROGATE_DATA_DIR/gemm/aiconfigurator_gemm`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="aiconfigurator",
    kinds=("gemm", "devices"),
    subpath="gemm/aiconfigurator_gemm",
    url="https://github.com/ai-dynamo/aiconfigurator/tree/095f58a51c4ca8e61b66ec108d86f223f8d559ce/aic-core/src/aiconfigurator_core/systems/data",
    license="Apache-2.0",
    description="NVIDIA aiconfigurator: GEMM latency on 11 accelerators, NVML power on B200/GB200/H200",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("aiconfigurator importer: not written yet")
