"""End to end through the real loading path: a tiny sklearn pipeline registered as hws-gemm in the
test MLflow, loaded by the service's lifespan, answering like the pipeline itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hwsurrogate.service.app import ServiceConfig, create_app

from .conftest import NB201_A
from .tiny_models import GEMM_INPUTS, fit_gemm_pipeline, register_gemm_pipeline, synthetic_gemm_frame


@pytest.fixture(scope="module")
def registered_gemm(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    # a registry of its own: these tests assert which tasks are NOT registered, and the session's
    # shared MLflow DB holds other tests' champions
    d = tmp_path_factory.mktemp("mlflow-service")
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    mp.setenv("HWSURROGATE_MLFLOW_ARTIFACTS", str(d / "mlruns"))
    frame = synthetic_gemm_frame(300)
    model = fit_gemm_pipeline(frame, ["runtime_ms", "power_w", "energy_j"], n_estimators=5)
    version = register_gemm_pipeline(model)
    yield model, version, d
    mp.undo()


def test_service_serves_registered_champion_like_the_pipeline(registered_gemm, tmp_path: Path, monkeypatch):
    model, version, d = registered_gemm
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    queries = synthetic_gemm_frame(20, seed=5).select(GEMM_INPUTS)
    expected = model.predict(queries.to_pandas())
    app = create_app(ServiceConfig(store=tmp_path / "store", token="tok-12345678"))
    with TestClient(app) as client:
        r = client.post(
            "/v1/predict/gemm", json={"queries": queries.rename({"device_id": "device"}).to_dicts()}
        )
        models = {m["task"]: m for m in client.get("/v1/models").json()["models"]}
        r_lat = client.post(
            "/v1/predict/latency", json={"device": "a/b", "space": "nb201", "archs": [{"arch_key": NB201_A}]}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "hws-gemm", "version": version}
    got = np.array([[p["runtime_ms"], p["power_w"], p["energy_j"]] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert models["gemm"]["available"] and models["gemm"]["metrics"] == {"test_runtime_ms_mape": 1.0}
    assert not models["latency"]["available"] and "hws-latency" in models["latency"]["reason"]
    # an unregistered task is a clear 503, not a crash at start-up
    assert r_lat.status_code == 503 and "hws-latency" in r_lat.json()["detail"]


def test_pinned_missing_version_is_reported_unavailable(registered_gemm, tmp_path: Path, monkeypatch):
    _, _, d = registered_gemm
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    app = create_app(ServiceConfig(store=tmp_path / "store", model_versions={"gemm": "999"}))
    with TestClient(app) as client:
        gemm = {m["task"]: m for m in client.get("/v1/models").json()["models"]}["gemm"]
    assert gemm["available"] is False and "version 999" in gemm["reason"]
