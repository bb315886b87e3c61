"""The local copy of served models that makes a one-off `hws predict` fast (registry/loading.load_served)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from hwsurrogate.cli.predict import predict_gemm, predict_latency
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.settings import get_settings
from hwsurrogate.surrogates.models.frozen import FrozenServed
from hwsurrogate.surrogates.registry import cache, loading
from hwsurrogate.surrogates.registry.cache import served_model_cache, tracking_stamp
from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

from .gemm_factories import devices_frame, gemm_rows

FAST = GemmTrainConfig(max_iter=20, test_frac=0.25, min_power_rows=20)
QUERY = pl.DataFrame([{"device_id": "test/gpu-a", "op": "bmm", "m": 128, "n": 256, "k": 64, "batch": 2,
                       "dtype": "fp32", "layout": "nn"}])  # fmt: skip


def _train(store: DatasetStore, seed: int) -> object:
    res = train_gemm_model(store, dataclasses.replace(FAST, seed=seed))
    MlflowClient().set_registered_model_alias("hws-gemm", "champion", str(res.version))
    return res


@pytest.fixture
def filled(store: DatasetStore) -> DatasetStore:
    store.append("devices", devices_frame(), partition="test")
    store.append("gemm", pl.concat([gemm_rows("test/gpu-a", 150, seed=1), gemm_rows("test/gpu-b", 150, seed=2)]),
                 partition="test")  # fmt: skip
    return store


def _no_mlflow(*args: object, **kwargs: object) -> None:
    raise AssertionError("MLflow was asked although the local pointer is current")


def test_second_load_answers_from_the_local_copy_without_asking_mlflow(
    filled: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = _train(filled, seed=0)
    first = cache.load_served("gemm", store_root=filled.root)  # resolves through MLflow, writes the copy
    assert first.version == str(res.version)
    monkeypatch.setattr(loading, "resolve_version", _no_mlflow)
    monkeypatch.setattr(loading, "load_predictor", _no_mlflow)
    second = cache.load_served("gemm", store_root=filled.root)
    assert second.version == first.version
    np.testing.assert_array_equal(
        second.predict(QUERY)["runtime_ms"].to_numpy(), res.model.predict_frame(QUERY)["runtime_ms"].to_numpy()
    )


def test_a_moved_alias_is_never_answered_from_a_stale_pointer(filled: DatasetStore) -> None:
    """Without the stamp check the pointer written for v1 would keep answering after v2 is promoted."""
    v1 = _train(filled, seed=0)
    assert cache.load_served("gemm", store_root=filled.root).version == str(v1.version)
    v2 = _train(filled, seed=1)  # a new version, made champion: MLflow's database changed
    got = cache.load_served("gemm", store_root=filled.root)
    assert got.version == str(v2.version) != str(v1.version)
    MlflowClient().set_registered_model_alias("hws-gemm", "champion", str(v1.version))  # moved back
    assert cache.load_served("gemm", store_root=filled.root).version == str(v1.version)


def test_pinned_versions_are_cached_apart_from_the_champion(filled: DatasetStore) -> None:
    v1 = _train(filled, seed=0)
    v2 = _train(filled, seed=1)
    assert cache.load_served("gemm", version=v1.version, store_root=filled.root).version == str(v1.version)
    assert cache.load_served("gemm", store_root=filled.root).version == str(v2.version)
    copies = served_model_cache("hws-gemm", filled.root)
    assert copies.ref(f"v{v1.version}") is not None and copies.ref("champion") is not None


def test_a_damaged_copy_falls_back_to_mlflow(filled: DatasetStore) -> None:
    res = _train(filled, seed=0)
    cache.load_served("gemm", store_root=filled.root)
    copies = served_model_cache("hws-gemm", filled.root)
    copies.path(copies.ref("champion")["key"]).write_bytes(b"not a pickle")  # type: ignore[index]
    assert cache.load_served("gemm", store_root=filled.root).version == str(res.version)


def test_tracking_stamp_changes_with_every_write_and_is_none_for_servers(tmp_path: object) -> None:
    uri = get_settings(fresh=True).tracking_uri()
    MlflowClient().search_experiments()  # make sure the database exists
    before = tracking_stamp(uri)
    assert before is not None
    MlflowClient().create_experiment(f"stamp-{np.random.default_rng().integers(1 << 30)}")
    assert tracking_stamp(uri) != before
    assert tracking_stamp("http://localhost:5000") is None
    assert tracking_stamp("sqlite:////nonexistent/mlflow.db") is None


def test_cli_checks_the_input_before_loading_any_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "load_served", _no_mlflow)
    res = CliRunner().invoke(predict_gemm, ["--device", "x/y", "-m", "0", "-n", "8", "-k", "8"])
    assert res.exit_code != 0 and "positive integer" in res.output
    res = CliRunner().invoke(predict_latency, ["--device", "help/pixel2", "--arch-key", "|not-a-key|"])
    assert res.exit_code != 0 and "not a valid nb201 key" in res.output


def test_fast_path_imports_neither_mlflow_nor_torch_nor_sklearn_nor_pandas(filled: DatasetStore) -> None:
    """The point of the pointer and the frozen copy: with the pointer current, a one-off prediction of a
    few rows imports neither MLflow nor scikit-learn (seconds each), pandas, scipy.stats or torch."""
    _train(filled, seed=0)
    expected = cache.load_served("gemm", store_root=filled.root).predict(QUERY)
    code = (
        "import sys, polars as pl; from hwsurrogate.surrogates.registry.cache import load_served; "
        f"p = load_served('gemm', store_root={str(filled.root)!r}); "
        f"out = p.predict(pl.DataFrame({QUERY.to_dicts()!r})); "
        "print(out['runtime_ms'][0], out['power_w'][0]); "
        "print(sorted(m for m in ('mlflow', 'torch', 'sklearn', 'pandas', 'scipy.stats') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    values, imported = out.stdout.strip().splitlines()
    assert imported == "[]"
    np.testing.assert_allclose([float(v) for v in values.split()], expected.row(0)[:2], rtol=1e-9)


def test_the_frozen_copy_answers_as_the_full_one_and_a_damaged_one_is_replaced(filled: DatasetStore) -> None:
    _train(filled, seed=0)
    first = cache.load_served("gemm", store_root=filled.root)  # through MLflow: writes the copy and its frozen form
    copies = served_model_cache("hws-gemm", filled.root)
    key = copies.ref("champion")["key"]  # type: ignore[index]
    frozen = cache.frozen_path(copies, key)
    assert frozen.is_file() and not isinstance(first.native, FrozenServed)
    second = cache.load_served("gemm", store_root=filled.root)
    assert isinstance(second.native, FrozenServed)
    np.testing.assert_allclose(second.predict(QUERY).to_numpy(), first.predict(QUERY).to_numpy(), rtol=1e-9)
    frozen.write_bytes(b"not a pickle")  # damaged: the full copy answers and the frozen form is rewritten
    third = cache.load_served("gemm", store_root=filled.root)
    assert not isinstance(third.native, FrozenServed)
    np.testing.assert_allclose(third.predict(QUERY).to_numpy(), first.predict(QUERY).to_numpy(), rtol=1e-9)
    assert isinstance(cache.load_served("gemm", store_root=filled.root).native, FrozenServed)
    copies.path(key).unlink()  # a frozen form is never used without its full copy beside it
    fourth = cache.load_served("gemm", store_root=filled.root)
    assert not isinstance(fourth.native, FrozenServed) and copies.path(key).is_file()


def test_served_key_names_the_copy_without_reading_it_and_load_served_copy_loads_it(
    filled: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `hws serve` uses: a child calls served_key (the copy made where missing), the server
    loads the copy by key, its frozen form, without MLflow."""
    res = _train(filled, seed=0)
    key = cache.served_key("gemm", store_root=filled.root)  # through MLflow: writes the copy
    copies = served_model_cache("hws-gemm", filled.root)
    assert key == copies.ref("champion")["key"] and copies.path(key).is_file()  # type: ignore[index]
    monkeypatch.setattr(loading, "resolve_version", _no_mlflow)
    monkeypatch.setattr(loading, "load_predictor", _no_mlflow)
    frozen = cache.frozen_path(copies, key)
    saved = {path: path.read_bytes() for path in (copies.path(key), frozen)}
    for path in saved:
        path.write_bytes(b"not a pickle")  # the pointer is current: served_key reads neither
    assert cache.served_key("gemm", store_root=filled.root) == key
    for path, data in saved.items():
        path.write_bytes(data)
    got = cache.load_served_copy("gemm", key, filled.root)
    assert isinstance(got.native, FrozenServed) and got.version == str(res.version)
    expected = res.model.predict_frame(QUERY).to_numpy()
    np.testing.assert_allclose(got.predict(QUERY).to_numpy(), expected, rtol=1e-9)
    with pytest.raises(FileNotFoundError):
        cache.load_served_copy("gemm", "hws-gemm-v99-nope", filled.root)
