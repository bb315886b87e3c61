"""Model front ends: a hand-written module, a small ONNX file and a config give the operator table
a hand computation predicts (shapes, FLOPs); training adds backward rows; bad input names its field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from hwsurrogate.datasets.frontends import config_module, load_op_table, onnx_op_table, trace_module
from hwsurrogate.errors import ModelSourceError


class TinyNet(nn.Module):
    """conv(3->8, k3, p1) -> relu -> depthwise conv -> pool -> flatten -> linear(8->10) -> softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        h = self.pool(self.dw(h) + h).flatten(1)
        return torch.softmax(self.fc(h), dim=-1)


def _by_name(table):
    return {r["name"]: r for r in table.to_dicts()}


def test_module_table_matches_hand_oracle() -> None:
    with torch.device("meta"):
        net = TinyNet()
    t = _by_name(trace_module(net, [(2, 3, 16, 16)]))
    conv = t["conv"]
    assert (conv["op_kind"], conv["batch"], conv["in_channels"], conv["out_channels"], conv["kernel_size"],
            conv["input_size"], conv["stride"], conv["padding"]) == ("conv2d", 2, 3, 8, 3, 16, 1, 1)  # fmt: skip
    assert conv["flops"] == 2 * 2 * 8 * 16 * 16 * 3 * 9
    dw = t["dw"]
    assert (dw["op"], dw["in_channels"], dw["out_channels"]) == ("depthwise_conv2d", 1, 8)
    assert dw["flops"] == 2 * 2 * 8 * 16 * 16 * 1 * 9  # the depthwise conv's real FLOPs
    relu = t["relu"]
    assert (relu["op_kind"], relu["rows"], relu["cols"], relu["flops"]) == (
        "activation",
        2 * 8 * 16,
        16,
        2 * 8 * 16 * 16,
    )
    add = t["add"]
    assert (add["op_kind"], add["inputs"], add["bytes"]) == ("elementwise", 2, 3 * 2 * 8 * 16 * 16 * 4)
    pool = t["pool"]
    assert (pool["op_kind"], pool["rows"] * pool["cols"]) == ("reduction", 2 * 8 * 16 * 16)
    fc = t["fc"]
    assert (fc["op_kind"], fc["batch"], fc["m"], fc["n"], fc["k"], fc["flops"]) == (
        "linear",
        1,
        2,
        10,
        8,
        2 * 2 * 10 * 8,
    )
    assert (t["softmax"]["op_kind"], t["softmax"]["rows"], t["softmax"]["cols"]) == ("softmax", 2, 10)
    assert (t["flatten"]["op_kind"], t["flatten"]["bytes"]) == ("other", 0.0)  # a view
    assert not any(p.device.type != "meta" for p in net.parameters())  # no weights were allocated


def test_training_mode_adds_one_backward_row_per_timed_forward_row() -> None:
    with torch.device("meta"):
        net = TinyNet()
    inf = trace_module(net, [(2, 3, 16, 16)], mode="inference")
    train = trace_module(net, [(2, 3, 16, 16)], mode="training")
    fwd = train.filter(train["phase"] == "forward")
    bwd = train.filter(train["phase"] == "backward")
    assert fwd.height == inf.height
    timed = inf.filter(~((inf["op_kind"] == "other") & (inf["bytes"] == 0)))
    assert bwd.height == timed.height
    fc_b = _by_name(bwd)["fc.backward"]
    assert (fc_b["m"], fc_b["n"], fc_b["k"], fc_b["flops"]) == (2, 10, 8, 2 * 2 * 2 * 10 * 8)  # 2x forward


