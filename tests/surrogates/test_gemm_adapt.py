"""Few-shot GEMM adaptation: fitted correction, persistence, and refusal of bad measurements."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.adapt import adapt_gemm, predict_adapted
from hwsurrogate.surrogates.fewshot.gemm import AdaptationError, GemmAdaptConfig, GemmCorrection
from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor
from hwsurrogate.surrogates.registry.adapted import adapted_dir, load_adapted

from .gemm_factories import devices_frame, gemm_rows


@dataclass
class _Predictor:
    model: GemmPyfunc
    name: str = "hws-gemm"
    version: str = "7"


@pytest.fixture(scope="module")
def predictor() -> _Predictor:
    from threadpoolctl import threadpool_limits

    train = pl.concat([gemm_rows("test/gpu-a", 200, seed=1), gemm_rows("test/gpu-b", 200, seed=2)])
    # one OpenMP thread: a tiny fit is faster so, and does not spin against other jobs on the cores
    with threadpool_limits(limits=1, user_api="openmp"):
        model = GemmRegressor(devices=devices_frame(), max_iter=40).fit(train, train["runtime_ms"])
    return _Predictor(GemmPyfunc(model))


@pytest.fixture
def store_with_devices(store: DatasetStore) -> DatasetStore:
    store.append("devices", devices_frame(), partition="test")
    return store


def _measurements(n: int, *, slow: float = 1.5, seed: int = 5) -> pl.DataFrame:
    rows = gemm_rows("test/gpu-new", n, seed=seed, power=False)
    return rows.select("op", "m", "n", "k", "batch", "dtype", pl.col("runtime_ms") * slow)


def test_adaptation_learns_the_new_devices_scale_and_is_persisted(store_with_devices, predictor) -> None:
    meas = _measurements(10)
    record, path = adapt_gemm("test/gpu-new", meas, store_root=store_with_devices.root, predictor=predictor)
    assert path == adapted_dir(store_with_devices.root) / "test__gpu-new.json"
    saved = json.loads(path.read_text())
    assert (saved["device_id"], saved["model_name"], saved["model_version"]) == (
        "test/gpu-new",
        "hws-gemm",
        "7",
    )
    assert record.fit_mape_after < record.fit_mape_before
    # the device's true runtimes are 1.5x the synthetic roofline: held-out shapes get closer too
    test = _measurements(60, seed=9)
    y = test["runtime_ms"].to_numpy()
    zero = predictor.model.runtime.predict(
        test.with_columns(pl.lit("test/gpu-new").alias("device_id")),
        extra_devices=devices_frame().filter(pl.col("device_id") == "test/gpu-new"),
    )
    adapted = predict_adapted(predictor.model, load_adapted("test/gpu-new", store_with_devices.root), test)
    err = lambda p: np.median(np.abs(p - y) / y)  # noqa: E731
    assert err(adapted["runtime_ms"].to_numpy()) < err(zero)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.head(2), "need at least 3"),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 1)
                .then(None)
                .otherwise(pl.col("runtime_ms"))
                .alias("runtime_ms")
            ),
            "'runtime_ms' is NaN/missing",
        ),  # fmt: skip
        (lambda f: f.with_columns(-pl.col("runtime_ms")), "'runtime_ms' must be > 0"),
        (lambda f: pl.concat([f, f.head(1)]), "duplicate shape in row"),
        (lambda f: f.drop("k"), r"miss column\(s\) \['k'\]"),
    ],
)
def test_bad_measurements_raise_and_write_nothing(store_with_devices, predictor, mutate, message) -> None:
    with pytest.raises(AdaptationError, match=message):
        adapt_gemm(
            "test/gpu-new", mutate(_measurements(10)), store_root=store_with_devices.root, predictor=predictor
        )
    assert not adapted_dir(store_with_devices.root).exists()


def test_a_training_device_name_is_refused(store_with_devices, predictor) -> None:
    with pytest.raises(AdaptationError, match="already known"):
        adapt_gemm("test/gpu-a", _measurements(10), store_root=store_with_devices.root, predictor=predictor)
    assert load_adapted("test/gpu-a", store_with_devices.root) is None


def test_device_without_descriptors_is_refused(store: DatasetStore, predictor) -> None:
    with pytest.raises(AdaptationError, match="no descriptors for device 'test/mystery'"):
        adapt_gemm("test/mystery", _measurements(10), store_root=store.root, predictor=predictor)


def test_descriptors_may_come_with_the_measurements(store: DatasetStore, predictor, tmp_path: Path) -> None:
    meas = _measurements(10).with_columns(pl.lit(6000.0).alias("peak_fp32_gflops"), pl.lit(600.0).alias("mem_bw_gbs"),
                                          pl.lit(30).alias("cores"))  # fmt: skip
    record, _ = adapt_gemm("lab/gpu-x", meas, store_root=store.root, predictor=predictor)
    assert record.descriptors["peak_fp32_gflops"] == 6000.0


def _throttled(n: int, *, seed: int, peak_factor: float) -> pl.DataFrame:
    """Shapes measured on gpu-new whose sustained peak is ``peak_factor`` x its spec sheet."""
    from .gemm_factories import synthetic_runtime

    rng = np.random.default_rng(seed)
    m, nn, k = (2 ** rng.integers(5, 12, n) for _ in range(3))
    batch = rng.integers(1, 4, n)
    rt = synthetic_runtime(m, nn, k, batch, 6000.0 * peak_factor, 600.0)
    frame = pl.DataFrame({"op": ["gemm"] * n, "m": m, "n": nn, "k": k, "batch": batch, "dtype": ["fp32"] * n,
                          "runtime_ms": rt})  # fmt: skip
    return frame.unique(["m", "n", "k", "batch"], keep="first", maintain_order=True)


def test_spec_calibration_finds_a_throttled_peak_and_beats_a_plain_scale(
    store_with_devices, predictor
) -> None:
    # the device computes at 0.35x its paper peak but streams memory at full speed: only a
    # separate compute scale fixes both compute- and memory-bound shapes
    meas = _throttled(12, seed=3, peak_factor=0.35)
    record, _ = adapt_gemm("test/gpu-new", meas, store_root=store_with_devices.root, predictor=predictor)
    assert record.correction.peak_scale <= 0.6
    assert record.correction.bw_scale >= 0.7
    plain, _ = adapt_gemm(
        "test/gpu-new", meas, store_root=store_with_devices.root, predictor=predictor,
        config=GemmAdaptConfig(calibrate_specs=False),
    )  # fmt: skip
    test = _throttled(80, seed=11, peak_factor=0.35)
    y = test["runtime_ms"].to_numpy()

    def err(rec) -> float:
        pred = predict_adapted(predictor.model, rec, test)["runtime_ms"].to_numpy()
        return float(np.median(np.abs(pred - y) / y))

    assert err(record) < err(plain)


def test_records_without_spec_scales_still_load_as_unscaled(store_with_devices, predictor) -> None:
    record, path = adapt_gemm("test/gpu-new", _measurements(10), store_root=store_with_devices.root,
                              predictor=predictor)  # fmt: skip
    old = json.loads(path.read_text())
    for key in ("peak_scale", "bw_scale"):
        del old["correction"][key]
    for key in ("load_seconds", "fit_seconds"):
        del old[key]
    path.write_text(json.dumps(old))
    loaded = load_adapted("test/gpu-new", store_with_devices.root)
    assert (loaded.correction.peak_scale, loaded.correction.bw_scale) == (1.0, 1.0)
    assert loaded.correction.coef == record.correction.coef


def test_effective_descriptors_scale_peaks_and_bandwidth_only() -> None:
    desc = devices_frame().filter(pl.col("device_id") == "test/gpu-new")
    corr = GemmCorrection([0.0, 0.0, 0.0, 0.0], [0.0] * 3, [1.0] * 3, peak_scale=0.5, bw_scale=0.25)
    eff = corr.effective_descriptors(desc).row(0, named=True)
    assert (eff["peak_fp32_gflops"], eff["peak_fp16_gflops"], eff["mem_bw_gbs"]) == (3000.0, 12000.0, 150.0)
    assert (eff["cores"], eff["l2_mb"], eff["clock_mhz"]) == (30, 16.0, 1900.0)


def test_champion_is_loaded_through_mlflow_once_then_from_a_cache_keyed_by_version(
    store_with_devices, predictor, monkeypatch
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from hwsurrogate.surrogates.registry import loading as registry
    from hwsurrogate.surrogates.registry.cache import load_gemm_champion
    from hwsurrogate.surrogates.registry.pyfunc import log_gemm_model
    from hwsurrogate.surrogates.registry.tracking import start_run

    example = gemm_rows("test/gpu-a", 5, seed=1, power=False)
    with start_run("gemm", run_name="cache-test"):
        info = log_gemm_model(predictor.model, example)
    first_version = mlflow.register_model(info.model_uri, "hws-gemm").version
    MlflowClient().set_registered_model_alias("hws-gemm", "champion", first_version)
    first = load_gemm_champion(store_with_devices.root)
    assert first.version == str(first_version)
    cached = list((adapted_dir(store_with_devices.root) / ".models").glob(f"hws-gemm-v{first_version}-*.pkl"))
    assert len(cached) == 1

    def no_mlflow(*args, **kwargs):
        raise AssertionError("the cached champion should have been used")

    monkeypatch.setattr(registry, "load_predictor", no_mlflow)
    again = load_gemm_champion(store_with_devices.root)
    q = _measurements(5).with_columns(pl.lit("test/gpu-a").alias("device_id"))
    np.testing.assert_array_equal(again.model.runtime.predict(q), first.model.runtime.predict(q))
    # a moved alias is a new key: the old pickle is not reused, MLflow is asked again
    newer = mlflow.register_model(info.model_uri, "hws-gemm")
    MlflowClient().set_registered_model_alias("hws-gemm", "champion", newer.version)
    with pytest.raises(AssertionError, match="cached champion"):
        load_gemm_champion(store_with_devices.root)


# --------------------------------------------------------------------------- step 3: source-GPU term


def test_nearest_sources_orders_training_gpus_by_peak_and_bandwidth_distance(predictor) -> None:
    from hwsurrogate.surrogates.fewshot.gemm import nearest_sources

    runtime = predictor.model.runtime
    new = devices_frame().filter(pl.col("device_id") == "test/gpu-new")  # 6000 GFLOP/s, 600 GB/s
    # gpu-b (3000, 300) is one octave away in both; gpu-a (1000, 100) about 2.6 octaves
    assert nearest_sources(runtime, new, 5) == ["test/gpu-b", "test/gpu-a"]
    assert nearest_sources(runtime, new, 1) == ["test/gpu-b"]
    assert nearest_sources(runtime, new, 0) == []
    no_bw = new.with_columns(pl.lit(None, dtype=pl.Float64).alias("mem_bw_gbs"))
    assert nearest_sources(runtime, no_bw, 5) == []  # nothing to measure a distance with


def test_source_term_ridge_recovers_a_known_linear_gap_and_shrinks_with_a_large_ridge() -> None:
    from hwsurrogate.surrogates.fewshot.gemm import fit_source_term

    gaps = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
    residual = 0.2 + 0.5 * (gaps[:, 0] - 2.5)  # only the first source matters
    center, coef = fit_source_term(gaps, residual, GemmAdaptConfig(source_ridge=1e-9, ridge_offset=1e-9))
    assert center == pytest.approx([2.5, 0.5])
    assert coef == pytest.approx([0.2, 0.5, 0.0], abs=1e-6)
    _, shrunk = fit_source_term(gaps, residual, GemmAdaptConfig(source_ridge=1e9, ridge_offset=1e-9))
    assert shrunk[0] == pytest.approx(0.2, abs=1e-6) and np.abs(shrunk[1:]).max() < 1e-6


def _like_gpu_a(predictor, n: int, seed: int) -> pl.DataFrame:
    """Shapes whose runtime on the new GPU is 0.4x what the model predicts for gpu-a: a pattern
    the spec sheet of gpu-new cannot explain but the source term can (beta_a = 1)."""
    rows = gemm_rows("test/gpu-new", n, seed=seed, power=False)
    on_a = predictor.model.runtime.predict(rows.with_columns(pl.lit("test/gpu-a").alias("device_id")))
    return rows.select("op", "m", "n", "k", "batch", "dtype").with_columns(
        pl.Series("runtime_ms", 0.4 * on_a)
    )


def test_source_term_carries_a_known_gpus_shape_pattern_and_survives_reload(
    store_with_devices, predictor
) -> None:
    from dataclasses import replace

    meas = _like_gpu_a(predictor, 12, seed=21)
    root = store_with_devices.root
    steps123 = replace(GemmAdaptConfig(), use_gp=False)  # the source term alone, without step 4
    record, _ = adapt_gemm("test/gpu-new", meas, store_root=root, predictor=predictor, config=steps123)
    assert record.correction.source_devices == ["test/gpu-b", "test/gpu-a"]
    assert len(record.correction.source_coef) == 3 and len(record.correction.source_center) == 2
    test = _like_gpu_a(predictor, 80, seed=23)
    y = test["runtime_ms"].to_numpy()
    loaded = load_adapted("test/gpu-new", root)
    with_src = predict_adapted(predictor.model, loaded, test)["runtime_ms"].to_numpy()
    assert with_src == pytest.approx(predict_adapted(predictor.model, record, test)["runtime_ms"].to_numpy())
    without, _ = adapt_gemm("test/gpu-new", meas, store_root=root, predictor=predictor,
                            config=replace(steps123, use_sources=False))  # fmt: skip
    assert without.correction.source_devices == []
    no_src = predict_adapted(predictor.model, without, test)["runtime_ms"].to_numpy()
    err = lambda p: float(np.mean(np.abs(p - y) / y))  # noqa: E731
    assert err(with_src) < 0.75 * err(no_src)  # 0.14 vs 0.24 when written


def test_source_term_needs_min_for_sources_measurements(store_with_devices, predictor) -> None:
    meas = _like_gpu_a(predictor, 4, seed=31)  # below the default of 5
    record, _ = adapt_gemm("test/gpu-new", meas, store_root=store_with_devices.root, predictor=predictor)
    assert (record.correction.source_devices, record.correction.source_coef) == ([], [])


def _assert_old_record_predicts_as_without_the_step(
    root, predictor, config, dropped: tuple[str, ...]
) -> None:
    """Adapt with a step off, delete that step's keys from the saved record (as a record written
    before the step existed), reload: predictions must equal the step-off adaptation's."""
    meas = _measurements(10)
    plain, path = adapt_gemm("test/gpu-new", meas, store_root=root, predictor=predictor, config=config)
    old = json.loads(path.read_text())
    for key in dropped:
        del old["correction"][key]
    path.write_text(json.dumps(old))
    loaded = load_adapted("test/gpu-new", root)
    test = _measurements(20, seed=41)
    assert predict_adapted(predictor.model, loaded, test)["runtime_ms"].to_numpy() == pytest.approx(
        predict_adapted(predictor.model, plain, test)["runtime_ms"].to_numpy()
    )


