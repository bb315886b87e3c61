"""GEMM features (hand-computed values), the tree surrogate, MLflow logging/loading and bad input."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.features import UnknownGemmDeviceError, gemm_features
from hwsurrogate.surrogates.models.gemm import GemmRegressor
from hwsurrogate.surrogates.registry.loading import load_predictor
from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

from .gemm_factories import devices_frame, gemm_rows

FAST = GemmTrainConfig(max_iter=30, test_frac=0.25, min_power_rows=20)


def _query(**kw: object) -> pl.DataFrame:
    base = {"device_id": "test/gpu-a", "op": "bmm", "m": 128, "n": 256, "k": 64, "batch": 2, "dtype": "fp32",
            "layout": "nn"}  # fmt: skip
    base.update(kw)
    return pl.DataFrame([base])


def test_gemm_features_match_hand_computed_flops_bytes_intensity_roofline() -> None:
    f = gemm_features(_query(), devices_frame()).row(0, named=True)
    flops = 2 * 2 * 128 * 256 * 64
    nbytes = 2 * (128 * 64 + 64 * 256 + 128 * 256) * 4
    assert f["flops"] == flops == 8_388_608
    assert f["bytes"] == nbytes == 458_752
    assert f["log2_intensity"] == pytest.approx(math.log2(flops / nbytes))
    # 1000 GFLOP/s peak vs 100 GB/s: compute-bound, 8.388608 us
    assert f["roofline_ms"] == pytest.approx(flops / 1e9)
    assert f["log2_intensity_over_ridge"] == pytest.approx(math.log2(flops / nbytes / 10.0))


def test_linear_reads_the_weight_once_and_fp16_uses_the_fp16_peak() -> None:
    f = gemm_features(_query(op="linear", dtype="fp16"), devices_frame()).row(0, named=True)
    assert f["bytes"] == (2 * 128 * 64 + 64 * 256 + 2 * 128 * 256) * 2
    assert f["roofline_ms"] == pytest.approx(max(f["flops"] / 4e9, f["bytes"] / 1e8))


def test_wave_quantization_counts_tiles_against_sms() -> None:
    # 1 x (256/128) x (384/128) = 6 tiles of 128x128 on 10 SMs -> one wave, 60 % efficient
    f = gemm_features(_query(batch=1, m=256, n=384), devices_frame()).row(0, named=True)
    assert f["waves_128x128"] == 0.0  # log2(1 wave)
    assert f["wave_eff_128x128"] == pytest.approx(0.6)
    assert f["tile_eff_256x128"] == pytest.approx(256 * 384 / (256 * 384))


def test_linear_tiles_one_flattened_gemm_and_bmm_tiles_each_batch_entry() -> None:
    # linear (4, 40, k) @ (k, 128): one 160 x 128 GEMM -> 2 tiles of 128x128 (62.5 % padded use);
    # bmm of 4 x (40 x 128) -> 4 separate tiles, each 31.25 % used
    lin = gemm_features(_query(op="linear", batch=4, m=40, n=128), devices_frame()).row(0, named=True)
    bmm = gemm_features(_query(op="bmm", batch=4, m=40, n=128), devices_frame()).row(0, named=True)
    assert lin["wave_eff_128x128"] == pytest.approx(2 / 10)
    assert lin["tile_eff_128x128"] == pytest.approx(160 * 128 / (256 * 128))
    assert bmm["wave_eff_128x128"] == pytest.approx(4 / 10)
    assert bmm["tile_eff_128x128"] == pytest.approx(40 * 128 / (128 * 128))


def test_working_set_over_l2_counts_every_batch_entry() -> None:
    one = gemm_features(_query(batch=1), devices_frame()).row(0, named=True)
    many = gemm_features(_query(batch=8), devices_frame()).row(0, named=True)
    assert one["log2_footprint_over_l2"] == pytest.approx(math.log2(one["bytes"] / 4e6))
    assert many["log2_footprint_over_l2"] == pytest.approx(one["log2_footprint_over_l2"] + 3)


def test_features_are_vectorised_and_keep_row_order() -> None:
    q = pl.concat([_query(m=m, device_id=d) for m in (16, 32, 64) for d in ("test/gpu-b", "test/gpu-a")])
    f = gemm_features(q, devices_frame())
    assert f["log2_m"].to_list() == [4.0, 4.0, 5.0, 5.0, 6.0, 6.0]
    assert f["cores"].to_list() == [20.0, 10.0] * 3


def test_unstated_descriptors_give_nan_features_and_the_compute_bound_roofline() -> None:
    devices = pl.DataFrame({"device_id": ["test/bare"], "peak_fp32_gflops": [1000.0]})
    f = gemm_features(_query(device_id="test/bare"), devices).row(0, named=True)
    assert f["roofline_ms"] == pytest.approx(f["flops"] / 1e9)  # no bandwidth: compute time alone
    assert (
        math.isnan(f["log2_mem_bw_gbs"]) and math.isnan(f["log2_l2_mb"]) and math.isnan(f["log2_memory_ms"])
    )
    assert f["cores"] == 80.0  # unstated SM count: the wave features assume 80 SMs


def test_unknown_device_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown device_id 'test/nope'"):
        gemm_features(_query(device_id="test/nope"), devices_frame())
    assert issubclass(UnknownGemmDeviceError, ValueError)


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"m": 0}, "'m' must be a positive integer"), ({"k": float("nan")}, "'k' must be a positive integer"),
     ({"dtype": "fp7"}, "'dtype' must be one of"), ({"op": "conv"}, "'op' must be one of")],
)  # fmt: skip
def test_bad_query_values_raise_naming_the_column(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gemm_features(_query(**kw), devices_frame())


def _query_frames(seed: int) -> list[pl.DataFrame]:
    """Small random query frames over every dtype, op and layout, with nulls, bad values and
    other column types (strings as categoricals, dims as floats or text)."""
    from hwsurrogate.surrogates.features.gemm import GEMM_DTYPE_SPECS, GEMM_LAYOUT_CODES, GEMM_OP_CODES

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(150):
        n = int(rng.integers(1, 9))

        def pick(options: list, p_odd: float = 0.05, odd: tuple = (None,), n: int = n) -> list:
            return [odd[int(rng.integers(len(odd)))] if rng.random() < p_odd else options[int(rng.integers(len(options)))]
                    for _ in range(n)]  # fmt: skip

        data = {
            "device_id": pick(["test/gpu-a", "test/gpu-b"], 0.03),
            "op": pick(sorted(GEMM_OP_CODES), 0.03, (None, "conv")),
            "m": pick([1, 7, 128, 4096], 0.04, (None, 0)),
            "n": pick([3, 64, 1000], 0.02, (None,)),
            "k": pick([1, 96, 8192]),
            "batch": pick([1, 2, 16], 0.02, (None,)),
            "dtype": pick(sorted(GEMM_DTYPE_SPECS), 0.03, (None, "fp7")),
            "layout": pick(sorted(GEMM_LAYOUT_CODES), 0.2),
        }
        frame = pl.DataFrame(
            data, schema_overrides={"m": pl.Int64, "n": pl.Int64, "k": pl.Int64, "batch": pl.Int64}
        )
        kind = rng.integers(6)
        if kind == 1:
            frame = frame.with_columns(pl.col("k").cast(pl.Float64) + 0.5 * (rng.random() < 0.3))
        elif kind == 2:
            frame = frame.with_columns(pl.col("m").cast(pl.String))
        elif kind == 3:
            frame = frame.with_columns(pl.col("dtype").cast(pl.Categorical))
        elif kind == 4:
            frame = frame.drop("batch" if rng.random() < 0.5 else "layout")
        frames.append(frame)
    return frames


def test_few_query_rows_read_at_once_equal_the_column_by_column_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """One-query frames are read with one rows() call: the arrays, and every error, are those of
    the column-by-column read."""
    from hwsurrogate.surrogates.features import gemm as features

    def outcome(frame: pl.DataFrame) -> object:
        try:
            return features.gemm_query_arrays(frame)
        except ValueError as exc:
            return str(exc)

    checked = errors = 0
    for frame in _query_frames(0):
        fast = outcome(frame)
        with monkeypatch.context() as m:
            m.setattr(features, "FEW_QUERY_ROWS", 0)
            slow = outcome(frame)
        if isinstance(slow, str):
            assert fast == slow
            errors += 1
            continue
        assert isinstance(fast, dict) and fast.keys() == slow.keys()
        for col in slow:
            assert fast[col].dtype == slow[col].dtype and fast[col].tolist() == slow[col].tolist(), col
        checked += 1
    assert checked > 50 and errors > 20


def _odd_devices() -> pl.DataFrame:
    """The test devices plus devices with missing, zero and negative descriptors."""
    odd = pl.DataFrame(
        {"device_id": ["odd/missing", "odd/zero", "odd/negative"], "cores": [None, 0, -4],
         "peak_fp32_gflops": [None, 0.0, 100.0], "peak_fp16_gflops": [5000.0, 0.0, None],
         "mem_bw_gbs": [None, 0.0, -30.0], "l2_mb": [None, 0.0, 2.0], "clock_mhz": [None, 0.0, 1000.0]}
    )  # fmt: skip
    return pl.concat([devices_frame(), odd], how="diagonal_relaxed")


def test_few_query_features_in_python_floats_equal_the_column_features_bit_for_bit() -> None:
    """One feature definition, two evaluations: a few queries on a DeviceIndex are computed in
    Python floats (FeatureRows), a batch on whole numpy columns; every column of every query
    has the same bits (NaN where NaN), on every dtype/op/layout, odd descriptors and shapes past
    int64 (those, and zero descriptors, take the column path)."""
    from hwsurrogate.surrogates.features import gemm as features

    devices = _odd_devices()
    index = features.DeviceIndex(devices)
    rng = np.random.default_rng(3)
    n = 4000
    dims = np.round(2 ** rng.uniform(0, 16, (n, 4))).astype(np.int64)
    dims[:, 3] = np.where(rng.random(n) < 0.5, 1, dims[:, 3] % 64 + 1)
    huge = rng.random((n, 4)) < 0.02
    dims[huge] = rng.integers(2**40, 2**52, huge.sum())
    frame = pl.DataFrame({
        "device_id": rng.choice(index.ids, n).tolist(), "op": rng.choice(sorted(features.GEMM_OP_CODES), n).tolist(),
        "m": dims[:, 0], "n": dims[:, 1], "k": dims[:, 2], "batch": dims[:, 3],
        "dtype": rng.choice(sorted(features.GEMM_DTYPE_SPECS), n).tolist(),
        "layout": rng.choice(sorted(features.GEMM_LAYOUT_CODES), n).tolist(),
    })  # fmt: skip
    q = features.gemm_query_arrays(frame)
    columns = features.gemm_feature_arrays(q, devices)  # a devices frame: whole columns
    assert not isinstance(columns, features.FeatureRows)
    assert list(columns) == list(features.GEMM_FEATURE_COLUMNS)
    rows = fallback = start = 0
    while start < n:
        size = int(rng.integers(1, features.SCALAR_QUERY_ROWS + 1))
        part = {c: v[start : start + size] for c, v in q.items()}
        got = features.gemm_feature_arrays(part, index)
        if isinstance(got, features.FeatureRows):
            rows += 1
            assert list(got) == list(features.GEMM_FEATURE_COLUMNS)
        else:
            fallback += 1
        for c in features.GEMM_FEATURE_COLUMNS:
            want = columns[c][start : start + size]
            assert got[c].dtype == np.float64
            same = (got[c].view(np.int64) == want.view(np.int64)) | (np.isnan(got[c]) & np.isnan(want))
            assert same.all(), (c, got[c], want, {k: v[:size].tolist() for k, v in part.items()})
        names = features.gemm_feature_names(device_features=bool(start % 2))
        np.testing.assert_array_equal(features.stack_features(got, names), features.stack_features(
            {c: columns[c][start : start + size] for c in names} | {"roofline_ms": want}, names))  # fmt: skip
        start += size
    assert rows > 250 and fallback > 100  # zero descriptors and huge shapes take the column path


def test_one_query_output_frame_equals_the_batch_frame() -> None:
    """The few-row output frame (from Python values) is the batch path's frame: values, Float64
    columns, and null power/energy where the model has no power target or the device no power."""
    from polars.testing import assert_frame_equal

    from hwsurrogate.surrogates.models.gemm import GemmPyfunc

    from .gemm_factories import fitted_gemm_pyfunc

    model, rows = fitted_gemm_pyfunc(max_iter=10)
    train_b = gemm_rows("test/gpu-b", 60, seed=4)
    runtime_ab = GemmRegressor(devices=devices_frame(), max_iter=10).fit(
        pl.concat([rows, train_b]), pl.concat([rows, train_b])["runtime_ms"]
    )
    queries = pl.concat([rows.head(10), train_b.head(10)]).select(
        "device_id", "op", "m", "n", "k", "batch", "dtype", "layout"
    )
    for m in (model, GemmPyfunc(model.runtime, None), GemmPyfunc(runtime_ab, model.power)):
        q = queries if m.runtime is runtime_ab else queries.head(10)
        batch = m.predict_frame(q)  # 10 or 20 rows: numpy columns
        for i in range(q.height):
            assert_frame_equal(m.predict_frame(q.slice(i, 1)), batch.slice(i, 1))
        assert_frame_equal(m.predict_frame(q.head(3)), batch.head(3))
    assert batch["power_w"].null_count() == 10  # gpu-b rows: no power model for them


def test_regressor_rejects_nan_and_nonpositive_targets() -> None:
    rows = gemm_rows("test/gpu-a", 20)
    y = rows["runtime_ms"].to_numpy().copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        GemmRegressor(devices=devices_frame(), max_iter=5).fit(rows, y)
    with pytest.raises(ValueError, match="must be > 0"):
        GemmRegressor(devices=devices_frame(), max_iter=5).fit(rows, -rows["runtime_ms"].to_numpy())


def test_model_fitted_with_an_older_feature_pipeline_refuses_to_predict() -> None:
    rows = gemm_rows("test/gpu-a", 20)
    model = GemmRegressor(devices=devices_frame(), max_iter=5).fit(rows, rows["runtime_ms"])
    assert len(model.predict(rows.head(2))) == 2
    del model.feature_version_  # as unpickled from a model logged before versions were recorded
    with pytest.raises(ValueError, match=r"feature pipeline v1.*retrain"):
        model.predict(rows.head(2))


def test_regressor_extrapolates_to_a_faster_device_through_the_roofline_ratio() -> None:
    train = pl.concat([gemm_rows("test/gpu-a", 200, seed=1), gemm_rows("test/gpu-b", 200, seed=2)])
    test = gemm_rows("test/gpu-new", 100, seed=3)
    model = GemmRegressor(devices=devices_frame(), max_iter=60).fit(train, train["runtime_ms"])
    with pytest.raises(ValueError, match="gpu-new"):
        model.predict(test)
    extra = devices_frame().filter(pl.col("device_id") == "test/gpu-new")
    pred = model.predict(test, extra_devices=extra)
    ape = np.abs(pred - test["runtime_ms"].to_numpy()) / test["runtime_ms"].to_numpy()
    # a raw-time tree would cap at the slowest training runtimes; the ratio target stays close
    assert np.median(ape) < 0.25


def _fill_store(store: DatasetStore) -> None:
    store.append("devices", devices_frame(), partition="test")
    store.append("gemm", pl.concat([gemm_rows("test/gpu-a", 150, seed=1), gemm_rows("test/gpu-b", 150, seed=2)]),
                 partition="test")  # fmt: skip


def _n_runs(experiment: str) -> int:
    exp = mlflow.get_experiment_by_name(experiment)
    return 0 if exp is None else len(MlflowClient().search_runs([exp.experiment_id]))


def test_train_logs_registers_and_reloads_with_identical_predictions(store: DatasetStore) -> None:
    _fill_store(store)
    res = train_gemm_model(store, FAST)
    assert res.version is not None
    run = MlflowClient().get_run(res.run_id)
    assert "test_runtime_ms_mape" in run.data.metrics
    assert "test_power_w_median_ape" in run.data.metrics
    arts = {a.path for a in MlflowClient().list_artifacts(res.run_id, "plots")}
    assert "plots/parity_test_runtime_ms.png" in arts
    queries = res.test.select("device_id", "op", "m", "n", "k", "batch", "dtype", "layout")
    direct = res.model.predict_frame(queries)
    loaded = mlflow.pyfunc.load_model(res.model_uri).predict(queries.to_pandas())
    np.testing.assert_array_equal(loaded["runtime_ms"].to_numpy(), direct["runtime_ms"].to_numpy())
    served = load_predictor("gemm", version=res.version)
    assert served.native is not None  # the service's path: polars straight into the model
    pred = served.predict(queries)
    assert pred.columns == ["runtime_ms", "power_w", "energy_j"]
    np.testing.assert_array_equal(pred["runtime_ms"].to_numpy(), direct["runtime_ms"].to_numpy())
    np.testing.assert_allclose(
        pred["energy_j"].to_numpy(), direct["power_w"].to_numpy() * direct["runtime_ms"].to_numpy() / 1000
    )


def _aliases(name: str) -> set[str]:
    try:
        return set(MlflowClient().get_registered_model(name).aliases)
    except mlflow.exceptions.MlflowException:  # not registered yet
        return set()


def test_promoted_gemm_model_is_cached_so_the_first_adaptation_skips_mlflow(
    store: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwsurrogate.surrogates.registry import loading as registry
    from hwsurrogate.surrogates.registry.cache import load_gemm_champion

    if "champion" in _aliases("hws-gemm"):  # the MLflow DB is shared by the session's tests
        MlflowClient().delete_registered_model_alias("hws-gemm", "champion")
    _fill_store(store)
    res = train_gemm_model(store, FAST)
    assert res.promoted

    def no_mlflow(*args: object, **kwargs: object) -> None:
        raise AssertionError("the champion cached at training time should have been used")

    monkeypatch.setattr(registry, "load_predictor", no_mlflow)
    champion = load_gemm_champion(store.root)
    assert champion.version == str(res.version)
    queries = res.test.select("device_id", "op", "m", "n", "k", "batch", "dtype", "layout")
    np.testing.assert_array_equal(
        champion.model.predict_frame(queries)["runtime_ms"].to_numpy(),
        res.model.predict_frame(queries)["runtime_ms"].to_numpy(),
    )


def test_served_model_refuses_an_unknown_device_by_name(store: DatasetStore) -> None:
    _fill_store(store)
    res = train_gemm_model(store, GemmTrainConfig(max_iter=10, register=False))
    model = mlflow.pyfunc.load_model(res.model_uri)
    with pytest.raises(Exception, match="test/gpu-new"):
        model.predict(_query(device_id="test/gpu-new").to_pandas())


def test_empty_store_raises_before_any_run(store: DatasetStore) -> None:
    before = _n_runs("gemm")
    with pytest.raises(TrainingDataError, match="0 training rows"):
        train_gemm_model(store, FAST)
    assert _n_runs("gemm") == before


def test_device_without_rows_raises_before_any_run(store: DatasetStore) -> None:
    _fill_store(store)
    before = _n_runs("gemm")
    with pytest.raises(TrainingDataError, match=r"no rows for device\(s\) \['test/gpu-new'\]"):
        train_gemm_model(store, GemmTrainConfig(devices=("test/gpu-a", "test/gpu-new")))
    assert _n_runs("gemm") == before


class _FrameStore:
    """A store stand-in returning fixed frames (the real store refuses NaN on write)."""

    root = "memory"

    def __init__(self, gemm: pl.DataFrame) -> None:
        self.frames = {"gemm": gemm, "devices": devices_frame()}

    def read(self, kind: str, **_: object) -> pl.DataFrame:
        return self.frames[kind]


def test_nan_targets_raise_before_any_run() -> None:
    rows = gemm_rows("test/gpu-a", 30).with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(float("nan"))
        .otherwise(pl.col("runtime_ms"))
        .alias("runtime_ms")
    )
    before = _n_runs("gemm")
    with pytest.raises(TrainingDataError, match="NaN/missing runtime_ms"):
        train_gemm_model(_FrameStore(rows), FAST)  # type: ignore[arg-type]
    assert _n_runs("gemm") == before


def test_device_without_published_peak_uses_its_measured_gemm_throughput() -> None:
    import json

    from hwsurrogate.surrogates.features import device_table

    micro = {"micro_benchmarks": {"gemm_gflops": {"fp32": 52.5, "fp64": 26.0}}}
    devices = pl.DataFrame(
        {
            "device_id": ["local/box-cpu", "spec/gpu", "bare/cpu"],
            "peak_fp32_gflops": [None, 1000.0, None],
            "mem_bw_gbs": [20.0, 500.0, 10.0],
            "descriptors": [json.dumps(micro), json.dumps(micro), None],
        }
    )
    table = device_table(devices)
    assert table["peak_fp32_gflops"].to_list() == [None, 52.5, 1000.0]  # sorted: bare, local, spec


def test_cold_launch_rows_are_left_out_of_training_by_default(tmp_path) -> None:
    from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, load_gemm_frame

    store = DatasetStore(tmp_path / "store")
    rows = gemm_rows("test/gpu-a", 40, seed=1)
    cold = rows.head(5).with_columns(
        (pl.col("runtime_ms") * 100).alias("runtime_ms"),
        pl.lit('{"cold_launch": true}').alias("extra"),
        (pl.col("measurement_id") + "-cold").alias("measurement_id"),
    )
    store.append("gemm", pl.concat([rows, cold], how="diagonal_relaxed"), partition="t")
    store.append("devices", devices_frame(), partition="t")
    steady, _ = load_gemm_frame(store, GemmTrainConfig())
    everything, _ = load_gemm_frame(store, GemmTrainConfig(include_cold_launches=True))
    assert (steady.height, everything.height) == (40, 45)


def test_unstated_layout_is_featurised_as_nn() -> None:
    base = {"device_id": ["test/gpu-a"] * 2, "op": ["gemm"] * 2, "m": [64, 64], "n": [64, 64], "k": [64, 64],
            "batch": [1, 1], "dtype": ["fp32"] * 2}  # fmt: skip
    stated = gemm_features(pl.DataFrame({**base, "layout": ["nn", "nn"]}), devices_frame())
    unstated = gemm_features(pl.DataFrame({**base, "layout": [None, None]}), devices_frame())
    assert unstated["layout_code"].to_list() == stated["layout_code"].to_list()


def test_alignment_bits_count_trailing_zero_bits_capped() -> None:
    from hwsurrogate.surrogates.features import GEMM_MAX_ALIGN_BITS, alignment_bits

    got = alignment_bits(np.array([1, 2, 12, 1024, 50272, 3, 768]))
    assert got.tolist() == [0.0, 1.0, 2.0, float(GEMM_MAX_ALIGN_BITS), 5.0, 0.0, 7.0]


def test_gemm_features_give_n_and_k_alignment_and_their_minimum() -> None:
    from hwsurrogate.surrogates.features import gemm_features

    q = pl.DataFrame({"device_id": ["test/gpu-a"] * 2, "op": ["linear", "bmm"], "m": [7, 7],
                      "n": [768, 1000], "k": [50272, 4097], "batch": [1, 2], "dtype": ["fp32"] * 2})  # fmt: skip
    f = gemm_features(q, devices_frame())
    assert f["align_n"].to_list() == [7.0, 3.0]  # 768 = 256 x 3 (capped at 7); 1000 = 8 x 125
    assert f["align_k"].to_list() == [5.0, 0.0]  # 50272 = 32 x 1571; 4097 odd
    assert f["align_nk"].to_list() == [5.0, 0.0]
