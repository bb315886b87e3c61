"""neusight_traces importer: node mapping, layer replication, phases, bad input, the real data."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.importers import neusight_traces
from hwsurrogate.errors import SourceFormatError

COLS = ["op", "target", "meta", "input_shapes", "output_shape", "dtype", "Name", "fw_latency", "bw_latency",
        "acc_latency"]  # fmt: skip
LIN = "{'nn_module_stack': OrderedDict([('h', ('h', <class 'torch.nn.modules.linear.Linear'>))])}"
LN = "{'nn_module_stack': OrderedDict([('ln', ('ln', <class 'torch.nn.modules.normalization.LayerNorm'>))])}"
F32 = "torch.float32"
# a GPT-like trace: prologue, one layer (transformer_h_0_ln_1 .. add_15), epilogue
NODES = [
    ("placeholder", "input_ids", "", "[]", "(2, 8)", "torch.int64", "input_ids", 0, 0, 0),
    ("call_method", "size", "", "[[2, 8]]", "(1,)", "", "size", 0.007, 0, 0),
    ("call_module", "transformer.h.0.ln_1", LN, "[[2, 8, 16]]", "(2, 8, 16)", F32, "transformer_h_0_ln_1", 0.03, 0.05, 0.01),
    ("call_function", "<built-in method addmm of type object at 0x1>", "", "[[48], [16, 16], [16, 48]]", "(16, 48)", F32, "addmm", 0.2, 0.4, 0.02),
    ("call_function", "<built-in method matmul of type object at 0x1>", "", "[[2, 4, 8, 4], [2, 4, 4, 8]]", "(2, 4, 8, 8)", F32, "matmul", 0.1, 0.2, 0),
    ("call_function", "<function softmax at 0x2>", "", "[[2, 4, 8, 8]]", "(2, 4, 8, 8)", F32, "softmax", 0.05, 0.06, 0),
    ("call_function", "<function dropout at 0x3>", "", "[[2, 4, 8, 8]]", "(2, 4, 8, 8)", F32, "dropout", 0.04, 0.05, 0),
    ("call_method", "view", "", "[[2, 8, 16], [1]]", "(16, 16)", F32, "view", 0.008, 0, 0),
    ("call_function", "<built-in function add>", "", "[[2, 8, 16], [2, 8, 16]]", "(2, 8, 16)", F32, "add_15", 0.02, 0.01, 0),
    ("call_module", "lm_head", LIN, "[[2, 8, 16]]", "(2, 8, 100)", F32, "lm_head", 0.3, 0.6, 0.03),
    ("output", "output", "", "[[2, 8, 100]]", "(2, 8, 100)", F32, "output", 0, 0, 0),
]  # fmt: skip


def _csv(nodes: list[tuple]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLS)
    w.writerows(nodes)
    return gzip.compress(buf.getvalue().encode())


def _write(root: Path, stem: str, nodes: list[tuple] = NODES, num_layer: int = 3) -> Path:
    folder = root / "label" / "Tesla_T4"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.csv.gz").write_bytes(_csv(nodes))
    spec = {"num_layer": num_layer, "e2e_latency": 12.5, "fw_latency": 5.0, "bwall_latency": 7.5}
    (folder / f"{stem}.json").write_text(json.dumps(spec))
    return folder / f"{stem}.csv.gz"


def test_nodes_map_to_the_operator_vocabulary(tmp_path: Path) -> None:
    table = neusight_traces.trace_measured_table(_write(tmp_path, "gpt2_large-train-8-2"))
    fw = {r["name"]: r for r in table.filter(pl.col("phase") == "forward").iter_rows(named=True)}
    assert (fw["addmm"]["op_kind"], fw["addmm"]["m"], fw["addmm"]["k"], fw["addmm"]["n"]) == (
        "linear",
        16,
        16,
        48,
    )
    mm = fw["matmul"]
    assert (mm["op_kind"], mm["batch"], mm["m"], mm["k"], mm["n"]) == ("bmm", 8, 8, 4, 8)
    assert (fw["softmax"]["op_kind"], fw["softmax"]["rows"], fw["softmax"]["cols"]) == ("softmax", 64, 8)
    assert fw["transformer_h_0_ln_1"]["op_kind"] == "layernorm"
    assert (fw["lm_head"]["op_kind"], fw["lm_head"]["m"], fw["lm_head"]["k"], fw["lm_head"]["n"]) == (
        "linear",
        16,
        16,
        100,
    )
    assert fw["dropout"]["op_kind"] == "elementwise"  # training: a real kernel
    assert fw["view"]["op_kind"] == fw["size"]["op_kind"] == "other"  # kept with its time, never dropped
    assert "input_ids" not in fw and "output" not in fw  # no time: not operator calls


def test_layer_replication_and_training_phases(tmp_path: Path) -> None:
    table = neusight_traces.trace_measured_table(_write(tmp_path, "gpt2_large-train-8-2", num_layer=3))
    count = dict(
        zip(
            table.filter(pl.col("phase") == "forward")["name"],
            table.filter(pl.col("phase") == "forward")["count"],
            strict=True,
        )
    )
    assert count["size"] == 1 and count["lm_head"] == 1  # prologue / epilogue
    assert count["transformer_h_0_ln_1"] == count["add_15"] == count["softmax"] == 3  # the layer
    back = table.filter(pl.col("phase") == "backward")
    assert set(back["name"]) == {
        "transformer_h_0_ln_1",
        "addmm",
        "matmul",
        "softmax",
        "dropout",
        "add_15",
        "lm_head",
    }
    addmm = back.filter(pl.col("name") == "addmm").row(0, named=True)
    assert addmm["latency_ms"] == pytest.approx(0.42)  # bw + acc
    assert addmm["flops"] == 2 * 2.0 * 16 * 16 * 48  # backward GEMM flops: twice the forward
    measured = (table["count"] * table["latency_ms"]).sum()
    expected = sum((3 if 2 <= i <= 8 else 1) * (n[7] + n[8] + n[9]) for i, n in enumerate(NODES))
    assert measured == pytest.approx(expected)


def test_inference_has_forward_only_and_dropout_is_identity(tmp_path: Path) -> None:
    table = neusight_traces.trace_op_table(_write(tmp_path, "gpt2_large-inf-8-2"))
    assert set(table["phase"]) == {"forward"}
    assert table.filter(pl.col("name") == "dropout")["op_kind"].item() == "other"
    assert "latency_ms" not in table.columns


def test_load_writes_ops_and_model_latency(tmp_path: Path) -> None:
    _write(tmp_path, "gpt2_large-train-8-2")
    (tmp_path / "label" / "Tesla_T4" / "gpt2_large-inf-8-2-fusion.json").write_text('{"num_layer": 0}')
    frames = neusight_traces.load(tmp_path)
    ops, lat = frames["ops"], frames["model_latency"]
    assert ops["measurement_id"].is_unique().all()
    assert set(ops["model"]) == {"gpt2_large-train-8-2"} and set(ops["device_id"]) == {"neusight/Tesla_T4"}
    row = lat.row(0, named=True)  # the fusion JSON is another regime: not imported
    assert lat.height == 1
    assert (row["model"], row["mode"], row["batch"], row["seqlen"], row["num_layer"]) == (
        "gpt2_large",
        "training",
        2,
        8,
        3,
    )
    assert (row["latency_ms"], row["fw_latency_ms"], row["bw_latency_ms"]) == (12.5, 5.0, 7.5)


def test_shapes_are_literals_only(tmp_path: Path) -> None:
    evil = list(NODES)
    evil[3] = (*evil[3][:3], "__import__('os').system('echo pwned')", *evil[3][4:])
    with pytest.raises(SourceFormatError, match="addmm.*not a literal"):
        neusight_traces.trace_measured_table(_write(tmp_path, "gpt2_large-inf-8-2", evil))


def test_bad_latency_and_missing_layer_end_are_named(tmp_path: Path) -> None:
    bad = list(NODES)
    bad[5] = (*bad[5][:7], -1.0, 0, 0)
    with pytest.raises(SourceFormatError, match="softmax.*fw_latency"):
        neusight_traces.trace_measured_table(_write(tmp_path, "gpt2_large-inf-8-2", bad))
    no_end = [n for n in NODES if n[6] != "add_15"]
    with pytest.raises(SourceFormatError, match="add_15"):
        neusight_traces.trace_measured_table(_write(tmp_path, "gpt2_large-inf-8-2", no_end))


@pytest.mark.shared_data
def test_real_data(data_dir: Path) -> None:
    root = data_dir / neusight_traces.SOURCE.subpath
    frames = neusight_traces.load(root)
    assert frames["model_latency"].height == 83
    assert frames["ops"]["measurement_id"].is_unique().all()
    # README: replicated per-op sums are within ~7 % of the measured end-to-end on H100 training
    csv_path = root / "label" / "NVIDIA_H100_80GB_HBM3" / "gpt2_large-train-1024-4.csv.gz"
    table = neusight_traces.trace_measured_table(csv_path)
    e2e = json.loads(csv_path.with_name("gpt2_large-train-1024-4.json").read_text())["e2e_latency"]
    assert table.filter(pl.col("op_kind") == "linear")["count"].max() == 36
    assert abs((table["count"] * table["latency_ms"]).sum() / e2e - 1) < 0.1
