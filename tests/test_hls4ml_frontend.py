"""hls4ml front ends: PyTorch / ONNX models + hls4ml configs into the fpga-hls4ml layer list.

The oracles are written by hand from the layer sizes (parameters = n_in * n_out + n_out, the
reuse factor and weight precision the config sets); bad configurations must be refused with the
field named. The real-data test rebuilds the wa-hls4ml exemplar models in PyTorch and checks that
the hls4ml path gives the features of the records' own layer lists.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("hls4ml", reason="hls4ml is an optional extra: pip install 'hwsurrogate[hls4ml]'")
pytest.importorskip("qonnx", reason="qonnx is an optional extra: pip install 'hwsurrogate[hls4ml]'")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hwsurrogate.surrogates.features.hls4ml_frontend import (  # noqa: E402
    Hls4mlConfigError,
    onnx_design,
    pytorch_design,
    read_hls4ml_config,
    valid_reuse_factors,
)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4), torch.nn.Softmax(dim=-1)
    )


def onnx_mlp(*, op: str = "Relu") -> bytes:
    """10 -> 6 (MatMul + Add) -> op -> 3 (MatMul + Add), built by hand with onnx.helper."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(10, 6)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node(op, ["h1"], ["h2"], name="act"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
        helper.make_node("Add", ["h3", "b2"], ["y"], name="fc2_bias"),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _strip(layers: list[dict]) -> list[dict]:
    return [{k: v for k, v in layer.items() if k != "name"} for layer in layers]


CONFIG = {
    "IOType": "io_parallel",
    "Part": "xcu250-figd2104-2L-e",
    "HLSConfig": {
        "Model": {"Precision": "ap_fixed<8,3>", "ReuseFactor": 4, "Strategy": "Resource"},
        "LayerName": {"_2": {"ReuseFactor": 8, "Precision": {"weight": "ap_fixed<4,1>"}}},
    },
}


def test_pytorch_mlp_gives_the_hand_written_layer_list():
    design = pytorch_design(_mlp(), (16,), CONFIG)
    w8 = {"weight_precision": "ap_fixed<8,3,TRN,WRAP,0>", "weight_bits": 8, "weight_int_bits": 3}
    w4 = {"weight_precision": "ap_fixed<4,1,TRN,WRAP,0>", "weight_bits": 4, "weight_int_bits": 1}
    assert _strip(design.layers) == [
        {"class_name": "InputLayer", "d_in": [16], "d_out": [16], "parameters": 0, "reuse_factor": 4},
        {"class_name": "Dense", "d_in": [16], "d_out": [8], "neurons": 8, "use_bias": True,
         "parameters": 16 * 8 + 8, "reuse_factor": 4, **w8},
        {"class_name": "Activation", "activation": "relu", "d_in": [8], "d_out": [8], "parameters": 0,
         "reuse_factor": 4},
        {"class_name": "Dense", "d_in": [8], "d_out": [4], "neurons": 4, "use_bias": True,
         "parameters": 8 * 4 + 4, "reuse_factor": 8, **w4},
        {"class_name": "Activation", "activation": "softmax", "d_in": [4], "d_out": [4], "parameters": 0,
         "reuse_factor": 4},
    ]  # fmt: skip
    q = design.query()
    assert (q["reuse_factor"], q["precision"], q["strategy"], q["io_type"], q["part"]) == (
        4, "ap_fixed<8,3>", "resource", "io_parallel", "xcu250-figd2104-2L-e",
    )  # fmt: skip


def test_onnx_mlp_gives_the_hand_written_layer_list():
    cfg = {"Model": {"Precision": "ap_fixed<12,4>", "ReuseFactor": 2}, "IOType": "io_parallel"}
    design = onnx_design(onnx_mlp(), cfg, part="xc7z020clg400-1")
    got = [(x["class_name"], x["d_in"], x["d_out"], x["parameters"], x["reuse_factor"], x.get("weight_bits"))
           for x in design.layers]  # fmt: skip
    assert got == [
        ("InputLayer", [10], [10], 0, 2, None),
        ("Dense", [10], [6], 10 * 6 + 6, 2, 12),  # MatMul + Add: hls4ml's Dense + ApplyAlpha, folded back
        ("Activation", [6], [6], 0, 2, None),
        ("Dense", [6], [3], 6 * 3 + 3, 2, 12),
    ]
    assert design.part == "xc7z020clg400-1" and design.strategy == "latency"


