"""Importer: LatBench (BRP-NAS): NAS-Bench-201 latencies on 13 desktop, embedded and mobile devices.

Read the source README under ``$HWSURROGATE_DATA_DIR/latency/latbench-brpnas`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="latbench",
    kinds=("latency", "devices"),
    subpath="latency/latbench-brpnas",
    url="https://github.com/SamsungLabs/eagle (LatBench, Google Drive link in its README)",
    license="Apache-2.0",
    description="LatBench (BRP-NAS): NAS-Bench-201 latencies on 13 desktop, embedded and mobile devices",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("latbench importer: not written yet")
