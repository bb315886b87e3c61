"""Tiny GEMM frames for the surrogate tests (synthetic runtimes from a roofline with overhead)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

PROV = {"origin": "tests", "imported_at": datetime(2026, 1, 1, tzinfo=UTC)}


def devices_frame() -> pl.DataFrame:
    rows = [
        {"device_id": "test/gpu-a", "kind": "gpu", "name": "A", "cores": 10, "peak_fp32_gflops": 1000.0,
         "peak_fp16_gflops": 4000.0, "mem_bw_gbs": 100.0, "l2_mb": 4.0, "clock_mhz": 1500.0},
        {"device_id": "test/gpu-b", "kind": "gpu", "name": "B", "cores": 20, "peak_fp32_gflops": 3000.0,
         "peak_fp16_gflops": 12000.0, "mem_bw_gbs": 300.0, "l2_mb": 8.0, "clock_mhz": 1800.0},
        {"device_id": "test/gpu-new", "kind": "gpu", "name": "New", "cores": 30, "peak_fp32_gflops": 6000.0,
         "peak_fp16_gflops": 24000.0, "mem_bw_gbs": 600.0, "l2_mb": 16.0, "clock_mhz": 1900.0},
    ]  # fmt: skip
    return pl.DataFrame(rows).with_columns(
        pl.lit("test").alias("source"),
        pl.lit(PROV["origin"]).alias("origin"),
        pl.lit(PROV["imported_at"]).alias("imported_at"),
        pl.col("device_id").alias("measurement_id"),
    )


def synthetic_runtime(m, n, k, batch, peak, bw, dtype_bytes=4.0, overhead_ms=0.005, util=0.6):
    flops = 2.0 * batch * m * n * k
    bytes_ = batch * (m * k + k * n + m * n) * dtype_bytes
    return np.maximum(flops / (peak * 1e6 * util), bytes_ / (bw * 1e6 * 0.8)) + overhead_ms


def gemm_rows(device: str, n_rows: int = 120, *, seed: int = 0, power: bool = True) -> pl.DataFrame:
    spec = devices_frame().filter(pl.col("device_id") == device).row(0, named=True)
    rng = np.random.default_rng(seed)
    m = 2 ** rng.integers(4, 12, n_rows)
    n = 2 ** rng.integers(4, 12, n_rows)
    k = 2 ** rng.integers(4, 12, n_rows)
    batch = rng.integers(1, 4, n_rows)
    rt = synthetic_runtime(m, n, k, batch, spec["peak_fp32_gflops"], spec["mem_bw_gbs"])
    rt = rt * np.exp(rng.normal(0, 0.02, n_rows))
    frame = pl.DataFrame(
        {
            "device_id": [device] * n_rows, "op": ["gemm"] * n_rows, "m": m, "n": n, "k": k, "batch": batch,
            "dtype": ["fp32"] * n_rows, "layout": ["nn"] * n_rows, "runtime_ms": rt,
        }
    )  # fmt: skip
    if power:
        pw = 50 + 100 * np.tanh(np.log2(m * n * k) / 30) + rng.normal(0, 1, n_rows)
        frame = frame.with_columns(
            pl.Series("power_w", pw), pl.Series("power_trusted", rng.random(n_rows) < 0.8)
        )
    return (
        frame.with_columns(
            pl.lit("test").alias("source"),
            pl.lit(PROV["origin"]).alias("origin"),
            pl.lit(PROV["imported_at"]).alias("imported_at"),
        )
        .with_row_index("_i")
        .with_columns(
            pl.concat_str([pl.lit(device), pl.col("_i").cast(pl.String)], separator="#").alias(
                "measurement_id"
            )
        )
        .drop("_i")
    )


def fitted_gemm_pyfunc(max_iter: int, n_rows: int = 150):  # noqa: ANN201 - (model, rows): GemmPyfunc, frame
    """A GemmPyfunc (runtime + power GemmRegressor) fitted on ``gemm_rows("test/gpu-a", n_rows)``."""
    from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor

    rows = gemm_rows("test/gpu-a", n_rows)
    runtime = GemmRegressor(devices=devices_frame(), max_iter=max_iter).fit(rows, rows["runtime_ms"])
    power = GemmRegressor(devices=devices_frame(), target="log", max_iter=max_iter).fit(rows, rows["power_w"])
    return GemmPyfunc(runtime, power), rows


def assert_equals_sklearn(model, q: pl.DataFrame) -> pl.DataFrame:  # noqa: ANN001 - a GemmPyfunc
    """``model.predict_frame(q)`` equals its scikit-learn trees' own answers to 1e-9 on the
    training pipeline's features (whole numpy columns, as at fit); returns it."""
    from hwsurrogate.surrogates.features.gemm import gemm_feature_matrix

    got = model.predict_frame(q)
    # a devices frame, not the model's DeviceIndex: the column path even for one query
    x, roof = gemm_feature_matrix(
        q, model.runtime.device_table_, device_features=model.runtime.device_features
    )
    x[:, model.runtime.empty_features_] = 0.0
    np.testing.assert_allclose(
        got["runtime_ms"].to_numpy(), np.exp(model.runtime.model_.predict(x)) * roof, rtol=1e-9
    )
    np.testing.assert_allclose(got["power_w"].to_numpy(), np.exp(model.power.model_.predict(x)), rtol=1e-9)
    return got