def test_pytorch_and_onnx_of_the_same_model_agree(tmp_path):
    model = _mlp()
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(model, torch.randn(1, 16), str(path), dynamo=False)
    cfg = {"Model": {"Precision": "ap_fixed<8,3>", "ReuseFactor": 4}}
    a, b = pytorch_design(model, (16,), cfg), onnx_design(path, cfg)
    assert _strip(a.layers) == _strip(b.layers)


def test_conv_model_reads_channels_last_and_folds_hls4ml_plumbing():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 10, 2)
    )
    cfg = {"IOType": "io_stream", "HLSConfig": {"Model": {"Precision": "ap_fixed<16,6>", "ReuseFactor": 1}}}
    design = pytorch_design(model, (3, 10), cfg)
    got = [(x["class_name"], x["d_in"], x["d_out"]) for x in design.layers]
    assert got == [
        ("InputLayer", [10, 3], [10, 3]),
        ("Conv1D", [10, 3], [10, 4]),
        ("Activation", [10, 4], [10, 4]),
        ("Flatten", [10, 4], [40]),
        ("Dense", [40], [2]),
    ]
    conv = design.layers[1]
    assert (conv["filters"], conv["kernel_size"], conv["padding"], conv["parameters"]) == (
        4,
        [3],
        "same",
        3 * 3 * 4 + 4,
    )


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"Model": {"Precision": "ap_fixd<8,3>"}}, "HLSConfig.Model.Precision"),
        ({"Model": {"Precision": "float32"}}, "HLSConfig.Model.Precision"),
        (
            {"LayerName": {"_0": {"Precision": {"weight": "fixed<8>"}}}},
            "HLSConfig.LayerName._0.Precision.weight",
        ),
        ({"Model": {"ReuseFactor": 0}}, "HLSConfig.Model.ReuseFactor"),
        ({"Model": {"ReuseFactor": "4"}}, "HLSConfig.Model.ReuseFactor"),
        ({"Model": {"Strategy": "Fast"}}, "HLSConfig.Model.Strategy"),
        ({"Model": {"Reuse": 4}}, "HLSConfig.Model.Reuse"),
    ],
)
def test_bad_config_names_the_field(patch, field):
    hls = {"Model": {**CONFIG["HLSConfig"]["Model"], **patch.get("Model", {})}, **{k: v for k, v in patch.items()
                                                                                 if k != "Model"}}  # fmt: skip
    with pytest.raises(Hls4mlConfigError, match=f"hls4ml config: {field.replace('.', '[.]')} ") as err:
        read_hls4ml_config({**CONFIG, "HLSConfig": hls})
    assert err.value.field == field


def test_reuse_factor_that_does_not_divide_is_refused_naming_field_and_layer():
    cfg = {"Model": {"Precision": "ap_fixed<8,3>", "ReuseFactor": 4}, "LayerName": {"_2": {"ReuseFactor": 7}}}
    with pytest.raises(Hls4mlConfigError) as err:
        pytorch_design(_mlp(), (16,), cfg)
    msg = str(err.value)
    assert err.value.field == "LayerName._2.ReuseFactor"
    assert "is 7" in msg and "'_2'" in msg and "divide 32" in msg and "valid: 1, 2, 4, 8, 16, 32" in msg
    with pytest.raises(Hls4mlConfigError, match="Model.ReuseFactor is 3"):
        pytorch_design(_mlp(), (16,), {"Model": {"ReuseFactor": 3}})


def test_layer_name_not_in_model_is_refused():
    with pytest.raises(
        Hls4mlConfigError, match="LayerName.fc9 names no layer of the model; its layers: input_1, _0"
    ):
        pytorch_design(_mlp(), (16,), {"LayerName": {"fc9": {"ReuseFactor": 2}}})


