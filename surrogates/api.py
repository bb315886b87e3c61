"""The contract between trained surrogates and their users (CLI ``hws predict``, the service).

A task's model is loaded once (from the MLflow registry, alias ``champion`` by default, see
:mod:`.registry`) into a :class:`Predictor`. ``predict`` takes a polars frame of queries with
the task's input columns and returns a frame with the task's output columns, one row per query,
in the same order. Feature code lives in :mod:`.features` / :mod:`.graphs` only and is called
inside ``predict``: callers never compute features themselves.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import polars as pl

Task = Literal["gemm", "latency", "fpga-hls4ml", "fpga-hlsyn"]

#: Input columns each task's ``predict`` accepts (extra columns are ignored).
INPUTS: dict[str, tuple[str, ...]] = {
    "gemm": ("device_id", "op", "m", "n", "k", "batch", "dtype", "layout"),
    "latency": ("device_id", "space", "arch_key"),
    "fpga-hls4ml": ("model", "reuse_factor", "precision", "strategy", "io_type", "part"),
    "fpga-hlsyn": ("kernel", "pragmas", "tool"),
}

#: Output columns (nullable where a model does not predict a target).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "gemm": ("runtime_ms", "power_w", "energy_j"),
    "latency": ("latency_ms",),
    "fpga-hls4ml": ("lut", "ff", "dsp", "bram", "cycles", "ii"),
    "fpga-hlsyn": ("cycles", "lut", "ff", "dsp", "bram", "valid_prob"),
}

#: Optional String column a model may add to its outputs: a per-row note (e.g. a value clipped to be
#: physically consistent). The dispatch turns notes into warnings and drops the column.
NOTE_COLUMN = "note"

#: Registered MLflow model name of each task.
MODEL_NAMES: dict[str, str] = {
    "gemm": "hws-gemm",
    "latency": "hws-latency",
    "fpga-hls4ml": "hws-fpga-hls4ml",
    "fpga-hlsyn": "hws-fpga-hlsyn",
}


@runtime_checkable
class Predictor(Protocol):
    task: str
    name: str  # registered model name
    version: str  # registry version served
    metrics: dict[str, float]  # test metrics logged at training time

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        """One output row per query row; raises ValueError naming a bad column/value."""
        ...
