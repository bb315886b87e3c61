"""Importer: wa-hls4ml: hls4ml designs with HLS-estimate and post-synthesis resources and latency.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/wa-hls4ml`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="wa-hls4ml",
    kinds=("fpga",),
    subpath="fpga/wa-hls4ml",
    url="https://huggingface.co/datasets/fastmachinelearning/wa-hls4ml",
    license="CC-BY-NC-4.0",
    description="wa-hls4ml: hls4ml designs with HLS-estimate and post-synthesis resources and latency",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("wa-hls4ml importer: not written yet")