def test_unsupported_layers_are_errors_naming_the_layer():
    with pytest.raises(Hls4mlConfigError, match="ONNX node 'act' is a Cos, which hls4ml does not convert"):
        onnx_design(onnx_mlp(op="Cos"), {})
    lstm = torch.nn.Sequential(torch.nn.Linear(4, 4))
    lstm.add_module("emb", torch.nn.Embedding(10, 4))
    with pytest.raises(Hls4mlConfigError, match="(?i)emb|embedding"):
        pytorch_design(lstm, (4,), {})


def test_unsafe_or_malformed_inputs_are_refused(tmp_path):
    with pytest.raises(Hls4mlConfigError, match="not valid YAML"):
        read_hls4ml_config(b"Model: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(Hls4mlConfigError, match="OnnxModel names a model file"):
        read_hls4ml_config({"OnnxModel": "/etc/passwd"})
    with pytest.raises(Hls4mlConfigError, match="IOType is 'io_serial'"):
        read_hls4ml_config({"IOType": "io_serial"})
    with pytest.raises(Hls4mlConfigError, match="not an ONNX file|has no nodes"):
        onnx_design(b"this is not protobuf at all", {})
    model = onnx.load_model_from_string(onnx_mlp())
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)  # fmt: skip
    with pytest.raises(Hls4mlConfigError, match="external file"):
        onnx_design(tmp_path / "ext.onnx", {})


@pytest.mark.parametrize(("n_in", "n_out"), [(16, 8), (8, 4), (36, 36), (12, 5), (7, 3)])
def test_valid_reuse_factors_match_hls4ml(n_in, n_out):
    import hls4ml

    backend = hls4ml.backends.get_backend("Vivado")
    assert valid_reuse_factors(n_in, n_out) == backend.get_valid_reuse_factors(n_in, n_out)


def test_cli_refuses_bad_config_before_loading_any_model(tmp_path):
    from hwsurrogate.cli.predict import predict_fpga

    (tmp_path / "net.py").write_text(
        "import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU())\n"
    )
    (tmp_path / "cfg.yml").write_text(
        "HLSConfig:\n  Model:\n    Precision: ap_fixed<8,3>\n    ReuseFactor: 5\n"
    )
    runner = CliRunner()
    args = ["--model", f"{tmp_path / 'net.py'}:build", "--input-shape", "16", "--hls4ml-config",
            str(tmp_path / "cfg.yml")]  # fmt: skip
    r = runner.invoke(predict_fpga, args)
    assert r.exit_code == 1 and "HLSConfig.Model.ReuseFactor is 5" in r.output
    r = runner.invoke(predict_fpga, ["--model", f"{tmp_path / 'net.py'}:build"])
    assert r.exit_code == 2 and "--input-shape" in r.output
    r = runner.invoke(predict_fpga, ["--model", f"{tmp_path / 'net.py'}:nothing", "--input-shape", "16"])
    assert r.exit_code == 2 and "has no 'nothing'" in r.output


@pytest.mark.slow
def test_exemplar_models_through_hls4ml_match_their_layer_lists(data_dir):
    """The 8 wa-hls4ml exemplar models, rebuilt in PyTorch, give the features of their records."""
    import polars as pl

    from hwsurrogate.benchmarks.fpga_frontend import record_module
    from hwsurrogate.datasets.importers import wa_hls4ml
    from hwsurrogate.surrogates.features.hls4ml import hls4ml_features

    path = data_dir / "fpga" / "wa-hls4ml" / "raw" / "exemplar" / "exemplar_models.json"
    records = json.loads(path.read_text())
    assert len(records) == 8
    ours, theirs = [], []
    for i, rec in enumerate(records):
        module, shape, config = record_module(rec)
        ours.append(pytorch_design(module, shape, config).query())
        row = next(r for r in wa_hls4ml.record_rows(rec, path=path, index=i) if r["stage"] == "hls_estimate")
        theirs.append({k: row[k] for k in ours[-1]})
    f_ours = hls4ml_features(pl.DataFrame(ours)).to_numpy()
    f_theirs = hls4ml_features(pl.DataFrame(theirs)).to_numpy()
    np.testing.assert_allclose(f_ours, f_theirs, rtol=1e-12)
