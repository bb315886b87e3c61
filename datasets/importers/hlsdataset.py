"""Importer: HLSDataset + PowerGear: PolyBench HLS and post-route resources, Vivado and board-measured power.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/hlsdataset_powergear`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="hlsdataset",
    kinds=("fpga",),
    subpath="fpga/hlsdataset_powergear",
    url="https://github.com/UT-LCA/ML4Accel-Dataset/tree/e05bebec02ab3b80648e45377ffc91702ea8d2dd/fpga_ml_dataset/HLS_dataset and https://github.com/zlinaf/PowerGear",
    license="HLSDataset: none stated (internal use only); PowerGear: MIT",
    description="HLSDataset + PowerGear: PolyBench HLS and post-route resources, Vivado and board-measured power",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("hlsdataset importer: not written yet")
