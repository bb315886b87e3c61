"""Devices (list, detail with '/' ids, registration + auth) and health / models / metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.adaptation import UnavailableAdapter
from hwsurrogate.service.deps import get_adapter

from .conftest import NB201_A, NB201_B, gemm_rows, latency_store_frame, make_client

REG = {
    "device_id": "me/laptop-cpu",
    "measurements": [{"space": "nb201", "arch_key": NB201_A, "latency_ms": 5.0}],
}


def test_register_device_then_listed_and_detailed(client, auth):
    r = client.post("/v1/devices", json=REG, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (
        body["device_id"] == "me/laptop-cpu" and body["n_measurements"] == 1 and body["spaces"] == ["nb201"]
    )
    assert body["adapt_seconds"] >= 0
    listed = client.get("/v1/devices").json()
    assert listed["count"] == 1 and listed["devices"][0]["adapted"] is True
    detail = client.get("/v1/devices/me/laptop-cpu").json()
    assert detail["adaptation"]["n_measurements"] == 1 and detail["tables"] == {}


def test_register_from_fingerprint_resolves_indices(tmp_path: Path, auth):
    c, adapter, _ = make_client(tmp_path)
    DatasetStore(tmp_path / "store").append("latency", latency_store_frame(), partition="help")
    with c:
        r = c.post("/v1/devices", json={"device_id": "me/phone", "fingerprint": {"nb201": {"42": 1.5, "11": 2.5}}},
                   headers=auth)  # fmt: skip
    assert r.status_code == 201, r.text
    m = adapter.devices["me/phone"]
    assert dict(zip(m["arch_key"], m["latency_ms"], strict=True)) == {NB201_B: 1.5, NB201_A: 2.5}


def test_register_with_unknown_fingerprint_index_is_404(client, auth):
    r = client.post(
        "/v1/devices", json={"device_id": "me/phone", "fingerprint": {"nb201": {"7": 1.0}}}, headers=auth
    )
    assert r.status_code == 404 and r.json()["field"] == "fingerprint.0.arch_index"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device_id": "me/x"}, "body"),
        ({"device_id": "me/x", "fingerprint": {"nb201": {}}, "measurements": []}, "body"),
        (
            {**REG, "measurements": [{"space": "nb201", "arch_key": NB201_A, "latency_ms": -1}]},
            "measurements.0.latency_ms",
        ),
        (
            {**REG, "measurements": [{"space": "nb201", "arch_key": "bad", "latency_ms": 1}]},
            "measurements.0.arch_key",
        ),
        ({**REG, "device_id": "bad id with spaces"}, "device_id"),
    ],
)
def test_register_bad_input_is_4xx_naming_field(client, auth, body, field):
    r = client.post("/v1/devices", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_register_needs_token(client):
    assert client.post("/v1/devices", json=REG).status_code == 401
    assert (
        client.post("/v1/devices", json=REG, headers={"Authorization": "Bearer wrong-token"}).status_code
        == 401
    )
    assert client.get("/v1/devices").json()["count"] == 0


def test_register_without_fewshot_is_503_saying_why(tmp_path: Path, auth):
    c, _, _ = make_client(tmp_path)
    c.app.dependency_overrides[get_adapter] = lambda: UnavailableAdapter(
        "few-shot adaptation is not installed"
    )
    with c:
        r = c.post("/v1/devices", json=REG, headers=auth)
    assert r.status_code == 503 and "not installed" in r.json()["detail"]


def test_store_devices_listed_with_table_counts(tmp_path: Path, auth):
    c, _, _ = make_client(tmp_path)
    store = DatasetStore(tmp_path / "store")
    store.append("latency", latency_store_frame(), partition="help")
    with c:
        c.post("/v1/datasets/gemm/rows", json={"rows": gemm_rows(3)}, headers=auth)
        devices = {d["device_id"]: d for d in c.get("/v1/devices").json()["devices"]}
        detail = c.get("/v1/devices/help/pixel2")
    assert devices["help/pixel2"]["tables"] == {"latency": 2}
    assert devices["local/box-cpu"]["tables"] == {"gemm": 3}
    assert detail.status_code == 200 and detail.json()["adapted"] is False


def test_unknown_device_detail_is_404(client):
    r = client.get("/v1/devices/nobody/nothing")
    assert r.status_code == 404 and r.json()["field"] == "device_id"


# -------------------------------------------------------------------------------------- health
def test_healthz_reports_models_and_writes(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["writes_enabled"] is True
    assert body["models"] == {"gemm": True, "latency": True, "fpga-hls4ml": True, "fpga-hlsyn": True}


def test_models_lists_versions_metrics_and_stage(client):
    models = {m["task"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["gemm"]["version"] == "7" and models["gemm"]["metrics"] == {"test_mape": 4.2}
    assert models["fpga-hlsyn"]["stage"] == "hls_estimate"


def test_models_reports_unavailable_reason(tmp_path: Path):
    c, _, models = make_client(tmp_path)
    del models.predictors["latency"]
    models.unavailable["latency"] = "no registered model 'hws-latency'"
    with c:
        m = {m["task"]: m for m in c.get("/v1/models").json()["models"]}["latency"]
    assert m["available"] is False and m["reason"] == "no registered model 'hws-latency'"


def test_metrics_count_requests_per_route_template(client):
    client.post("/v1/predict/gemm", json={"queries": [{"device": "nope/x", "m": 1, "n": 1, "k": 1}]})
    client.get("/v1/devices/a/b")
    text = client.get("/metrics").text
    assert 'hws_http_requests_total{method="POST",route="/v1/predict/gemm",status="404"} 1.0' in text
    assert 'route="/v1/devices/{device_id:path}",status="404"' in text
    assert "hws_http_request_duration_seconds_bucket" in text


def test_openapi_docs_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/predict/gemm",
        "/v1/predict/latency",
        "/v1/predict/fpga",
        "/v1/devices",
        "/v1/datasets/{kind}/rows",
    } <= set(paths)


def test_devices_say_which_tasks_can_predict_them(tmp_path: Path, auth):
    """`tasks` per device: served when the champion's recorded domain holds it, adapted after a
    registration, empty for a device only the store knows."""
    c, _, models = make_client(tmp_path)
    models.predictors["gemm"].training_domain = {"by": "device_id", "regions": {"local/box-cpu": {}}}
    DatasetStore(tmp_path / "store").append("latency", latency_store_frame(), partition="help")
    with c:
        c.post("/v1/datasets/gemm/rows", json={"rows": gemm_rows(3)}, headers=auth)
        assert c.post("/v1/devices", json=REG, headers=auth).status_code == 201
        devices = {d["device_id"]: d["tasks"] for d in c.get("/v1/devices").json()["devices"]}
        detail = c.get("/v1/devices/local/box-cpu").json()
    assert devices["local/box-cpu"] == {"gemm": "served"} and detail["tasks"] == {"gemm": "served"}
    assert devices["me/laptop-cpu"] == {"latency": "adapted"}
    assert devices["help/pixel2"] == {}
