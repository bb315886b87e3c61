"""DNN latency collector: NB201/FBNet networks as the benchmarks define them, custom models, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hwsurrogate.cli import cli
from hwsurrogate.datasets.archspaces import format_nb201
from hwsurrogate.datasets.collectors.dnn_latency import build_network, collect_latency, random_arch_keys
from hwsurrogate.datasets.collectors.nasnets import FBNetNetwork, NB201Network, count_parameters
from hwsurrogate.datasets.schemas import schema
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import CollectorError

ALL_NONE = format_nb201(["none"] * 6)
ALL_CONV3 = format_nb201(["nor_conv_3x3"] * 6)
ALL_SKIP = format_nb201(["skip_connect"] * 6)
REF9 = "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"  # HELP reference index 9
FBNET = "k3_e1 k5_e6 k5_e3 k5_e6 k3_e6 k3_e6 k5_e3 k3_e1_g2 k5_e6 k5_e1 k3_e6 k5_e6 k5_e6 k3_e1 skip k5_e1 skip k5_e1_g2 k5_e3 skip k5_e1_g2 k3_e1_g2"
FAST = {"repeats": 2, "warmup": 1, "threads": 1, "progress": False}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------ networks
# NAS-Bench-201 reports CIFAR-10 parameter counts from 0.073306 M (cells without convolutions)
# to 1.531546 M (all nor_conv_3x3), and 0.079156 M as the CIFAR-100 minimum (the 100-way classifier).
@pytest.mark.parametrize(
    ("arch", "num_classes", "params"),
    [(ALL_NONE, 10, 73_306), (ALL_SKIP, 10, 73_306), (ALL_CONV3, 10, 1_531_546), (ALL_NONE, 100, 79_156)],
)
def test_nb201_parameter_counts_match_the_benchmark(arch: str, num_classes: int, params: int) -> None:
    assert count_parameters(NB201Network(arch, num_classes=num_classes)) == params


def test_nb201_network_structure() -> None:
    net = build_network("nb201", REF9)
    assert not net.training
    assert len(net.cells) == 17  # 3 x 5 cells + 2 reduction blocks
    assert [m.conv_a[1].out_channels for m in net.cells if hasattr(m, "conv_a")] == [32, 64]
    assert net.classifier.in_features == 64 and net.classifier.out_features == 10
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_fbnet_network_follows_hw_nas_bench_cifar_setting() -> None:
    net = build_network("fbnet", FBNET)
    assert len(net.cells) == 22
    feats = net.cells(net.stem(torch.randn(1, 3, 32, 32)))
    assert feats.shape == (1, 352, 4, 4)  # strides 1,1,2,2,1,2,1 on 32x32
    assert net.header[0].out_channels == 1504 and net.fc.out_features == 100
    grouped = net.cells[7]  # layer 8 is k3_e1_g2
    assert grouped.conv1.groups == 2 and grouped.conv2.groups == grouped.conv2.in_channels
    assert isinstance(net.cells[14], torch.nn.Identity)  # layer 15 is skip with an unchanged shape


def test_fbnet_skip_with_shape_change_is_a_projection() -> None:
    net = FBNetNetwork(" ".join(["skip"] * 22))
    assert isinstance(net.cells[0], torch.nn.Identity)  # 16 -> 16, stride 1
    assert isinstance(net.cells[1][0], torch.nn.Conv2d) and net.cells[1][0].out_channels == 24


@pytest.mark.parametrize(
    ("space", "key", "match"),
    [
        ("nb201", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NB201 op 'conv'"),
        ("nb201", "resnet18", "not a NAS-Bench-201 arch string"),
        ("fbnet", "k3_e1 k3_e1", "FBNet needs 22"),
        ("ofa", ALL_NONE, "space 'ofa'"),
    ],
)
def test_unknown_arch_keys_are_rejected_with_the_field(space: str, key: str, match: str) -> None:
    with pytest.raises(CollectorError, match=match):
        build_network(space, key)


# ------------------------------------------------------------------------------ collecting
def test_collect_two_nb201_archs() -> None:
    df = collect_latency("nb201", [ALL_SKIP, REF9], **FAST)
    assert df.schema == schema("latency") and df.height == 2
    assert df["arch_key"].to_list() == [ALL_SKIP, REF9]
    assert df["arch_index"].to_list() == [None, 9]  # HELP reference archs carry their index
    assert (df["latency_ms"] > 0).all() and df["measured"].all()
    assert df["device_id"][0].endswith("-cpu") and df["source"][0] == "collector:latency"
    extra = json.loads(df["extra"][0])
    assert extra["repeats"] == 2 and extra["threads"] == 1 and "torch" in extra["software"]
    assert extra["input_shape"] == [1, 3, 32, 32] and extra["n_params"] == 73_306


def test_rounds_split_repeats_and_keep_arch_order() -> None:
    df = collect_latency("nb201", [REF9, ALL_SKIP], repeats=5, warmup=0, threads=1, rounds=2, progress=False)
    assert df["arch_key"].to_list() == [REF9, ALL_SKIP]
    extra = [json.loads(e) for e in df["extra"]]
    assert [e["repeats"] for e in extra] == [5, 5] and extra[0]["rounds"] == 2
    with pytest.raises(CollectorError, match=r"rounds \(6\) may not exceed repeats \(5\)"):
        collect_latency("nb201", [REF9], repeats=5, rounds=6, progress=False)


def test_round_min_median_is_the_median_of_each_rounds_fastest_run() -> None:
    df = collect_latency("nb201", [REF9], repeats=6, warmup=0, threads=1, rounds=3, rebuild=True,
                         estimator="round_min_median", progress=False)  # fmt: skip
    extra = json.loads(df["extra"][0])
    assert extra["rebuild"] is True and extra["estimator"] == "round_min_median"
    assert df["latency_ms"][0] == pytest.approx(extra["round_min_median_ms"])
    # the fastest run of a round is never slower than that round's median, nor faster than the overall min
    assert extra["min_ms"] <= df["latency_ms"][0] <= extra["median_ms"] * 1.5
    plain = json.loads(collect_latency("nb201", [REF9], **FAST)["extra"][0])
    assert plain["estimator"] == "median" and plain["rebuild"] is False
    with pytest.raises(CollectorError, match="estimator 'mean'"):
        collect_latency("nb201", [REF9], estimator="mean", progress=False)  # type: ignore[arg-type]


def test_batch_is_recorded_and_used() -> None:
    df = collect_latency("nb201", [ALL_SKIP], batch=3, **FAST)
    assert df["batch"][0] == 3 and json.loads(df["extra"][0])["input_shape"] == [3, 3, 32, 32]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch": 0}, "batch must be an integer >= 1"),
        ({"repeats": 0}, "repeats must be an integer >= 1"),
        ({"precision": "int4"}, "precision 'int4'"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"arch_indices": [1, 2, 3]}, "arch_indices has 3 entries"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict, match: str) -> None:
    args = {**FAST, **kwargs}
    with pytest.raises(CollectorError, match=match):
        collect_latency("nb201", [ALL_SKIP], **args)


def test_random_arch_keys_are_distinct_and_canonical() -> None:
    keys = random_arch_keys("nb201", 50, seed=3)
    assert len(set(keys)) == 50 and keys == random_arch_keys("nb201", 50, seed=3)
    assert all(build_network("nb201", k) is not None for k in keys[:2])
    assert len(random_arch_keys("fbnet", 2)[0].split()) == 22


# ------------------------------------------------------------------------------ custom models
class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_model_is_identified_by_name_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.jit.script(Tiny()).save(str(path))
    df = collect_latency("custom", [str(path)], input_shape=(3, 8, 8), **FAST)
    assert df["space"][0] == "custom" and df["arch_key"][0].startswith("tiny.pt@sha256:")
    assert df["arch_index"][0] is None and df["framework"][0].startswith("torchscript")


def test_import_path_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_models.py").write_text(
        "import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))\n"
        "def not_a_model():\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    df = collect_latency("custom", ["my_models:make"], input_shape=(3, 2, 2), **FAST)
    assert df["arch_key"][0] == "my_models:make" and json.loads(df["extra"][0])["n_params"] == 26
    with pytest.raises(CollectorError, match="returned int, not a torch.nn.Module"):
        collect_latency("custom", ["my_models:not_a_model"], input_shape=(3, 2, 2), **FAST)
    with pytest.raises(CollectorError, match="cannot import"):
        collect_latency("custom", ["my_models:missing"], input_shape=(3, 2, 2), **FAST)


def test_torch_export_program(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(Tiny(), (torch.randn(1, 3, 8, 8),)), str(path))
    df = collect_latency("custom", [str(path)], input_shape=(3, 8, 8), **FAST)
    assert df["arch_key"][0].startswith("tiny.pt2@sha256:") and df["framework"][0].startswith("torch.export")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_custom_model_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    with pytest.raises(CollectorError, match="not a TorchScript file"):
        collect_latency("custom", [str(bad)], input_shape=(3, 8, 8), **FAST)
    with pytest.raises(CollectorError, match="file not found"):
        collect_latency("custom", [str(tmp_path / "absent.pt")], input_shape=(3, 8, 8), **FAST)
    with pytest.raises(CollectorError, match="input_shape is required"):
        collect_latency("custom", [str(bad)], **FAST)
    good = tmp_path / "tiny.pt"
    torch.jit.script(Tiny()).save(str(good))
    with pytest.raises(CollectorError, match=r"failed on input shape \(1, 5, 8, 8\)"):
        collect_latency("custom", [str(good)], input_shape=(5, 8, 8), **FAST)


def _tiny_onnx(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_model_runs_with_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "relu.onnx"
    _tiny_onnx(path)
    df = collect_latency("custom", [str(path)], input_shape=(4,), batch=2, **FAST)
    assert df["arch_key"][0].startswith("relu.onnx@sha256:") and df["framework"][0].startswith("onnxruntime")


def test_onnx_without_onnxruntime_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(CollectorError, match=r"pip install 'hwsurrogate\[onnx\]'"):
        collect_latency("custom", [str(path)], input_shape=(4,), **FAST)


# ------------------------------------------------------------------------------ CLI
def test_cli_stores_rows_and_rejects_bad_keys_without_writing(tmp_path: Path) -> None:
    store = tmp_path / "s"
    runner = CliRunner()
    ok = runner.invoke(cli, ["collect", "latency", "--arch", ALL_SKIP, "--repeats", "2", "--warmup", "0",
                             "--threads", "1", "--store", str(store)])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert DatasetStore(store).read("latency")["arch_key"].to_list() == [ALL_SKIP]
    bad = runner.invoke(cli, ["collect", "latency", "--arch", ALL_SKIP, "--arch", "|bogus|", "--repeats", "2",
                              "--store", str(store)])  # fmt: skip
    assert bad.exit_code != 0 and "arch_key" in str(bad.exception)
    assert DatasetStore(store).read("latency").height == 1  # unchanged


def test_cli_model_needs_input_shape(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["collect", "latency", "--model", "x.pt", "--store", str(tmp_path / "s")])
    assert res.exit_code == 2 and "--input-shape" in res.output


def test_cli_archs_file_missing_or_bad_key_is_named(tmp_path: Path) -> None:
    store = tmp_path / "s"
    runner = CliRunner()
    res = runner.invoke(
        cli, ["collect", "latency", "--archs-file", str(tmp_path / "none.txt"), "--store", str(store)]
    )
    assert res.exit_code != 0 and "--archs-file" in str(res.exception)
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# two archs\n{ALL_SKIP}\nk3_e1 skip\n")
    res = runner.invoke(cli, ["collect", "latency", "--archs-file", str(keys), "--store", str(store)])
    assert res.exit_code != 0 and "k3_e1 skip" in str(res.exception)
    assert DatasetStore(store).read("latency").height == 0
