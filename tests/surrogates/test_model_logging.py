"""How models are logged: models-from-code with a checked pickle (no cloudpickle, no MLflow warning),
tampered artifacts refused before anything runs, and models logged the old way still served."""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import ModelArtifactError
from hwsurrogate.surrogates.models.latency_trees import MultiDeviceLatencyTrees
from hwsurrogate.surrogates.registry.artifact_model import (
    MODEL_ARTIFACT,
    ArtifactModel,
    load_model_artifact,
    project_model,
)
from hwsurrogate.surrogates.registry.cache import load_served
from hwsurrogate.surrogates.registry.loading import load_predictor
from hwsurrogate.surrogates.registry.pyfunc import LatencyPyfunc, frame_signature, log_latency_model
from hwsurrogate.surrogates.registry.tracking import configure_mlflow
from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model
from hwsurrogate.surrogates.training.latency import train_latency_model

from .gemm_factories import devices_frame, gemm_rows
from .test_latency_training import tiny_latency_frame


@contextmanager
def mlflow_records() -> Iterator[list[logging.LogRecord]]:
    """Every record MLflow's loggers emit (they do not propagate to the root logger, so caplog misses them)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("mlflow")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _tree_pyfunc() -> tuple[LatencyPyfunc, pl.DataFrame]:
    frame = tiny_latency_frame(n_archs=40)
    per_device = {d: (g["arch_key"].to_list(), g["latency_ms"].to_numpy()) for (d,), g in frame.group_by("device_id")}
    model = LatencyPyfunc({"nb201": MultiDeviceLatencyTrees("nb201").fit(per_device)}, kind="tree")
    return model, frame.select("device_id", "space", "arch_key").head(10)


def test_training_logs_from_code_and_mlflow_warns_about_nothing(store: DatasetStore) -> None:
    store.append("devices", devices_frame(), partition="test")
    store.append("gemm", pl.concat([gemm_rows("test/gpu-a", 120, seed=1), gemm_rows("test/gpu-b", 120, seed=2)]),
                 partition="test")  # fmt: skip
    with mlflow_records() as records, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gemm = train_gemm_model(store, GemmTrainConfig(max_iter=20, test_frac=0.25, min_power_rows=20))
        latency = train_latency_model(tiny_latency_frame(n_archs=40), model="tree")
    noisy = [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.WARNING]
    # MLflow's advice to the caller (UserWarning: input example, signature); its own store's
    # SQLAlchemy deprecations are MLflow's business
    noisy += [f"{w.filename}: {w.message}" for w in caught
              if f"{os.sep}mlflow{os.sep}" in w.filename and not issubclass(w.category, DeprecationWarning)]  # fmt: skip
    assert noisy == []
    assert any(r.name.startswith("mlflow") for r in records)  # the handler does see MLflow's loggers
    for uri in (gemm.model_uri, latency.model_uri):
        flavor = mlflow.models.get_model_info(uri).flavors["python_function"]
        assert Path(flavor["model_code_path"]).name == "model_code.py"
        assert "python_model" not in flavor  # no cloudpickled object
        loaded = mlflow.pyfunc.load_model(uri)
        assert isinstance(loaded.unwrap_python_model(), ArtifactModel)
    queries = gemm.test.select("device_id", "op", "m", "n", "k", "batch", "dtype", "layout")
    loaded = mlflow.pyfunc.load_model(gemm.model_uri).predict(queries.to_pandas())
    np.testing.assert_array_equal(loaded["runtime_ms"].to_numpy(), gemm.model.predict_frame(queries)["runtime_ms"])


def _logged_model_dir(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    model, queries = _tree_pyfunc()
    configure_mlflow()
    with mlflow.start_run():
        info = log_latency_model(model, queries.to_pandas())
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl")))
    return local, queries


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def test_tampered_model_artifact_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    local, queries = _logged_model_dir(tmp_path)
    before = mlflow.pyfunc.load_model(str(local)).predict(queries.to_pandas())["latency_ms"].to_numpy()
    assert np.isfinite(before).all()
    marker = tmp_path / "ran"
    artifact = local / "artifacts" / "model.pkl"
    assert artifact.is_file()
    artifact.write_bytes(pickle.dumps(_RunsCommand(f"touch {marker}")))
    with pytest.raises(ModelArtifactError, match=r"model\.pkl: pickle references (posix|nt|os)\.system"):
        mlflow.pyfunc.load_model(str(local))
    assert not marker.exists()


def test_functions_of_allowed_libraries_and_truncated_pickles_are_refused(tmp_path: Path) -> None:
    from numpy.testing._private.utils import runstring  # exec() behind a numpy name

    class Exec:
        def __reduce__(self) -> tuple[object, tuple[str, dict]]:
            return runstring, ("raise SystemExit(3)", {})

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Exec()))
    with pytest.raises(ModelArtifactError, match=r"numpy\.testing\._private\.utils\.runstring"):
        load_model_artifact(path)
    model, _ = _tree_pyfunc()
    good = pickle.dumps(model)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelArtifactError, match="not a readable model pickle"):
        load_model_artifact(path)
    path.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ModelArtifactError, match="holds a dict"):
        load_model_artifact(path)
    assert isinstance(load_model_artifact(_write(tmp_path / "ok.pkl", good)), LatencyPyfunc)
    assert MODEL_ARTIFACT == "model"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_model_logged_the_old_way_still_loads_serves_and_caches(tmp_path: Path) -> None:
    """A cloudpickled LatencyPyfunc (how models were logged before) answers through every loader."""
    model, queries = _tree_pyfunc()
    expected = model.predict_frame(queries.to_pandas())["latency_ms"].to_numpy()
    configure_mlflow()
    signature = frame_signature(queries, pl.from_pandas(model.predict_frame(queries.to_pandas())))
    with mlflow.start_run(), mlflow_records() as records:
        info = mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature)
    # the warning the project's own log calls no longer cause (and that mlflow_records does catch)
    assert any("CloudPickle" in r.getMessage() for r in records if r.levelno == logging.WARNING)
    assert "python_model" in mlflow.models.get_model_info(info.model_uri).flavors["python_function"]
    version = mlflow.register_model(info.model_uri, "hws-latency").version
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert isinstance(project_model(loaded), LatencyPyfunc)
    predictor = load_predictor("latency", version=version)
    np.testing.assert_array_equal(predictor.predict(queries)["latency_ms"].to_numpy(), expected)
    served = load_served("latency", version=version, store_root=tmp_path / "store")
    np.testing.assert_array_equal(served.predict(queries)["latency_ms"].to_numpy(), expected)
    assert served.native is not None  # the cache unwrapped the old pyfunc to its per-space models
