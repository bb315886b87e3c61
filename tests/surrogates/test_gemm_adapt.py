"""Few-shot GEMM adaptation: fitted correction, persistence, and refusal of bad measurements."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.gemm_adapt import (
    AdaptationError,
    adapt_gemm,
    adapted_dir,
    load_adapted,
    predict_adapted,
)
from hwsurrogate.surrogates.gemm_model import GemmPyfunc, GemmRegressor

from .gemm_factories import devices_frame, gemm_rows


@dataclass
class _Predictor:
    model: GemmPyfunc
    name: str = "hws-gemm"
    version: str = "7"


@pytest.fixture(scope="module")
def predictor() -> _Predictor:
    train = pl.concat([gemm_rows("test/gpu-a", 200, seed=1), gemm_rows("test/gpu-b", 200, seed=2)])
    return _Predictor(
        GemmPyfunc(GemmRegressor(devices=devices_frame(), max_iter=40).fit(train, train["runtime_ms"]))
    )


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
