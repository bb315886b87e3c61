"""Frozen served models (treelite checkpoints, no scikit-learn) answer as scikit-learn does (1e-9 relative).

The oracle is each fitted scikit-learn estimator's own ``predict`` on the features of the trained
model's pipeline; the frozen form is pickled and unpickled before it answers, as the served copy is.
"""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest

from hwsurrogate.surrogates.models.frozen import FrozenServed, freeze
from hwsurrogate.surrogates.models.tree_serving import SMALL_BATCH_ROWS, FrozenTrees

from .gemm_factories import devices_frame, gemm_rows


def _round_trip(frozen: FrozenServed, full: object) -> tuple[FrozenServed, list[int]]:
    """The frozen model as a served copy reads it, with a full-model loader that counts its calls."""
    calls: list[int] = []
    back = pickle.loads(pickle.dumps(frozen))
    back.attach(lambda: calls.append(1) or full)
    return back, calls


def test_frozen_gemm_equals_sklearn_for_runtime_and_power_and_hands_large_batches_over() -> None:
    from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor

    rows = pl.concat([gemm_rows("test/gpu-a", 150, seed=1), gemm_rows("test/gpu-b", 150, seed=2)])
    runtime = GemmRegressor(devices=devices_frame(), max_iter=40).fit(rows, rows["runtime_ms"])
    a_only = rows.filter(pl.col("device_id") == "test/gpu-a")  # power known for gpu-a only
    power = GemmRegressor(devices=devices_frame(), target="log", max_iter=40).fit(a_only, a_only["power_w"])
    model = GemmPyfunc(runtime, power)
    served, calls = _round_trip(freeze("gemm", model), model)
    for q in (rows.head(1), rows.tail(1), rows.sample(SMALL_BATCH_ROWS, seed=3)):
        got = served.predict_frame(q.drop("runtime_ms", "power_w"))
        x, roof = runtime._features(q)
        np.testing.assert_allclose(got["runtime_ms"].to_numpy(), np.exp(runtime.model_.predict(x)) * roof, rtol=1e-9)
        on_a = (q["device_id"] == "test/gpu-a").to_numpy()
        expected_power = np.exp(power.model_.predict(x[on_a])) if on_a.any() else np.empty(0)
        np.testing.assert_allclose(got["power_w"].to_numpy()[on_a], expected_power, rtol=1e-9)
        assert got["power_w"].filter(pl.Series(~on_a)).is_null().all()
        assert got.columns == ["runtime_ms", "power_w", "energy_j"] and got.schema == model.predict_frame(q).schema
    assert calls == []  # small batches never load the full model
    big = rows.head(SMALL_BATCH_ROWS + 1)
    assert served.predict_frame(big).equals(model.predict_frame(big)) and calls == [1]
    assert served.runtime is runtime and calls == [1]  # anything else is the full model's (loaded once)
    assert served.devices == model.devices and served.training_domain == model.training_domain
    with pytest.raises(ValueError, match="positive integer"):
        served.predict_frame(rows.head(1).with_columns(m=pl.lit(0)))
    with pytest.raises(ValueError, match="nowhere/gpu"):
        served.predict_frame(rows.head(1).with_columns(device_id=pl.lit("nowhere/gpu")))


def test_frozen_latency_trees_equal_sklearn_per_device() -> None:
    from hwsurrogate.surrogates.features import nas as graphs
    from hwsurrogate.surrogates.models.latency_trees import LatencyTreeRegressor, MultiDeviceLatencyTrees
    from hwsurrogate.surrogates.registry.loading import LatencyModels

    from .test_latency_training import tiny_latency_frame

    frame = tiny_latency_frame()
    devices = sorted(frame["device_id"].unique().to_list())[:2]
    per_device = {
        d: (part["arch_key"].to_list(), part["latency_ms"].to_numpy())
        for d in devices
        for part in [frame.filter(pl.col("device_id") == d)]
    }
    trees = MultiDeviceLatencyTrees("nb201", LatencyTreeRegressor(max_iter=40)).fit(per_device)
    model = LatencyModels({"nb201": trees})
    served, calls = _round_trip(freeze("latency", model), model)
    keys = per_device[devices[0]][0][:5]
    q = pl.DataFrame({"device_id": [devices[0], devices[1]] * 2 + [devices[1]], "space": ["nb201"] * 5,
                      "arch_key": keys})  # fmt: skip
    x = graphs.arch_vectors("nb201", keys)
    expected = [np.exp(trees.models_[d].regressor_.predict(x[i : i + 1]))[0] for i, d in enumerate(q["device_id"])]
    np.testing.assert_allclose(served.predict_frame(q)["latency_ms"].to_numpy(), expected, rtol=1e-9)
    assert calls == [] and served.training_domain == model.training_domain
    with pytest.raises(ValueError, match="unknown device_id 'help/nowhere'"):
        served.predict_frame(q.head(1).with_columns(device_id=pl.lit("help/nowhere")))
    with pytest.raises(ValueError, match="may not be null"):
        served.predict_frame(q.head(1).with_columns(arch_key=pl.lit(None, dtype=pl.String)))


