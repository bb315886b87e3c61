"""Importer: HELP (NeurIPS'21): NAS-Bench-201, FBNet and OFA latencies on 27/27/12 devices, with hardware-embedding reference indices.

Read the source README under ``$HWSURROGATE_DATA_DIR/latency/help`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="help",
    kinds=("latency", "devices"),
    subpath="latency/help",
    url="https://github.com/HayeonLee/HELP/tree/45f70eb92d0d735970a33b608d1544ad3c52f285/data",
    license="MIT",
    description="HELP (NeurIPS'21): NAS-Bench-201, FBNet and OFA latencies on 27/27/12 devices, with hardware-embedding reference indices",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("help importer: not written yet")
