"""Importer: HARP v21: Vitis 2021.1 HLS results for 24 HLSyn kernels.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/harp_v21`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="harp",
    kinds=("fpga",),
    subpath="fpga/harp_v21",
    url="https://github.com/UCLA-VAST/HARP/tree/c8bffd9411917b125846429b4d6be4f21c7a7165/dse_database",
    license="BSD-3-Clause",
    description="HARP v21: Vitis 2021.1 HLS results for 24 HLSyn kernels",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("harp importer: not written yet")
