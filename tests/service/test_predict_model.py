"""POST /v1/predict/model: an operator table (JSON) or an ONNX file (bytes) -> whole-model latency."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from hwsurrogate.datasets.schemas import conform
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.app import ServiceConfig, create_app

from .conftest import TOKEN

DEVICE = "local/box-cpu-t1"


class KnownDevice:
    """1 GFLOP per ms plus 0.01 ms per call; no model of 'other' ops."""

    def predict_ops(self, table: pl.DataFrame, device: dict) -> np.ndarray:
        assert device["device_id"] == DEVICE
        ms = table["flops"].to_numpy() / 1e9 + 0.01
        return np.where(table["op_kind"].to_numpy() == "other", np.nan, ms)


def _client(tmp_path: Path) -> TestClient:
    store = DatasetStore(tmp_path / "store")
    dev = pl.DataFrame([{"device_id": DEVICE, "kind": "cpu", "name": "box", "peak_fp32_gflops": 50.0,
                         "mem_bw_gbs": 20.0, "source": "test", "origin": "test", "measurement_id": "d1",
                         "imported_at": datetime.now(UTC)}])  # fmt: skip
    store.append("devices", conform("devices", dev), partition="test")
    app = create_app(
        ServiceConfig(store=tmp_path / "store", token=TOKEN, load_models=False, max_body_bytes=64_000)
    )
    app.state.ops_model = KnownDevice()
    return TestClient(app)


def _onnx() -> bytes:
    w = numpy_helper.from_array(np.zeros((16, 8), np.float32), "W")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"], name="relu"),
         helper.make_node("Reshape", ["z", "s"], ["o"], name="rs")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        [w, numpy_helper.from_array(np.array([-1], np.int64), "s")],
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_table_and_onnx_bodies(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        ops = [{"name": "fc", "op_kind": "linear", "op": "linear", "batch": 1, "m": 100, "n": 100, "k": 100, "count": 3},
               {"name": "v", "op_kind": "other", "op": "view", "flops": 0, "bytes": 0}]  # fmt: skip
        r = c.post("/v1/predict/model", json={"device": DEVICE, "ops": ops})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["latency_ms"] == 3 * (2e6 / 1e9 + 0.01)
        assert body["breakdown"]["linear"]["ops"] == 3 and body["unmodeled_ops"] == ["view"]
        r = c.post(f"/v1/predict/model?device={DEVICE}&input_shape=4,16", content=_onnx(),
                   headers={"content-type": "application/octet-stream"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["latency_ms"] > 0 and set(r.json()["breakdown"]) == {"linear", "activation", "other"}


def test_bad_inputs_name_the_field(tmp_path: Path) -> None:
    with _client(tmp_path) as c:
        octet = {"content-type": "application/octet-stream"}
        r = c.post(
            f"/v1/predict/model?device={DEVICE}&input_shape=4,16", content=b"\x08\x01junk", headers=octet
        )
        assert r.status_code == 422 and r.json()["field"] == "model" and "protobuf" in r.json()["detail"]
        r = c.post(f"/v1/predict/model?device={DEVICE}", content=_onnx(), headers=octet)
        assert r.status_code == 422 and r.json()["field"] == "input_shape"
        r = c.post(f"/v1/predict/model?device={DEVICE}&input_shape=4,15", content=_onnx(), headers=octet)
        assert r.status_code == 422 and r.json()["field"] == "input_shape"
        r = c.post("/v1/predict/model?device=nope/dev&input_shape=4,16", content=_onnx(), headers=octet)
        assert r.status_code == 404 and r.json()["field"] == "device"
        r = c.post(f"/v1/predict/model?device={DEVICE}", content=b"\0" * 70_000, headers=octet)
        assert r.status_code == 413
        r = c.post(
            "/v1/predict/model",
            json={"device": DEVICE, "ops": [{"name": "x", "op_kind": "linear", "op": "l"}]},
        )
        assert r.status_code == 422 and "batch" in r.json()["detail"]  # the missing shape column is named
        r = c.post(
            "/v1/predict/model", json={"device": DEVICE, "ops": [{"name": "x", "op_kind": "warp", "op": "l"}]}
        )
        assert r.status_code == 422 and "op_kind" in r.json()["field"]
        r = c.post("/v1/predict/model", content=b"x", headers={"content-type": "text/plain"})
        assert r.status_code == 422 and r.json()["field"] == "content-type"