def test_attention_bmm_and_sdpa() -> None:
    class Attn(nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            a = torch.matmul(q, k.transpose(-1, -2))
            return F.scaled_dot_product_attention(q, k, v) + torch.matmul(torch.softmax(a, -1), v)

    t = _by_name(trace_module(Attn(), [(2, 4, 32, 16)] * 3))
    mm = t["matmul"]
    assert (mm["op_kind"], mm["batch"], mm["m"], mm["n"], mm["k"]) == ("bmm", 8, 32, 32, 16)
    assert (t["scaled_dot_product_attention.qk"]["op_kind"], t["scaled_dot_product_attention.pv"]["n"]) == (
        "bmm",
        16,
    )
    assert t["scaled_dot_product_attention.softmax"]["rows"] == 8 * 32


def test_config_layers_replicate() -> None:
    cfg = {"model_type": "gpt2", "n_embd": 64, "n_layer": 3, "n_head": 4, "vocab_size": 100, "n_positions": 64,
           "architectures": ["GPT2LMHeadModel"]}  # fmt: skip
    t = load_op_table(cfg, batch=2, seqlen=16)
    lin = t.filter(t["op_kind"] == "linear")
    assert lin.height == 3 * 6 + 1  # q, k, v, out, fc1, fc2 per layer + LM head
    assert (lin["m"] == 32).all()
    bmm = t.filter(t["op_kind"] == "bmm")
    assert bmm.height == 6 and (bmm["batch"] == 8).all()
    assert t.filter(t["op_kind"] == "embedding")["rows"].to_list() == [32, 16]


@pytest.mark.skipif(not Path("/work/shared/data").exists() and not __import__("os").environ.get("HWSURROGATE_DATA_DIR"),
                    reason="HWSURROGATE_DATA_DIR (NeuSight model configs) absent")  # fmt: skip
def test_neusight_config_builds() -> None:
    import os

    root = (
        Path(os.environ.get("HWSURROGATE_DATA_DIR", "/work/shared/data"))
        / "models/neusight_traces/model_configs"
    )
    if not (root / "bert_large.json").exists():
        pytest.skip(f"{root} has no bert_large.json")
    module = config_module(root / "bert_large.json", num_layers=1)
    assert sum(1 for _ in module.modules() if isinstance(_, nn.Linear)) == 6 + 1


def _onnx_model(sym_batch: bool = True) -> bytes:
    w = numpy_helper.from_array(np.zeros((16, 8), np.float32), "W")
    c = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "C")
    emb = numpy_helper.from_array(np.zeros((50, 8), np.float32), "E")
    b = "N" if sym_batch else 2
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "C"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Flatten", ["r"], ["f"], name="flat"),
            helper.make_node("MatMul", ["y", "W"], ["m"], name="mm"),
            helper.make_node("Add", ["m", "m"], ["a"], name="add"),
            helper.make_node("Softmax", ["a"], ["s"], name="sm", axis=-1),
            helper.make_node("Gather", ["E", "ids"], ["g"], name="emb"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, 3, 8, 8]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, 16]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [b, 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("f", "s", "g")],
        [w, c, emb],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_onnx_table_matches_hand_oracle(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(_onnx_model())
    t = _by_name(load_op_table(str(path), [(2, 3, 8, 8), (2, 16), (2, 5)]))
    conv = t["conv"]
    assert (conv["batch"], conv["in_channels"], conv["out_channels"], conv["input_size"], conv["stride"]) == (
        2,
        3,
        4,
        8,
        2,
    )
    assert conv["flops"] == 2 * 2 * 4 * 4 * 4 * 3 * 9  # out 4x4
    assert (t["relu"]["rows"], t["relu"]["cols"]) == (2 * 4 * 4, 4)
    assert (t["mm"]["op_kind"], t["mm"]["m"], t["mm"]["n"], t["mm"]["k"], t["mm"]["flops"]) == (
        "linear",
        2,
        8,
        16,
        2 * 2 * 8 * 16,
    )
    assert (t["add"]["op_kind"], t["add"]["inputs"]) == ("elementwise", 2)
    assert (t["sm"]["rows"], t["sm"]["cols"]) == (2, 8)
    assert (t["emb"]["op_kind"], t["emb"]["rows"], t["emb"]["cols"]) == ("embedding", 10, 8)
    assert (t["flat"]["op_kind"], t["flat"]["bytes"]) == ("other", 0.0)
    train = onnx_op_table(path.read_bytes(), input_shapes=[(2, 3, 8, 8), (2, 16), (2, 5)], mode="training")
    assert (train["phase"] == "backward").sum() == 6  # every op but the view


def test_onnx_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="protobuf parse failed"):
        onnx_op_table(b"\x08\x96\x01not an onnx file at all\xff\xfe")
    with pytest.raises(ModelSourceError, match="symbolic"):
        onnx_op_table(_onnx_model())
    with pytest.raises(ModelSourceError, match="dim 1 is fixed at 3") as err:
        onnx_op_table(_onnx_model(), input_shapes=[(2, 4, 8, 8), (2, 16), (2, 5)])
    assert err.value.field == "input_shape"
    with pytest.raises(ModelSourceError, match="more than"):
        onnx_op_table(_onnx_model(False), max_bytes=100)
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(ModelSourceError, match="MB an ONNX file may be"):
        load_op_table(str(big), [(1, 3, 8, 8)]) if False else onnx_op_table(big, max_bytes=1024)
    assert isinstance(onnx.load_model_from_string(_onnx_model()), onnx.ModelProto)