def test_records_without_a_source_term_load_and_predict_as_steps_one_and_two(
    store_with_devices, predictor
) -> None:
    from dataclasses import replace

    _assert_old_record_predicts_as_without_the_step(
        store_with_devices.root, predictor, replace(GemmAdaptConfig(), use_sources=False),
        ("source_devices", "source_center", "source_coef"),
    )  # fmt: skip


def test_gp_weights_interpolate_the_support_and_vanish_far_from_it() -> None:
    from hwsurrogate.surrogates.fewshot.gemm import _sq_exp, fit_gp_residual

    cfg = GemmAdaptConfig(gp_lengthscale=1.0, gp_signal_sd=1.0, gp_noise_sd=1e-4)
    x = np.array([[0.0], [3.0], [6.0]])
    r = np.array([0.3, -0.2, 0.5])
    alpha = fit_gp_residual(x, r, cfg)
    at_support = _sq_exp(x, x, 1.0, 1.0) @ alpha
    assert at_support == pytest.approx(r, abs=1e-3)  # (almost) noise-free: interpolates
    far = _sq_exp(np.array([[40.0]]), x, 1.0, 1.0) @ alpha
    assert abs(far[0]) < 1e-9  # far from every measured shape: no correction (steps 1-3 stand)
    noisy = fit_gp_residual(x, r, GemmAdaptConfig(gp_lengthscale=1.0, gp_signal_sd=1.0, gp_noise_sd=10.0))
    assert np.abs(_sq_exp(x, x, 1.0, 1.0) @ noisy).max() < 0.02  # a large noise sd ignores the data


