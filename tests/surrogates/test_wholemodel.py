"""Whole-model aggregation on a synthetic device whose operator latencies are a known function."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from hwsurrogate.datasets.optable import op_table
from hwsurrogate.errors import ModelSourceError
from hwsurrogate.surrogates.wholemodel import fit_gap, launch_overlap_ms, predict_model, predict_model_latency


def _table(training: bool = False) -> pl.DataFrame:
    rows = [
        {"name": "fc1", "op_kind": "linear", "op": "linear", "dtype": "fp32", "batch": 1, "m": 64, "n": 128, "k": 32, "count": 4},
        {"name": "act", "op_kind": "activation", "op": "gelu", "dtype": "fp32", "rows": 64, "cols": 128, "count": 4},
        {"name": "qk", "op_kind": "bmm", "op": "matmul", "dtype": "fp32", "batch": 8, "m": 16, "n": 16, "k": 8, "count": 4},
        {"name": "view", "op_kind": "other", "op": "view", "dtype": "fp32", "flops": 0.0, "bytes": 0.0, "count": 4},
        {"name": "interp", "op_kind": "other", "op": "interpolate", "dtype": "fp32", "flops": 0.0, "bytes": 4e5},
    ]  # fmt: skip
    if training:
        rows += [dict(r, name=r["name"] + ".backward", phase="backward") for r in rows[:3]]
    return op_table(rows)


def _device(table: pl.DataFrame) -> np.ndarray:
    """The synthetic device: 1 GFLOP/ms for GEMMs, 1 GB/ms for the rest, +0.01 ms per call; no model of 'other'."""
    flops = table["flops"].to_numpy()
    nbytes = table["bytes"].to_numpy()
    kind = table["op_kind"].to_numpy()
    ms = np.where(np.isin(kind, ["linear", "bmm"]), flops / 1e9, nbytes / 1e9) + 0.01
    return np.where(kind == "other", np.nan, ms)


def test_known_total_and_breakdown() -> None:
    t = _table()
    p = predict_model_latency(t, _device, mode="inference")
    lin = 2 * 64 * 128 * 32 / 1e9 + 0.01
    act = (2 * 64 * 128 * 4) / 1e9 + 0.01
    bmm = 2 * 8 * 16 * 16 * 8 / 1e9 + 0.01
    modeled = 4 * (lin + act + bmm)
    # the unmodeled interp is estimated at the modeled rows' achieved byte rate (bytes dominate here)
    f_rate = 4 * (2 * 64 * 128 * 32 + 64 * 128 + 2 * 8 * 16 * 16 * 8) / modeled
    b_rate = (
        t.filter(pl.col("op_kind") != "other").select(pl.col("bytes") * pl.col("count")).sum().item()
        / modeled
    )
    est = max(0.0 / f_rate, 4e5 / b_rate)
    assert p.latency_ms == pytest.approx(modeled + est)
    assert p.breakdown["linear"]["ms"] == pytest.approx(4 * lin)
    assert p.breakdown["linear"]["ops"] == 4
    assert p.breakdown["other"]["ms"] == pytest.approx(est)  # views cost 0
    assert p.unmodeled_share == pytest.approx(est / (modeled + est))
    assert p.unmodeled_ops == ["interpolate", "view"]  # listed, never dropped
    assert sum(b["share"] for b in p.breakdown.values()) == pytest.approx(1.0)
    assert p.per_op["total_ms"].sum() == pytest.approx(p.latency_ms)
    gap = predict_model_latency(t, _device, mode="inference", gap_ms=0.5)
    assert gap.latency_ms == pytest.approx(p.latency_ms + 0.5 * t["count"].sum())


def test_overlap_hides_the_per_call_cost_and_frees_host_only_ops() -> None:
    t = _table()

    def timed_alone(table: pl.DataFrame) -> np.ndarray:
        # every op as if timed alone: the device's time + 0.01 ms; host-only ops cost just that
        ms = _device(table)
        return np.where(table["op_kind"].to_numpy() == "other", 0.01, ms)

    plain = predict_model_latency(t, timed_alone, mode="inference")
    hidden = predict_model_latency(t, timed_alone, mode="inference", overlap_ms=0.01)
    kernels = 4 * (2 * 64 * 128 * 32 + 2 * 64 * 128 * 4 + 2 * 8 * 16 * 16 * 8) / 1e9
    # the view (0 FLOPs, 0 bytes) is free; interpolate moves bytes, so it keeps 0.01 - 0.01 = 0
    assert hidden.latency_ms == pytest.approx(kernels)
    assert plain.latency_ms == pytest.approx(kernels + 0.01 * t["count"].sum())
    assert hidden.breakdown["other"]["ms"] == pytest.approx(0.0)
    big = predict_model_latency(t, timed_alone, mode="inference", overlap_ms=1.0)
    assert big.latency_ms == 0.0  # clipped per call, never negative
    with pytest.raises(ValueError, match="overlap_ms"):
        predict_model_latency(t, timed_alone, mode="inference", overlap_ms=-0.01)


def test_training_counts_backward_ops() -> None:
    inf = predict_model_latency(_table(), _device, mode="inference")
    train = predict_model_latency(_table(training=True), _device, mode="training")
    lin_b = 2 * (2 * 64 * 128 * 32) / 1e9 + 0.01  # a backward GEMM row counts twice the FLOPs
    assert train.breakdown["linear"]["ops"] == 8
    assert train.breakdown["linear"]["ms"] == pytest.approx(inf.breakdown["linear"]["ms"] + 4 * lin_b)
    with pytest.raises(ModelSourceError, match="backward rows"):
        predict_model_latency(_table(), _device, mode="training")
    with pytest.raises(ModelSourceError, match="training table"):
        predict_model_latency(_table(training=True), _device, mode="inference")


def test_bad_predictors_are_refused() -> None:
    t = _table()
    with pytest.raises(ValueError, match="returned 2 values"):
        predict_model_latency(t, lambda _: np.ones(2), mode="inference")
    with pytest.raises(ValueError, match="op 'fc1'"):
        predict_model_latency(t, lambda x: -np.ones(x.height), mode="inference")
    with pytest.raises(ModelSourceError, match="no operator"):
        predict_model_latency(t, lambda x: np.full(x.height, np.nan), mode="inference")


def test_predict_model_from_a_module_with_a_given_model() -> None:
    import torch.nn as nn

    class Synthetic:
        def predict_ops(self, table: pl.DataFrame, device: dict) -> np.ndarray:
            assert device["device_id"] == "synthetic/dev"
            return _device(table)

    net = nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 8))
    p = predict_model(net, [(64, 32)], "synthetic/dev", "training", ops_model=Synthetic(),
                      device={"device_id": "synthetic/dev"})  # fmt: skip
    assert p.breakdown["linear"]["ops"] == 4 and p.mode == "training"
    assert p.to_dict()["latency_ms"] == p.latency_ms


def test_predict_model_hides_the_empty_op_time_on_a_gpu_only() -> None:
    class Synthetic:
        empty_op_ms = 0.004

        def predict_ops(self, table: pl.DataFrame, device: dict) -> np.ndarray:
            return _device(table)

    t = _table()
    gpu = {"device_id": "synthetic/gpu", "kind": "gpu"}
    cpu = {"device_id": "synthetic/cpu", "kind": "cpu"}
    assert launch_overlap_ms(Synthetic(), gpu) == 0.004 and launch_overlap_ms(Synthetic(), cpu) == 0.0
    assert launch_overlap_ms(object(), gpu) == 0.0  # a model without an empty-op time
    on_gpu = predict_model(t, None, "synthetic/gpu", ops_model=Synthetic(), device=gpu)
    on_cpu = predict_model(t, None, "synthetic/cpu", ops_model=Synthetic(), device=cpu)
    assert on_gpu.latency_ms == pytest.approx(
        predict_model_latency(t, _device, mode="inference", overlap_ms=0.004).latency_ms
    )
    assert on_cpu.latency_ms == pytest.approx(predict_model_latency(t, _device, mode="inference").latency_ms)
    assert on_gpu.latency_ms < on_cpu.latency_ms


def test_fit_gap_recovers_a_known_gap_despite_an_outlier() -> None:
    sums = np.array([1.0, 2.0, 5.0, 0.5, 3.0])
    calls = np.array([10.0, 40.0, 100.0, 20.0, 8.0])
    measured = sums + 0.02 * calls
    measured[4] = 1.0  # a model the operators over-predict: not evidence of a negative gap
    assert fit_gap(sums, calls, measured) == pytest.approx(0.02)
    assert fit_gap([2.0], [5.0], [1.0]) == 0.0  # clipped at 0
    with pytest.raises(ValueError):
        fit_gap([1.0], [0.0], [1.0])


def test_unmodeled_rows_are_estimated_from_modeled_rows_of_their_kind() -> None:
    t = _table(training=True)

    def forward_only(table: pl.DataFrame) -> np.ndarray:
        return np.where(table["phase"].to_numpy() == "backward", np.nan, _device(table))

    p = predict_model_latency(t, forward_only, mode="training")
    act = p.per_op.filter(pl.col("name") == "act").row(0, named=True)
    back = p.per_op.filter(pl.col("name") == "act.backward").row(0, named=True)
    # the backward activation moves twice the bytes at the forward activation's byte rate
    assert back["est_ms"] == pytest.approx(2 * act["pred_ms"])
    assert "gelu" in p.unmodeled_ops and p.unmodeled_share > 0


def test_inplace_op_times_cover_every_row_of_the_traced_table() -> None:
    import torch
    import torch.nn as nn

    from hwsurrogate.datasets.collectors.ops import inplace_op_times
    from hwsurrogate.datasets.frontends.torch_fx import trace_module

    module = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Flatten(), nn.Linear(256, 8)).eval()
    times, e2e = inplace_op_times(module, torch.randn(4, 64), repeats=3)
    table = trace_module(module, [(4, 64)])
    assert set(table["name"]) == set(times) and e2e > 0
    assert all(v >= 0 for v in times.values()) and times["_0"] > 0
