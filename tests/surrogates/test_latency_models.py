"""LatencyGNN / MultiDeviceLatencyGNN / LatencyTreeRegressor on tiny data, failures included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from hwsurrogate.surrogates.features import nas as graphs
from hwsurrogate.surrogates.models.latency_gnn import GNNConfig, LatencyGNN, MultiDeviceLatencyGNN
from hwsurrogate.surrogates.models.latency_trees import LatencyTreeRegressor
from hwsurrogate.surrogates.training.splits import trim_10_90

from .test_latency_training import tiny_latency_frame


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_latency_gnn_output_shape_and_reset_parameters_restore_init() -> None:
    torch.manual_seed(0)
    model = LatencyGNN(in_channels=8, hidden_channels=8, num_layers=2, out_channels=3)
    batch = graphs.arch_batch("nb201", ["|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"] * 2)
    out = model(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
    assert out.shape == (2, 3)
    torch.manual_seed(1)
    model.reset_parameters()
    torch.manual_seed(1)
    model2 = LatencyGNN(8, 8, 2, 3)
    torch.manual_seed(1)
    model2.reset_parameters()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="expected 8 node features, got 5"):
        model(batch.x[:, :5], batch.edge_index, batch.batch)


def test_multi_device_gnn_training_reduces_validation_loss() -> None:
    frame = tiny_latency_frame(n_archs=80)
    wide = frame.pivot(on="device_id", index="arch_key", values="latency_ms")
    cfg = GNNConfig(hidden_channels=16, num_layers=2, epochs=30, batch_size=16, patience=30, num_threads=1)
    gnn = MultiDeviceLatencyGNN("nb201", ["help/dev_a", "help/dev_b"], cfg)
    gnn.fit(wide["arch_key"].to_list(), wide.select("help/dev_a", "help/dev_b").to_numpy())
    first_val, best_val = gnn.history_[0][1], gnn.best_val_loss_
    assert best_val < 0.5 * first_val
    pred = gnn.predict(wide["arch_key"].to_list()[:3], ["help/dev_b"] * 3)
    assert pred.shape == (3,) and (pred > 0).all()
    with pytest.raises(ValueError, match="unknown device_id 'help/x'"):
        gnn.predict(wide["arch_key"].to_list()[:1], ["help/x"])


def test_gnn_rejects_wrong_target_shape_and_empty_device() -> None:
    keys = tiny_latency_frame(n_archs=10)["arch_key"].unique().to_list()
    gnn = MultiDeviceLatencyGNN("nb201", ["a", "b"], GNNConfig(epochs=1))
    with pytest.raises(ValueError, match=r"shape \(n_archs=10, n_devices=2\)"):
        gnn.fit(keys, np.ones((10, 3)))
    y = np.ones((10, 2))
    y[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"device\(s\) \['b'\] have no finite latency"):
        gnn.fit(keys, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        gnn.predict_all(keys)


def test_tree_regressor_rejects_empty_nan_and_is_checked_before_predict() -> None:
    keys = tiny_latency_frame(n_archs=10)["arch_key"].unique().to_list()
    with pytest.raises(ValueError, match="X must not be empty"):
        LatencyTreeRegressor().fit([], [])
    with pytest.raises(ValueError, match="1 non-finite"):
        LatencyTreeRegressor().fit(keys, [1.0] * 9 + [float("nan")])
    with pytest.raises(NotFittedError):
        LatencyTreeRegressor().predict(keys)
    with pytest.raises(ValueError, match="'space' parameter"):
        LatencyTreeRegressor(space="darts").fit(keys, np.ones(10))


def test_trim_10_90_keeps_the_middle_800_of_1000_by_rank() -> None:
    y = np.arange(1000, 0, -1, dtype=float)  # descending: the middle values sit at positions 100..899
    kept = trim_10_90(y)
    assert len(kept) == 800 and kept[0] == 100 and kept[-1] == 899


def test_bench_rows_mark_targets_met_only_when_both_directions_hold() -> None:
    from hwsurrogate.benchmarks.latency import _rows

    rows = _rows(
        [{"space": "nb201", "device_id": "help/x", "tree_spearman": 0.995, "tree_mape": 6.0, "n_test": 800}],
        ["tree"],
    )
    assert [(r["metric"], r["met"], r["direction"]) for r in rows] == [
        ("Spearman", True, ">="),
        ("MAPE %", False, "<="),
    ]
    assert rows[0]["split"] == "nb201 help/x tree" and rows[0]["n"] == 800
