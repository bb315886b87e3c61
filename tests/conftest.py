"""Shared fixtures: an isolated store per test, and the public data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwsurrogate.datasets.store import DatasetStore


@pytest.fixture(scope="session")
def _mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow database per test session (creating one costs seconds); experiments differ per test."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, _mlflow_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own store, a test MLflow store (never ./mlflow.db), no progress bars and
    no compiled trees."""
    monkeypatch.setenv("HWSURROGATE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("HWSURROGATE_NO_PROGRESS", "1")
    # no detached tl2cgen builds of every model a test fits; tests/surrogates/test_compiled_trees.py
    # turns them on for its tiny models
    monkeypatch.setenv("HWSURROGATE_COMPILED_TREES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{_mlflow_dir / 'mlflow.db'}")
    monkeypatch.setenv("HWSURROGATE_MLFLOW_ARTIFACTS", str(_mlflow_dir / "mlruns"))


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "store")


def _data_dir() -> Path | None:
    raw = os.environ.get("HWSURROGATE_DATA_DIR")
    if raw and Path(raw).is_dir():
        return Path(raw)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The public data folder; tests using it skip when HWSURROGATE_DATA_DIR is unset or absent."""
    path = _data_dir()
    if path is None:
        pytest.skip("public data not available: set HWSURROGATE_DATA_DIR to ../shared/data")
    return path