def _bumped(predictor, n: int, seed: int) -> pl.DataFrame:
    """Shapes on gpu-new whose runtime is the spec-only prediction x a smooth bump in log2(m):
    1.8x slower around m = 2**7, right at both ends. No global (scale, slope, source) term can
    express a hump; a GP over shape space can."""
    rows = gemm_rows("test/gpu-new", n, seed=seed, power=False).unique(
        ["m", "n", "k", "batch"], keep="first", maintain_order=True
    )
    desc = devices_frame().filter(pl.col("device_id") == "test/gpu-new")
    spec_only = predictor.model.runtime.predict(rows, extra_devices=desc)
    bump = np.exp(np.log(1.8) * np.exp(-((np.log2(rows["m"].to_numpy()) - 7.0) ** 2) / (2 * 1.2**2)))
    return rows.select("op", "m", "n", "k", "batch", "dtype").with_columns(
        pl.Series("runtime_ms", spec_only * bump)
    )


def test_gp_step_learns_a_local_bump_that_steps_one_to_three_cannot_and_survives_reload(
    store_with_devices, predictor
) -> None:
    from dataclasses import replace

    root = store_with_devices.root
    meas = _bumped(predictor, 60, seed=51)
    record, _ = adapt_gemm("test/gpu-new", meas, store_root=root, predictor=predictor)
    assert len(record.correction.gp_alpha) == meas.height and len(record.correction.gp_x) == meas.height
    loaded = load_adapted("test/gpu-new", root)
    test = _bumped(predictor, 200, seed=53)
    y = test["runtime_ms"].to_numpy()
    with_gp = predict_adapted(predictor.model, loaded, test)["runtime_ms"].to_numpy()
    assert with_gp == pytest.approx(predict_adapted(predictor.model, record, test)["runtime_ms"].to_numpy())
    without, _ = adapt_gemm("test/gpu-new", meas, store_root=root, predictor=predictor,
                            config=replace(GemmAdaptConfig(), use_gp=False))  # fmt: skip
    assert without.correction.gp_alpha == []
    no_gp = predict_adapted(predictor.model, without, test)["runtime_ms"].to_numpy()
    err = lambda p: float(np.mean(np.abs(p - y) / y))  # noqa: E731
    assert err(with_gp) < 0.6 * err(no_gp)


