"""Tiny hls4ml rows for the FPGA surrogate tests (resources a known function of the layer and reuse factor)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import polars as pl

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def dense_model(d_in: int, d_out: int, bits: int) -> str:
    return json.dumps(
        [
            {
                "class_name": "QDense",
                "d_in": [d_in],
                "d_out": [d_out],
                "neurons": d_out,
                "parameters": d_in * d_out + d_out,
                "weight_bits": bits,
            }
        ]  # fmt: skip
    )


def hls4ml_rows(n_models: int = 12) -> pl.DataFrame:
    """``n_models`` dense layers at reuse factors 1, 4 and 16: 3 rows per model (kernel)."""
    rows = []
    for i in range(n_models):
        d_in, d_out, bits = 16 * (1 + i % 4), 16 * (1 + i // 4), 4 + 2 * (i % 3)
        for rf in (1, 4, 16):
            mults = d_in * d_out
            rows.append(
                {
                    "design_id": f"m{i}-rf{rf}",
                    "domain": "hls4ml",
                    "kernel": f"dense_{d_in}_{d_out}_{bits}b",
                    "model": dense_model(d_in, d_out, bits),
                    "reuse_factor": rf,
                    "precision": None,
                    "strategy": "resource",
                    "io_type": "io_parallel",
                    "part": "xcu250",
                    "tool": "vivado_hls",
                    "stage": "hls_estimate",
                    "valid": True,
                    "lut": 30.0 * mults * bits / 8 / rf + 200,
                    "ff": 20.0 * mults / rf + 100,
                    "dsp": float(math.ceil(mults / rf)),
                    "bram": float(mults // 512),
                    "cycles": 2.0 * rf + 3,
                    "ii": float(rf),
                }  # fmt: skip
            )
    return pl.DataFrame(rows).with_columns(
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"), pl.lit(NOW).alias("imported_at"),
        pl.col("design_id").alias("measurement_id"),
    )  # fmt: skip
