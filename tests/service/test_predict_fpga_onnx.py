"""POST /v1/predict/fpga/onnx: an ONNX file + hls4ml config through hls4ml, then the served model.

The served model is the fake of ``conftest.py`` (lut = layers * 1000 / reuse factor), so the
oracle is the hand-counted layer list of a hand-built ONNX file.
"""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("hls4ml", reason="hls4ml is an optional extra: pip install 'hwsurrogate[hls4ml]'")
pytest.importorskip("qonnx", reason="qonnx is an optional extra: pip install 'hwsurrogate[hls4ml]'")
pytest.importorskip("onnx")

from tests.test_hls4ml_frontend import onnx_mlp  # noqa: E402

ONNX = base64.b64encode(onnx_mlp()).decode()
YAML = "IOType: io_parallel\nHLSConfig:\n  Model:\n    Precision: ap_fixed<8,3>\n    ReuseFactor: 2\n"


def test_onnx_and_yaml_config_predict_through_hls4ml(client):
    r = client.post("/v1/predict/fpga/onnx", json={"onnx_base64": ONNX, "hls4ml_config": YAML})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["class_name"] for x in body["layers"]] == ["InputLayer", "Dense", "Activation", "Dense"]
    assert [x["parameters"] for x in body["layers"]] == [0, 66, 0, 21]
    assert (body["reuse_factor"], body["precision"], body["strategy"]) == (2, "ap_fixed<8,3>", "latency")
    assert body["prediction"]["lut"] == 4 * 1000 / 2 and body["prediction"]["type"] == "hls4ml"


def test_config_as_object_and_part_override(client):
    cfg = {"Model": {"Precision": "ap_fixed<16,6>", "ReuseFactor": 1, "Strategy": "Resource"}}
    r = client.post("/v1/predict/fpga/onnx", json={"onnx_base64": ONNX, "hls4ml_config": cfg,
                                                  "part": "xc7z020clg400-1"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["part"] == "xc7z020clg400-1" and r.json()["prediction"]["lut"] == 4 * 1000 / 1


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"hls4ml_config": {"Model": {"ReuseFactor": 4}}}, "hls4ml_config.Model.ReuseFactor", "divide 60"),
        ({"hls4ml_config": {"Model": {"Precision": "fixd<8,3>"}}}, "hls4ml_config.Model.Precision", "fixd"),
        ({"hls4ml_config": "Model: [unclosed"}, "hls4ml_config", "not valid YAML"),
        ({"hls4ml_config": {"KerasModel": "/etc/passwd"}}, "hls4ml_config.KerasModel", "names a model file"),
        ({"onnx_base64": "!!!not base64!!!"}, "onnx_base64", "base64"),
        ({"onnx_base64": base64.b64encode(b"not an onnx file").decode()}, "onnx_base64", "ONNX"),
    ],
)
def test_bad_input_is_422_naming_the_field(client, body, field, needle):
    r = client.post("/v1/predict/fpga/onnx", json={"onnx_base64": ONNX, **body})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and needle in r.json()["detail"]


def test_unknown_body_field_is_422(client):
    r = client.post("/v1/predict/fpga/onnx", json={"onnx_base64": ONNX, "code": "import os"})
    assert r.status_code == 422 and r.json()["field"] == "code"
