"""Datasets: declared schemas, the parquet store, importers of public data and collectors.

Knows nothing of models or HTTP. The flow: :mod:`.importers` (public data) and :mod:`.collectors`
(measurements on this machine) produce frames that :mod:`.schemas` checks and :mod:`.store`
commits; :mod:`.archspaces` names the NAS architecture spaces and HELP's reference
architectures; :mod:`.precision` parses hls4ml's fixed-point types.

The names below are imported from their modules on first use, so that importing a light
sub-module (``hwsurrogate.datasets.importers`` for the list of sources) does not load polars.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal

#: The store's tables; each has one declared schema in :mod:`.schemas`.
Kind = Literal["gemm", "latency", "fpga", "devices", "program_graphs", "ops", "model_latency"]
KINDS: tuple[Kind, ...] = ("gemm", "latency", "fpga", "devices", "program_graphs", "ops", "model_latency")

#: public name -> the module (under this package) that defines it
_LAZY = {
    "DatasetStore": "store",
    "Write": "store",
    "conform": "schemas",
    "schema": "schemas",
    "FixedPoint": "precision",
    "parse_precision": "precision",
}

__all__ = ["KINDS", "DatasetStore", "FixedPoint", "Kind", "Write", "conform", "parse_precision", "schema"]

if TYPE_CHECKING:
    from hwsurrogate.datasets.precision import FixedPoint, parse_precision
    from hwsurrogate.datasets.schemas import conform, schema
    from hwsurrogate.datasets.store import DatasetStore, Write


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
