"""Tiny hand-written frames that fit the store's schemas."""

from __future__ import annotations

import polars as pl


def gemm_frame(n: int = 4, *, device: str = "test/cpu", source: str = "test", start: int = 0) -> pl.DataFrame:
    sizes = [64 * (i + 1) for i in range(start, start + n)]
    return pl.DataFrame(
        {
            "device_id": [device] * n,
            "op": ["gemm"] * n,
            "m": sizes,
            "n": sizes,
            "k": sizes,
            "batch": [1] * n,
            "dtype": ["fp32"] * n,
            "layout": ["nn"] * n,
            "runtime_ms": [0.01 * (i + 1) for i in range(n)],
            "source": [source] * n,
            "origin": ["tests"] * n,
            "measurement_id": [f"{source}-{device}-{s}" for s in sizes],
        }
    )


def latency_frame(n: int = 3, *, device: str = "test/dev") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": [device] * n,
            "space": ["nb201"] * n,
            "arch_index": list(range(n)),
            "arch_key": [f"arch{i}" for i in range(n)],
            "batch": [1] * n,
            "precision": ["fp32"] * n,
            "latency_ms": [1.0 + i for i in range(n)],
            "measured": [True] * n,
            "source": ["test"] * n,
            "origin": ["tests"] * n,
            "measurement_id": [f"lat-{device}-{i}" for i in range(n)],
        }
    )