def test_callable_errors_name_the_field(tmp_path: Path) -> None:
    mod = tmp_path / "user_nets.py"
    mod.write_text(
        "import torch.nn as nn\n"
        "def mlp():\n    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))\n"
        "def broken():\n    raise RuntimeError('no weights file here')\n"
        "def gpu():\n    return nn.Linear(4, 4).cuda()\n"
        "def not_module():\n    return 3\n"
    )
    t = load_op_table(f"{mod}:mlp", [(4, 32)])
    assert t.filter(t["op_kind"] == "linear")["m"].to_list() == [4, 4]
    with pytest.raises(ModelSourceError, match="does not fit") as err:
        load_op_table(f"{mod}:mlp", [(4, 31)])
    assert err.value.field == "input_shape" and "(call_module 0)" in str(err.value)  # the failing node
    with pytest.raises(ModelSourceError, match="failed to build.*no weights file"):
        load_op_table(f"{mod}:broken", [(1, 4)])
    with pytest.raises(ModelSourceError, match="failed to build"):
        load_op_table(f"{mod}:gpu", [(1, 4)])
    with pytest.raises(ModelSourceError, match="not a torch.nn.Module"):
        load_op_table(f"{mod}:not_module", [(1, 4)])
    with pytest.raises(ModelSourceError, match="has no 'nope'"):
        load_op_table(f"{mod}:nope", [(1, 4)])
    with pytest.raises(ModelSourceError, match="not found"):
        load_op_table(f"{tmp_path}/absent.py:mlp", [(1, 4)])
    with pytest.raises(ModelSourceError, match="give FILE.onnx"):
        load_op_table("model.bin", [(1, 4)])
    with pytest.raises(ModelSourceError) as err:
        load_op_table(f"{mod}:mlp", [(4, 0)])
    assert err.value.field == "input_shape"
    with pytest.raises(ModelSourceError) as err:
        load_op_table({"model_type": "gpt2", "n_embd": 64, "n_layer": 1, "n_head": 4}, batch=1)
    assert err.value.field == "seqlen"
    with pytest.raises(ModelSourceError, match="not divisible"):
        load_op_table({"model_type": "gpt2", "n_embd": 64, "n_layer": 1, "n_head": 5}, batch=1, seqlen=8)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "bert", "hidden_size": "big"}))
    with pytest.raises(ModelSourceError, match="hidden_size must be an integer"):
        load_op_table(str(cfg), batch=1, seqlen=8)


def test_untraceable_module_says_so() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(ModelSourceError, match="torch.fx cannot trace"):
        trace_module(Branchy(), [(2, 2)])