def test_frozen_hls4ml_model_equals_sklearn_including_the_report_rules() -> None:
    from hwsurrogate.surrogates.models.fpga import HLS4ML_TARGETS, FpgaPyfunc, FpgaRegressor

    from .fpga_factories import hls4ml_rows

    rows = hls4ml_rows()
    reg = FpgaRegressor(kind="hls4ml", targets=HLS4ML_TARGETS, max_iter=30).fit(rows, rows.select(HLS4ML_TARGETS))
    model = FpgaPyfunc("fpga-hls4ml", reg)
    served, calls = _round_trip(freeze("fpga-hls4ml", model), model)
    q = rows.sample(7, seed=1).drop(*HLS4ML_TARGETS)
    x = reg._features(q)
    raw = np.column_stack([np.expm1(reg.models_[t].predict(x)) for t in HLS4ML_TARGETS])
    np.testing.assert_allclose(served.frozen.regressor.predict(q), raw, rtol=1e-9)
    got, expected = served.predict_frame(q), model.predict_frame(q)
    assert got.columns == expected.columns
    np.testing.assert_allclose(got.to_numpy().astype(float), expected.to_numpy().astype(float), rtol=1e-9)
    assert calls == []


def test_frozen_trees_match_a_binary_classifier_and_refuse_what_treelite_cannot_import() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    clf = HistGradientBoostingClassifier(max_iter=30).fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    frozen = pickle.loads(pickle.dumps(FrozenTrees.of(clf)))
    np.testing.assert_allclose(frozen.predict(x[:9]), clf.predict_proba(x[:9])[:, 1], rtol=1e-9)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        frozen.predict(x[:2, :3])
    poisson = HistGradientBoostingRegressor(loss="poisson", max_iter=5).fit(x, np.exp(x[:, 0]))
    assert FrozenTrees.of(poisson) is None  # the link function: treelite's import is not exact
    assert freeze("gemm", object()) is None


def test_a_frozen_model_without_a_full_loader_says_so_for_large_batches() -> None:
    from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor

    rows = gemm_rows("test/gpu-a", 150)
    model = GemmPyfunc(GemmRegressor(devices=devices_frame(), max_iter=10).fit(rows, rows["runtime_ms"]))
    served = pickle.loads(pickle.dumps(freeze("gemm", model)))
    assert served.predict_frame(rows.head(2)).height == 2
    with pytest.raises(RuntimeError, match="no full model"):
        served.predict_frame(rows.head(SMALL_BATCH_ROWS + 1))


def test_power_reuses_the_runtime_features_only_where_its_device_descriptors_are_the_same() -> None:
    from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor

    rows = gemm_rows("test/gpu-a", 150)
    q = rows.head(3)
    runtime = GemmRegressor(devices=devices_frame(), max_iter=20).fit(rows, rows["runtime_ms"])
    other = devices_frame().with_columns(mem_bw_gbs=pl.col("mem_bw_gbs") * 2)  # other descriptors for gpu-a
    for devices, shared in ((devices_frame(), True), (other, False)):
        power = GemmRegressor(devices=devices, target="log", max_iter=20).fit(rows, rows["power_w"])
        for model in (GemmPyfunc(runtime, power), freeze("gemm", GemmPyfunc(runtime, power)).frozen):
            got = model.predict_frame(q)["power_w"].to_numpy()
            x, _ = power._features(q)  # the power model's own features
            np.testing.assert_allclose(got, np.exp(power.model_.predict(x)), rtol=1e-9)
            assert model._power_shares_features() is shared
