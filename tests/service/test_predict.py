"""Prediction endpoints with fake predictors: values, model refs, and every refusal naming its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsurrogate.datasets.store import DatasetStore

from .conftest import NB201_A, NB201_B, latency_store_frame, make_client

GEMM_Q = {
    "device": "gpperf/rtx4070",
    "op": "gemm",
    "m": 1024,
    "n": 512,
    "k": 256,
    "batch": 2,
    "dtype": "fp16",
}


def test_gemm_returns_oracle_values_in_query_order_with_model_version(client):
    queries = [GEMM_Q, {**GEMM_Q, "m": 8, "n": 8, "k": 8, "batch": 1}]
    r = client.post("/v1/predict/gemm", json={"queries": queries})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "hws-gemm", "version": "7"}
    assert body["count"] == 2
    assert body["predictions"][0]["runtime_ms"] == pytest.approx(2 * 1024 * 512 * 256 * 2 / 1e9)
    assert body["predictions"][1]["runtime_ms"] == pytest.approx(2 * 8**3 / 1e9)
    assert body["predictions"][1]["power_w"] == 100.0
    assert r.headers["server-timing"].startswith("model;dur=")


def test_gemm_unknown_device_is_404_naming_device(client):
    r = client.post("/v1/predict/gemm", json={"queries": [{**GEMM_Q, "device": "nope/gpu"}]})
    assert r.status_code == 404
    assert r.json()["field"] == "device" and "'nope/gpu'" in r.json()["detail"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"m": -4}, "queries.0.m"),
        ({"n": 0}, "queries.0.n"),
        ({"k": 1 << 40}, "queries.0.k"),
        ({"m": "big"}, "queries.0.m"),
        ({"batch": 10**9}, "queries.0.batch"),
        ({"dtype": "fp13"}, "queries.0.dtype"),
        ({"op": "conv"}, "queries.0.op"),
        ({"layout": "xx"}, "queries.0.layout"),
        ({"device": "../../etc/passwd"}, "queries.0.device"),
        ({"shoe_size": 3}, "queries.0.shoe_size"),
    ],
)
def test_gemm_bad_field_is_422_naming_it(client, patch, field):
    r = client.post("/v1/predict/gemm", json={"queries": [{**GEMM_Q, **patch}]})
    assert r.status_code == 422
    assert r.json()["field"] == field


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_gemm_nan_and_inf_are_422_not_500(client, literal):
    body = '{"queries": [{"device": "gpperf/rtx4070", "m": 8, "n": 8, "k": 8, "batch": LIT}]}'.replace(
        "LIT", literal
    )
    r = client.post("/v1/predict/gemm", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["field"] == "queries.0.batch"


def test_malformed_json_is_422_json(client):
    r = client.post("/v1/predict/gemm", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "detail" in r.json()


def test_empty_query_list_is_422(client):
    r = client.post("/v1/predict/gemm", json={"queries": []})
    assert r.status_code == 422 and r.json()["field"] == "queries"


def test_too_many_queries_is_413_naming_queries(tmp_path: Path):
    c, _, _ = make_client(tmp_path, max_predict_queries=3)
    with c:
        r = c.post("/v1/predict/gemm", json={"queries": [GEMM_Q] * 4})
    assert r.status_code == 413
    assert r.json()["field"] == "queries" and "limit of 3" in r.json()["detail"]


def test_body_over_size_limit_is_413_before_parsing(tmp_path: Path):
    c, _, models = make_client(tmp_path, max_body_bytes=2000)
    with c:
        r = c.post("/v1/predict/gemm", json={"queries": [GEMM_Q] * 50})
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert models.predictors["gemm"].calls == 0


def test_task_without_model_is_503_with_reason(tmp_path: Path):
    c, _, models = make_client(tmp_path)
    del models.predictors["gemm"]
    models.unavailable["gemm"] = "no registered model 'hws-gemm'; run `hws train gemm` first"
    with c:
        r = c.post("/v1/predict/gemm", json={"queries": [GEMM_Q]})
    assert r.status_code == 503
    assert "hws train gemm" in r.json()["detail"]


# ------------------------------------------------------------------------------------- latency
def test_latency_by_arch_key_uses_served_model_and_canonical_key(client):
    r = client.post(
        "/v1/predict/latency",
        json={"device": "help/pixel2", "space": "nb201", "archs": [{"arch_key": f"  {NB201_A} "}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictor"] == "served" and body["model"]["name"] == "hws-latency"
    assert body["predictions"] == [{"arch_key": NB201_A, "latency_ms": pytest.approx(len(NB201_A) / 10)}]


def test_latency_arch_index_resolves_through_store(tmp_path: Path):
    c, _, _ = make_client(tmp_path)
    DatasetStore(tmp_path / "store").append("latency", latency_store_frame(), partition="help")
    with c:
        r = c.post("/v1/predict/latency", json={"device": "help/pixel2", "space": "nb201",
                                                "archs": [{"arch_index": 42}, {"arch_key": NB201_A}]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert [p["arch_key"] for p in r.json()["predictions"]] == [NB201_B, NB201_A]


def test_latency_unknown_arch_index_is_404_naming_it(client):
    r = client.post(
        "/v1/predict/latency", json={"device": "help/pixel2", "space": "nb201", "archs": [{"arch_index": 99}]}
    )
    assert r.status_code == 404
    assert r.json()["field"] == "archs.0.arch_index"


def test_latency_invalid_arch_key_is_422_naming_it(client):
    archs = [{"arch_key": NB201_A}, {"arch_key": "|conv9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"}]
    r = client.post("/v1/predict/latency", json={"device": "help/pixel2", "space": "nb201", "archs": archs})
    assert r.status_code == 422
    assert r.json()["field"] == "archs.1.arch_key" and "conv9x9" in r.json()["detail"]


def test_latency_both_key_and_index_is_422(client):
    r = client.post("/v1/predict/latency", json={"device": "help/pixel2", "space": "nb201",
                                                 "archs": [{"arch_key": NB201_A, "arch_index": 3}]})  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "archs.0"


def test_latency_unknown_device_is_404(client):
    r = client.post(
        "/v1/predict/latency",
        json={"device": "help/nokia3310", "space": "nb201", "archs": [{"arch_key": NB201_A}]},
    )
    assert r.status_code == 404 and r.json()["field"] == "device"


def test_latency_unknown_space_is_422(client):
    r = client.post(
        "/v1/predict/latency", json={"device": "help/pixel2", "space": "darts", "archs": [{"arch_key": "x"}]}
    )
    assert r.status_code == 422 and r.json()["field"] == "space"


def test_latency_on_adapted_device_uses_adapter(tmp_path: Path):
    c, adapter, models = make_client(tmp_path)
    with c:
        r = c.post("/v1/devices", headers={"Authorization": "Bearer test-token-123"},
                   json={"device_id": "me/laptop", "measurements": [
                       {"space": "nb201", "arch_key": NB201_A, "latency_ms": 2.0},
                       {"space": "nb201", "arch_key": NB201_B, "latency_ms": 4.0}]})  # fmt: skip
        assert r.status_code == 201, r.text
        r = c.post(
            "/v1/predict/latency",
            json={"device": "me/laptop", "space": "nb201", "archs": [{"arch_key": NB201_A}]},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictor"] == "adapted" and body["model"] == {"name": "hws-fewshot", "version": "3"}
    assert body["predictions"][0]["latency_ms"] == pytest.approx(3.0)
    assert models.predictors["latency"].calls == 0


# ---------------------------------------------------------------------------------------- FPGA
HLS4ML = {
    "type": "hls4ml",
    "layers": [
        {"class_name": "InputLayer", "d_out": [16]},
        {"class_name": "Dense", "d_in": [16], "d_out": [8], "neurons": 8, "activation": "relu"},
    ],
    "config": {
        "precision": "ap_fixed<16,6>",
        "reuse_factor": 4,
        "strategy": "resource",
        "part": "xcu250-figd2104-2L-e",
    },
}
HLS = {"type": "hls", "kernel": "gemm-blocked", "pragmas": {"__PARA__L0": 4, "__PIPE__L1": "flatten"}}


def test_fpga_mixed_batch_keeps_order_and_states_stage(client):
    r = client.post("/v1/predict/fpga", json={"designs": [HLS, HLS4ML]})
    assert r.status_code == 200, r.text
    hls, nn = r.json()["predictions"]
    assert hls["type"] == "hls" and hls["stage"] == "hls_estimate" and hls["cycles"] == 1002.0
    assert hls["valid_prob"] == 0.9 and hls["model"]["name"] == "hws-fpga-hlsyn"
    assert nn["type"] == "hls4ml" and nn["stage"] == "hls_estimate"
    assert nn["lut"] == pytest.approx(2 * 1000 / 4) and nn["cycles"] == 12.0 and nn["valid_prob"] is None


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"precision": "float32"}, "designs.0.hls4ml.config.precision"),
        ({"reuse_factor": 0}, "designs.0.hls4ml.config.reuse_factor"),
        ({"strategy": "fast"}, "designs.0.hls4ml.config.strategy"),
        ({"part": "EP4CE22"}, "designs.0.hls4ml.config.part"),
    ],
)
def test_fpga_bad_config_is_422_naming_field(client, patch, field):
    design = {**HLS4ML, "config": {**HLS4ML["config"], **patch}}
    r = client.post("/v1/predict/fpga", json={"designs": [design]})
    assert r.status_code == 422 and r.json()["field"] == field


def test_fpga_part_unknown_to_model_is_422_naming_part(client):
    design = {**HLS4ML, "config": {**HLS4ML["config"], "part": "xcbogus-1"}}
    r = client.post("/v1/predict/fpga", json={"designs": [design]})
    assert r.status_code == 422 and "part 'xcbogus-1'" in r.json()["detail"]


def test_fpga_layer_with_code_like_field_is_refused(client):
    design = {**HLS4ML, "layers": [{"class_name": "Lambda", "function": "__import__('os').system('x')"}]}
    r = client.post("/v1/predict/fpga", json={"designs": [design]})
    assert r.status_code == 422 and r.json()["field"] == "designs.0.hls4ml.layers.0.function"


def test_fpga_unknown_design_type_is_422(client):
    r = client.post("/v1/predict/fpga", json={"designs": [{"type": "verilog", "source": "module x;"}]})
    assert r.status_code == 422 and r.json()["field"].startswith("designs.0")
