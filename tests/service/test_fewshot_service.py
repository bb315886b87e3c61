"""Device registration through the real few-shot registry (skipped where it is not installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from hwsurrogate.datasets import archspaces
from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.service.deps import get_models

from .conftest import TOKEN, fake_models

fewshot = pytest.importorskip("hwsurrogate.surrogates.fewshot", reason="few-shot module not on this branch")
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}
COST = np.array([0.0, 0.05, 0.1, 0.3, 0.08])  # per-op log-latency cost: none, skip, 1x1, 3x3, pool


def _keys(n: int, seed: int) -> list[str]:
    codes = np.random.default_rng(seed).integers(0, 5, size=(n * 2, 6))
    return list(dict.fromkeys(archspaces.nb201_from_codes(c) for c in codes))[:n]


def _latency(keys: list[str], base: float) -> np.ndarray:
    ops = [archspaces.parse_nb201(k) for k in keys]
    return np.exp(base + np.array([[COST[archspaces.NB201_OPS.index(o)] for o in row] for row in ops]).sum(1))


KEYS = _keys(120, 0)


@pytest.fixture(scope="module")
def meta_model():
    frame = pl.concat(
        pl.DataFrame({"device_id": f"synth/src{i}", "space": "nb201", "arch_key": KEYS,
                      "latency_ms": _latency(KEYS, 0.5 + 0.4 * i)})
        for i in range(4)
    )  # fmt: skip
    cfg = fewshot.FewShotConfig(meta_draws=1, meta_query=50, meta_k=10, tau_grid=(0.01,), noise_grid=(0.1,))
    return fewshot.FewShotLatencyRegressor(cfg).fit(frame)


def _client(store: Path) -> TestClient:
    app = create_app(ServiceConfig(store=store, token=TOKEN, load_models=False))
    models = fake_models()
    app.dependency_overrides[get_models] = lambda: models
    return TestClient(app)


def test_register_then_predict_on_adapted_device(meta_model, tmp_path: Path):
    store = tmp_path / "store"
    AdaptedDeviceRegistry(store).export_model(meta_model, "1", champion=True)
    support = KEYS[:10]
    truth = _latency(KEYS, 1.1)
    with _client(store) as c:
        r = c.post("/v1/devices", headers=AUTH, json={"device_id": "me/board", "measurements": [
            {"space": "nb201", "arch_key": k, "latency_ms": float(v)} for k, v in zip(support, truth[:10], strict=True)]})  # fmt: skip
        assert r.status_code == 201, r.text
        reg = r.json()
        listed = c.get("/v1/devices").json()["devices"]
        pred = c.post("/v1/predict/latency", json={"device": "me/board", "space": "nb201",
                                                   "archs": [{"arch_key": k} for k in KEYS[10:60]]})  # fmt: skip
    assert reg["n_measurements"] == 10 and reg["spaces"] == ["nb201"]
    assert reg["details"]["model_name"] == "hws-fewshot-latency" and reg["details"]["model_version"] == "1"
    assert [d["device_id"] for d in listed if d["adapted"]] == ["me/board"]
    body = pred.json()
    assert body["predictor"] == "adapted" and body["model"] == {"name": "hws-fewshot-latency", "version": "1"}
    got = np.array([p["latency_ms"] for p in body["predictions"]])
    assert np.median(np.abs(got / truth[10:60] - 1)) < 0.25  # the adapted scale, not a source device's


def test_too_few_measurements_is_422_and_nothing_registered(meta_model, tmp_path: Path):
    store = tmp_path / "store"
    AdaptedDeviceRegistry(store).export_model(meta_model, "1", champion=True)
    with _client(store) as c:
        r = c.post("/v1/devices", headers=AUTH, json={"device_id": "me/board", "measurements": [
            {"space": "nb201", "arch_key": k, "latency_ms": 1.0} for k in KEYS[:3]]})  # fmt: skip
        assert c.get("/v1/devices").json()["count"] == 0
    assert r.status_code == 422 and "too few measurements" in r.json()["detail"]


def test_register_without_meta_trained_model_is_503_saying_how(tmp_path: Path):
    with _client(tmp_path / "store") as c:
        r = c.post("/v1/devices", headers=AUTH, json={"device_id": "me/board", "measurements": [
            {"space": "nb201", "arch_key": k, "latency_ms": 1.0} for k in KEYS[:6]]})  # fmt: skip
    assert r.status_code == 503 and "hws train fewshot" in r.json()["detail"]
