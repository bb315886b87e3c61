"""Importer: HLSyn: 41,596 Merlin/Vitis HLS designs over 42 kernels with ProGraML program graphs.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/hlsyn`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="hlsyn",
    kinds=("fpga",),
    subpath="fpga/hlsyn",
    url="https://github.com/ZongyueQin/HLSyn/blob/88ed5321811e5c9d838215f0a4f95f89b3ffcd02/data/HLSyn_data.tar.gz",
    license="CC-BY-SA-4.0",
    description="HLSyn: 41,596 Merlin/Vitis HLS designs over 42 kernels with ProGraML program graphs",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("hlsyn importer: not written yet")