def test_records_without_a_gp_load_and_predict_as_steps_one_to_three(store_with_devices, predictor) -> None:
    from dataclasses import replace

    _assert_old_record_predicts_as_without_the_step(
        store_with_devices.root, predictor, replace(GemmAdaptConfig(), use_gp=False),
        ("gp_x", "gp_alpha", "gp_lengthscale", "gp_signal_sd", "gp_op_distance"),
    )  # fmt: skip


def test_gp_support_is_capped_so_large_measurement_files_stay_fast(store_with_devices, predictor) -> None:
    from dataclasses import replace

    meas = _measurements(40, seed=61).unique(["op", "m", "n", "k", "batch"], keep="first")
    cfg = replace(GemmAdaptConfig(), gp_max_points=12)
    record, _ = adapt_gemm("test/gpu-new", meas, store_root=store_with_devices.root, predictor=predictor,
                           config=cfg)  # fmt: skip
    assert len(record.correction.gp_alpha) == 12 and record.n_measurements == meas.height


def _shape_grid() -> pl.DataFrame:
    """A crowded cluster of near-identical small bmm shapes plus a few far-away ones of each op."""
    crowd = [("bmm", 64, 64, 64 + 8 * i, 1) for i in range(40)]
    spread = [("bmm", 4096, 4096, 4096, 8), ("bmm", 16, 16, 16, 1), ("linear", 2048, 1024, 4096, 4),
              ("linear", 32, 8192, 128, 1), ("bmm", 16, 4096, 16, 64)]  # fmt: skip
    rows = crowd + spread
    return pl.DataFrame(rows, schema=["op", "m", "n", "k", "batch"], orient="row")


