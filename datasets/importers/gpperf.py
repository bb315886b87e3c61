"""Importer: GPPerf: CUTLASS SGEMM runtime (and post-run power) on an RTX 4070.

Read the source README under ``$HWSURROGATE_DATA_DIR/gemm/gpperf_rtx4070`` for units, encodings and defects.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schemas import Kind
from . import Source

SOURCE = Source(
    name="gpperf",
    kinds=("gemm", "devices"),
    subpath="gemm/gpperf_rtx4070",
    url="https://github.com/pavlyhalim/GPPerf/blob/55468e195c3f89120a56ddb17555683bdee79358/cutlass_profiling_20241111_195357.tar.gz",
    license="none stated (internal use only)",
    description="GPPerf: CUTLASS SGEMM runtime (and post-run power) on an RTX 4070",
)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    raise NotImplementedError("gpperf importer: not written yet")
