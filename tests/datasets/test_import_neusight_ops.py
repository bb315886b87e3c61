"""neusight_ops importer: op/shape mapping on tiny files the test writes, bad input, the real data."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.importers import neusight_ops
from hwsurrogate.errors import SourceFormatError

HEAD = "OPName,Latency,Device,Torch Version,CUDNN Version,Kernel Name,Warps per SM,Blocks per SM,Grid x"
VEC = f"{HEAD},B,H\n"
CONV = f"{HEAD},B,Input_Channel,Output_Channel,Kernel_Szie,Input_Size,Stride,Padding\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()))


def _tiny(root: Path, *, latency: str = "0.5", op_name: str | None = None) -> Path:
    for op in neusight_ops.OP_MAP:
        name = op_name or op
        if op == "conv":
            _write(
                root / "train" / op / "Tesla_T4.csv.gz",
                CONV + f"{name},{latency},Tesla T4,p2.1.0,8902,k,1,1,1,2,3,8,3,32,1,1\n",
            )
        else:
            _write(
                root / "train" / op / "Tesla_T4.csv.gz",
                VEC + f"{name},{latency},Tesla T4,p2.1.0,8902,k,1,1,1,64,128\n",
            )
    _write(root / "test" / "vec.csv.gz", VEC + "add,0.25,NVIDIA L4,p2.1.0,8902,k,1,1,1,4096,1024\n")
    return root


def test_tiny_files_map_ops_shapes_and_devices(tmp_path: Path) -> None:
    ops = neusight_ops.load(_tiny(tmp_path))["ops"]
    assert ops.height == len(neusight_ops.OP_MAP) + 1
    assert ops["measurement_id"].is_unique().all()
    by = {(r["op_kind"], r["op"], r["inputs"]): r for r in ops.iter_rows(named=True)}
    add2 = next(
        r
        for r in ops.iter_rows(named=True)
        if r["device_id"] == "neusight/Tesla_T4" and r["op"] == "add" and r["inputs"] == 2
    )
    assert (add2["rows"], add2["cols"], add2["flops"]) == (64, 128, 64 * 128)
    assert add2["bytes"] == 3 * 64 * 128 * 4  # two operands + the result, fp32
    assert ("elementwise", "add", 1) in by  # addu: a scalar operand
    assert ("activation", "gelu", 1) in by and ("layernorm", "layer_norm", 1) in by
    conv = ops.filter(pl.col("op_kind") == "conv2d").row(0, named=True)
    assert (conv["batch"], conv["in_channels"], conv["out_channels"], conv["kernel_size"]) == (2, 3, 8, 3)
    assert (conv["input_size"], conv["stride"], conv["padding"]) == (32, 1, 1)
    out = 32  # (32 + 2 - 3) // 1 + 1
    assert conv["flops"] == 2.0 * 2 * 8 * out * out * 3 * 9
    test_row = ops.filter(pl.col("device_id") == "neusight/NVIDIA_L4").row(0, named=True)
    assert test_row["extra"].count('"split":"test"') == 1
    assert set(ops["phase"]) == {"forward"} and set(ops["dtype"]) == {"fp32"}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"latency": "-1"}, "'Latency'"),
        ({"latency": "nan"}, "'Latency'"),
        ({"op_name": "exp"}, "unknown OPName"),
    ],
)
def test_bad_rows_name_the_file_and_column(tmp_path: Path, kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(SourceFormatError, match=needle):
        neusight_ops.load(_tiny(tmp_path, **kwargs))


def test_bad_shape_names_the_column(tmp_path: Path) -> None:
    _tiny(tmp_path)
    _write(
        tmp_path / "train" / "add" / "Tesla_T4.csv.gz", VEC + "add,0.5,Tesla T4,p2.1.0,8902,k,1,1,1,0,128\n"
    )
    with pytest.raises(SourceFormatError, match="'B'"):
        neusight_ops.load(tmp_path)


@pytest.mark.shared_data
def test_real_data_rows_and_device_ids(data_dir: Path) -> None:
    ops = neusight_ops.load(data_dir / neusight_ops.SOURCE.subpath)["ops"]
    assert ops.height == 142_286
    assert ops["measurement_id"].is_unique().all()
    devices = set(ops["device_id"].unique())
    # the ids of the neusight GEMM importer, which owns the descriptors
    assert devices == {
        "neusight/Tesla_P4", "neusight/Tesla_P100-PCIE-16GB", "neusight/Tesla_T4", "neusight/Tesla_V100-PCIE-32GB",
        "neusight/NVIDIA_A100-PCIE-40GB", "neusight/NVIDIA_A100_80GB_PCIe", "neusight/NVIDIA_L4",
    }  # fmt: skip
    assert (
        ops.filter(pl.col("device_id") == "neusight/NVIDIA_L4")["extra"].str.contains('"split":"test"').all()
    )
