"""Importer: wa-hls4ml-search: single QDense layer sweep through hls4ml 0.8.1 + Vivado HLS 2020.1.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/wa-hls4ml-search-dense1layer`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="wa-hls4ml-dense",
    kinds=("fpga",),
    subpath="fpga/wa-hls4ml-search-dense1layer",
    url="https://github.com/ben-hawks/wa-hls4ml-search/tree/main/results",
    license="Apache-2.0",
    description="wa-hls4ml-search: single QDense layer sweep through hls4ml 0.8.1 + Vivado HLS 2020.1",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("wa-hls4ml-dense importer: not written yet")
