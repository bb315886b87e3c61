"""Issue 15: the server answers from the frozen local copies of the champions (no scikit-learn
models, no MLflow in its process) exactly as the registered MLflow pyfunc does."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service import served
from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.surrogates.api import INPUTS
from hwsurrogate.surrogates.models.frozen import FrozenServed
from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

from ..surrogates.gemm_factories import devices_frame, gemm_rows
from .conftest import TOKEN

pytestmark = pytest.mark.slow  # trains and registers a GEMM model

FAST = GemmTrainConfig(max_iter=20, test_frac=0.25, min_power_rows=20)
OUTPUTS = ["runtime_ms", "power_w", "energy_j"]


@pytest.fixture(autouse=True)
def _own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry of this test's own: the preloaded server loads every champion registered, and the
    session's registry holds other tests' (which, and whether any, depends on the test order)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture
def champion(store: DatasetStore) -> tuple[DatasetStore, str]:
    """A real hws-gemm champion (GemmPyfunc) trained on two synthetic devices; (store, version)."""
    store.append("devices", devices_frame(), partition="test")
    rows = pl.concat([gemm_rows("test/gpu-a", 150, seed=1), gemm_rows("test/gpu-b", 150, seed=2)])
    store.append("gemm", rows, partition="test")
    res = train_gemm_model(store, dataclasses.replace(FAST, seed=0))
    MlflowClient().set_registered_model_alias("hws-gemm", "champion", str(res.version))
    return store, str(res.version)


def _queries(n: int) -> pl.DataFrame:
    a, b = gemm_rows("test/gpu-a", n, seed=11), gemm_rows("test/gpu-b", n, seed=12)
    return pl.concat([a, b]).head(n).select(INPUTS["gemm"])


def _pyfunc_answers(version: str, queries: pl.DataFrame) -> np.ndarray:
    """What the registered MLflow pyfunc answers (the oracle)."""
    model = mlflow.pyfunc.load_model(f"models:/hws-gemm/{version}")
    return np.asarray(model.predict(queries.to_pandas())[OUTPUTS], dtype=float)


def _body(queries: pl.DataFrame) -> dict[str, object]:
    return {"queries": queries.rename({"device_id": "device"}).to_dicts()}


def _answers(body: dict[str, object]) -> np.ndarray:
    return np.array([[p[c] for c in OUTPUTS] for p in body["predictions"]], dtype=float)  # type: ignore[attr-defined]


@pytest.mark.parametrize("child", ["resolves", "fails"])
def test_preloaded_server_answers_from_the_frozen_copy_as_the_pyfunc(
    champion: tuple[DatasetStore, str], child: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 and 100 queries (the frozen trees answer up to 64 rows, the full copy above) equal the
    pyfunc's answers to 1e-9; when the resolving child fails the model loads through MLflow here."""
    store, version = champion
    if child == "fails":
        monkeypatch.setattr(served, "resolve_in_child", lambda pins, store=None: None)
    small, large = _queries(1), _queries(100)
    app = create_app(ServiceConfig(store=store.root, token=TOKEN, preload_models=True))
    with TestClient(app) as c:
        native = app.state.models.predictors["gemm"].inner.native
        r_small = c.post("/v1/predict/gemm", json=_body(small))
        r_large = c.post("/v1/predict/gemm", json=_body(large))
        listed = {m["task"]: m for m in c.get("/v1/models").json()["models"]}
    assert isinstance(native, FrozenServed) is (child == "resolves")
    assert r_small.status_code == 200 and r_large.status_code == 200, (r_small.text, r_large.text)
    assert r_small.json()["model"] == {"name": "hws-gemm", "version": version}
    np.testing.assert_allclose(_answers(r_small.json()), _pyfunc_answers(version, small), rtol=1e-9)
    np.testing.assert_allclose(_answers(r_large.json()), _pyfunc_answers(version, large), rtol=1e-9)
    assert listed["gemm"]["available"] and listed["gemm"]["metrics"]
    assert not listed["latency"]["available"] and "hws train latency" in listed["latency"]["reason"]


def test_preloaded_server_process_never_imports_mlflow_or_scikit_learn_for_small_batches(
    champion: tuple[DatasetStore, str], tmp_path: Path
) -> None:
    """A fresh interpreter: a --preload-models app holds its models without MLflow, scikit-learn,
    pandas or scipy.stats; one query keeps it so; a 100-query batch loads the full copy (scikit-learn),
    still without MLflow. Its answers equal the pyfunc's."""
    store, version = champion
    small, large = _queries(1), _queries(100)
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from fastapi.testclient import TestClient
        from hwsurrogate.service.app import ServiceConfig, create_app
        HEAVY = ("mlflow", "sklearn", "pandas", "scipy.stats")
        app = create_app(ServiceConfig(store=Path({str(store.root)!r}), token="t0ken-abc", preload_models=True))
        out = {{}}
        with TestClient(app) as c:
            out["loaded"] = [m for m in HEAVY if m in sys.modules]
            out["small"] = c.post("/v1/predict/gemm", json=json.loads(sys.argv[1])).json()
            out["after_small"] = [m for m in HEAVY if m in sys.modules]
            out["large"] = c.post("/v1/predict/gemm", json=json.loads(sys.argv[2])).json()
            out["after_large"] = [m for m in HEAVY if m in sys.modules]
        print(json.dumps(out))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script, json.dumps(_body(small)), json.dumps(_body(large))],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=dict(os.environ),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["after_small"] == [], out
    assert "mlflow" not in out["after_large"] and "sklearn" in out["after_large"], out
    np.testing.assert_allclose(_answers(out["small"]), _pyfunc_answers(version, small), rtol=1e-9)
    np.testing.assert_allclose(_answers(out["large"]), _pyfunc_answers(version, large), rtol=1e-9)
