"""Importer: NeuSight: FP32 bmm/linear latency on 8 NVIDIA GPUs, with device spec JSONs.

Read the source README under ``$HWSURROGATE_DATA_DIR/gemm/neusight_gemm`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="neusight",
    kinds=("gemm", "devices"),
    subpath="gemm/neusight_gemm",
    url="https://github.com/sitar-lab/NeuSight/tree/6945927d9afcca2b9daf021f8395e53edc5b4eef/scripts/asplos/data",
    license="MIT",
    description="NeuSight: FP32 bmm/linear latency on 8 NVIDIA GPUs, with device spec JSONs",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("neusight importer: not written yet")
