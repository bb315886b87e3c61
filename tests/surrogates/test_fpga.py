"""FPGA features (hand-computed), tree surrogates trained end to end on tiny stores, bad input."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.features import hls4ml_features, hlsyn_features, program_graph_stats
from hwsurrogate.surrogates.registry.loading import load_predictor
from hwsurrogate.surrogates.training.fpga import FpgaTrainConfig, train_hls4ml_model, train_hlsyn_model

from .fpga_factories import dense_model, hls4ml_rows

FAST = FpgaTrainConfig(max_iter=20)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_hls4ml_features_sum_multiplications_and_divide_by_reuse_factor() -> None:
    q = pl.DataFrame({"model": [dense_model(32, 16, 6)], "reuse_factor": [4], "precision": ["ap_fixed<8,3>"],
                      "strategy": ["Resource"], "io_type": ["io_stream"], "part": ["xcu250"]})  # fmt: skip
    f = hls4ml_features(q, parts=("xc7z020", "xcu250")).row(0, named=True)
    assert f["log2_mults"] == pytest.approx(math.log2(32 * 16 + 1))
    assert f["log2_mults_per_rf"] == pytest.approx(math.log2(32 * 16 / 4 + 1))
    assert f["precision_bits"] == 8.0 and f["precision_int_bits"] == 3.0
    assert f["strategy_resource"] == 1.0 and f["io_stream"] == 1.0 and f["part_code"] == 1.0
    assert f["n_dense"] == 1.0


def test_hls4ml_precision_falls_back_to_layer_weight_bits() -> None:
    q = pl.DataFrame({"model": [dense_model(8, 8, 6)], "reuse_factor": [1], "precision": [None],
                      "strategy": ["latency"], "io_type": ["io_parallel"], "part": ["p"]})  # fmt: skip
    assert hls4ml_features(q)["precision_bits"].to_list() == [6.0]


def test_hls4ml_bad_model_json_names_the_column() -> None:
    q = pl.DataFrame({"model": ["[{not json"], "reuse_factor": [1], "precision": ["ap_fixed<8,3>"],
                      "strategy": ["latency"], "io_type": ["io_parallel"], "part": ["p"]})  # fmt: skip
    with pytest.raises(ValueError, match="'model' is not valid JSON"):
        hls4ml_features(q)


def test_hlsyn_pragma_vector_matches_hand_computed_values() -> None:
    q = pl.DataFrame(
        {
            "kernel": ["k"],
            "tool": ["vitis_hls"],
            "pragmas": [
                json.dumps(
                    {
                        "__PARA__L0": 4,
                        "__PARA__L1": 8,
                        "__PIPE__L0": "flatten",
                        "__PIPE__L1": "off",
                        "__TILE__L0": 2,
                    }
                )
            ],
        }  # fmt: skip
    )
    f = hlsyn_features(q).row(0, named=True)
    assert (f["n_para"], f["n_pipe"], f["n_tile"]) == (2.0, 2.0, 1.0)
    assert f["log2_para_prod"] == pytest.approx(5.0)  # log2(4*8)
    assert f["log2_para_max"] == pytest.approx(3.0)
    assert f["log2_para_prod_pipelined"] == pytest.approx(2.0)  # only L0 is pipelined
    assert (f["n_pipe_flatten"], f["n_pipe_off"], f["para_L1"], f["pipe_L0"]) == (1.0, 1.0, 3.0, 2.0)
    assert f["tool_code"] == 1.0


def _graphs() -> pl.DataFrame:
    nodes = [
        {"id": 0, "type": 0, "text": "icmp"},
        {"id": 1, "type": 0, "text": "load"},
        {"id": 2, "type": 3, "text": "PIPELINE"},
    ]
    return pl.DataFrame(
        {"graph_id": ["ka", "kb"], "domain": ["hlsyn"] * 2, "kernel": ["ka", "kb"], "n_nodes": [3, 3], "n_edges": [2, 2],
         "n_pragma_nodes": [1, 1], "nodes": [json.dumps(nodes)] * 2, "edges": [json.dumps([[0, 1, 1, 0], [2, 0, 3, 0]])] * 2}
    )  # fmt: skip


def test_program_graph_stats_count_types_opcodes_and_flows() -> None:
    g = program_graph_stats(_graphs()).row(0, named=True)
    assert (g["n_type0"], g["n_type3"], g["n_icmp"], g["n_load"], g["n_flow1"], g["n_flow3"]) == (
        2,
        1,
        1,
        1,
        1,
        1,
    )


def _hlsyn_rows() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for kern, scale in (("ka", 1.0), ("kb", 2.0), ("kc", 3.0)):
        for i in range(40):
            para = int(2 ** rng.integers(0, 4))
            pipe = ["off", "", "flatten"][i % 3]
            rows.append(
                {
                    "design_id": f"{kern}-{i}",
                    "domain": "hlsyn",
                    "kernel": kern,
                    "tool": "vitis_hls",
                    "part": "xcu200",
                    "stage": "hls_estimate",
                    "pragmas": json.dumps({"__PARA__L0": para, "__PIPE__L0": pipe}),
                    "valid": bool(para < 8),
                    "cycles": 1e5 * scale / para,
                    "lut": 1e4 * para * scale,
                    "ff": 2e4 * para,
                    "dsp": 5.0 * para,
                    "bram": 10.0 * scale,
                    "extra": '{"tool_tag":"v20"}',
                }  # fmt: skip
            )
    return pl.DataFrame(rows).with_columns(
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"), pl.lit(NOW).alias("imported_at"),
        pl.col("design_id").alias("measurement_id"),
    )  # fmt: skip


def _n_runs() -> int:
    exp = mlflow.get_experiment_by_name("fpga")
    return 0 if exp is None else len(MlflowClient().search_runs([exp.experiment_id]))


def test_hls4ml_train_logs_registers_and_reloads_identically(store: DatasetStore) -> None:
    store.append("fpga", hls4ml_rows(), partition="test")
    res = train_hls4ml_model(store, FAST)
    queries = res.test.select("model", "reuse_factor", "precision", "strategy", "io_type", "part")
    direct = res.model.predict_frame(queries)
    loaded = load_predictor("fpga-hls4ml", version=res.version).predict(queries)
    assert loaded.columns == ["lut", "ff", "dsp", "bram", "cycles", "ii"]
    np.testing.assert_array_equal(loaded["dsp"].to_numpy(), direct["dsp"].to_numpy())
    assert "test_dsp_smape" in MlflowClient().get_run(res.run_id).data.metrics


def _graphs_with_pragmas() -> pl.DataFrame:
    """ka/kb: one loop (icmp bound 64) annotated by __PARA__L0 and __PIPE__L0 pragma nodes."""
    nodes = [
        {"id": 0, "type": 0, "text": "icmp", "full_text": "%c = icmp slt i32 %0, 64", "block": 1},
        {"id": 1, "type": 0, "text": "fmul", "block": 2},
        {"id": 2, "type": 3, "text": "PIPELINE", "block": 1, "pragma": "__PIPE__L0"},
        {"id": 3, "type": 3, "text": "PARALLEL", "block": 1, "pragma": "__PARA__L0"},
    ]
    edges = [[0, 1, 1, 0], [2, 0, 3, 0], [0, 2, 3, 0], [3, 0, 3, 0], [0, 3, 3, 0]]
    return _graphs().with_columns(pl.lit(json.dumps(nodes)).alias("nodes"), pl.lit(json.dumps(edges)).alias("edges"),
                                  pl.lit(4).alias("n_nodes"), pl.lit(2).alias("n_pragma_nodes"))  # fmt: skip


def test_hlsyn_train_with_graph_stats_and_validity(store: DatasetStore) -> None:
    store.append("fpga", _hlsyn_rows(), partition="test")
    store.append("program_graphs", _graphs_with_pragmas().with_columns(
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"), pl.lit(NOW).alias("imported_at"),
        pl.col("graph_id").alias("measurement_id")), partition="test")  # fmt: skip
    res = train_hlsyn_model(store, FAST)
    pred = mlflow.pyfunc.load_model(res.model_uri).predict(
        res.test.select("kernel", "pragmas", "tool").to_pandas()
    )
    assert list(pred.columns) == ["cycles", "lut", "ff", "dsp", "bram", "valid_prob"]
    assert ((pred["valid_prob"] >= 0) & (pred["valid_prob"] <= 1)).all()
    np.testing.assert_allclose(
        pred["cycles"].to_numpy(), res.model.predict_frame(res.test)["cycles"].to_numpy()
    )


def test_fpga_training_on_empty_or_nan_data_raises_before_any_run(store: DatasetStore) -> None:
    before = _n_runs()
    with pytest.raises(TrainingDataError, match="0 training rows"):
        train_hls4ml_model(store, FAST)
    with pytest.raises(TrainingDataError, match="0 training rows"):
        train_hlsyn_model(store, FAST)
    assert _n_runs() == before