def test_suggested_shapes_spread_over_shape_space_instead_of_the_crowd() -> None:
    from hwsurrogate.surrogates.fewshot.gemm import suggest_shapes

    cand = _shape_grid()
    desc = devices_frame().filter(pl.col("device_id") == "test/gpu-new")
    idx = suggest_shapes(cand, desc, 6)
    assert len(idx) == 6 and len(set(idx.tolist())) == 6
    picked = cand[idx]
    assert (idx < 40).sum() == 1  # one representative of the crowd, not six of them
    assert set(picked["op"].to_list()) == {"bmm", "linear"}
    assert np.array_equal(idx, suggest_shapes(cand, desc, 6))  # deterministic for the same seed


@pytest.mark.parametrize("n", [0, 46])
def test_suggest_shapes_refuses_an_impossible_count(n: int) -> None:
    from hwsurrogate.surrogates.fewshot.gemm import suggest_shapes

    desc = devices_frame().filter(pl.col("device_id") == "test/gpu-new")
    with pytest.raises(AdaptationError, match="n"):
        suggest_shapes(_shape_grid(), desc, n)


def test_gemm_shots_cli_writes_the_suggested_shapes(store_with_devices, tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from hwsurrogate.cli.gemm_shots import gemm_shots as suggest_shapes_cli

    monkeypatch.setenv("HWSURROGATE_STORE", str(store_with_devices.root))
    cand = tmp_path / "cand.csv"
    _shape_grid().write_csv(cand)
    out = tmp_path / "pick.csv"
    res = CliRunner().invoke(suggest_shapes_cli, ["--device", "test/gpu-new", "--candidates", str(cand),
                                                  "-n", "4", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert pl.read_csv(out).height == 4 and "runtime_ms" in res.output
    bad = CliRunner().invoke(suggest_shapes_cli, ["--device", "test/nowhere", "--candidates", str(cand)])
    assert bad.exit_code != 0 and "test/nowhere" in str(bad.exception)
