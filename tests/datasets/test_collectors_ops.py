"""hws collect ops: operator timing on this CPU (tiny tables, no timing window) and whole-model timing;
hws predict model: errors before any model is needed."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch.nn as nn

from hwsurrogate.datasets.collectors.ops import (
    DEFAULT_COUNTS,
    ModelCase,
    collect_inplace_ops,
    collect_model_latency,
    collect_ops,
    ops_device_id,
    sweep_ops,
)
from hwsurrogate.datasets.optable import op_table
from hwsurrogate.errors import CollectorError


def test_sweep_covers_every_kind_and_is_seeded() -> None:
    a = sweep_ops(seed=3)
    assert dict(a.group_by("op_kind").len().iter_rows()) == DEFAULT_COUNTS
    assert a.equals(sweep_ops(seed=3)) and not a.equals(sweep_ops(seed=4))
    assert set(a.filter(pl.col("op_kind") == "conv2d")["op"]) == {"conv2d", "depthwise_conv2d"}
    with pytest.raises(CollectorError, match="unknown op kind"):
        sweep_ops({"warp": 3})


def test_sweep_caps_conv_flops_and_times_both_pools() -> None:
    a = sweep_ops(seed=0)
    conv = a.filter(pl.col("op_kind") == "conv2d")
    # a conv above the cap is only kept at batch 1 (the cap halves the batch, never the shape)
    assert conv.filter((pl.col("flops") > 3e9) & (pl.col("batch") > 1)).height == 0
    assert conv["batch"].max() > 1
    pools = a.filter(pl.col("op_kind") == "reduction")["op"].value_counts()
    counts = dict(pools.iter_rows())
    assert counts["max_pool2d"] > counts["mean"] and counts["adaptive_avg_pool2d"] >= 1


def test_collect_tiny_table_gives_ops_and_device_rows() -> None:
    table = sweep_ops(scale=0.02, seed=1)  # one row per kind
    got = collect_ops(table, min_time_s=0.0, warmup=1, min_samples=2, progress=False)
    assert got.ops.height == table.height
    assert set(got.ops["op_kind"]) == set(DEFAULT_COUNTS)
    assert (got.ops["latency_ms"] > 0).all()
    assert got.ops["device_id"][0] == ops_device_id(1) and got.ops["device_id"][0].endswith("-cpu-t1")
    dev = got.device.row(0, named=True)
    assert dev["kind"] == "cpu" and dev["cores"] == 1
    assert dev["peak_fp32_gflops"] > 0 and dev["mem_bw_gbs"] > 0


def test_collect_refuses_what_it_cannot_time() -> None:
    grouped = op_table([{"name": "g", "op_kind": "conv2d", "op": "grouped_conv2d", "dtype": "fp32", "batch": 1,
                         "in_channels": 2, "out_channels": 8, "kernel_size": 3, "input_size": 8, "stride": 1,
                         "padding": 1}])  # fmt: skip
    with pytest.raises(CollectorError, match="grouped_conv2d"):
        collect_ops(grouped, progress=False)
    with pytest.raises(CollectorError, match="threads"):
        collect_ops(threads=0, progress=False)


def test_model_latency_rows() -> None:
    case = ModelCase("tiny-mlp", nn.Sequential(nn.Linear(16, 32), nn.ReLU()), (4, 16), batch=4)
    frame = collect_model_latency([case], min_time_s=0.0, warmup=1, min_samples=2, progress=False)
    row = frame.row(0, named=True)
    assert (row["model"], row["mode"], row["batch"], row["latency_ms"] > 0) == (
        "tiny-mlp",
        "inference",
        4,
        True,
    )
    bad = ModelCase("bad", nn.Linear(16, 32), (4, 15), batch=4)
    with pytest.raises(CollectorError, match="forward failed"):
        collect_model_latency([bad], min_time_s=0.0, progress=False)


def test_inplace_rows_are_trace_rows_of_every_timed_op() -> None:
    from hwsurrogate.datasets.frontends.torch_fx import trace_module

    build = lambda: nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Flatten(), nn.Linear(64, 8))  # noqa: E731
    table = trace_module(build(), [(4, 16)], source="tiny")
    frame = collect_inplace_ops([ModelCase("tiny", build(), (4, 16), batch=4)], repeats=3, progress=False)
    # one ops row per row of the model's operator table, as a trace's rows: model and node name set
    assert frame.height == table.height and set(frame["name"]) == set(table["name"])
    assert set(frame["model"]) == {"tiny"} and frame["device_id"][0] == ops_device_id(1)
    assert (frame["latency_ms"] >= 0).all() and frame.filter(pl.col("op_kind") == "linear")[
        "latency_ms"
    ].min() > 0
    lin = frame.filter(pl.col("name") == "_0").row(0, named=True)
    assert (lin["m"], lin["n"], lin["k"], lin["flops"]) == (4, 64, 16, 2 * 4 * 64 * 16)
    assert frame["measurement_id"].n_unique() == frame.height
    with pytest.raises(CollectorError, match="no models"):
        collect_inplace_ops([], progress=False)
    with pytest.raises(CollectorError, match="repeats"):
        collect_inplace_ops([ModelCase("tiny", build(), (4, 16), batch=4)], repeats=0, progress=False)
    with pytest.raises(CollectorError, match="forward failed"):
        collect_inplace_ops([ModelCase("bad", build(), (4, 15), batch=4)], repeats=1, progress=False)


def test_whole_model_collectors_share_checks_labels_and_thread_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from hwsurrogate.datasets.collectors import ops

    labels: list[str] = []

    def track(items, description):  # noqa: ANN001, ANN202 - records the label, passes the items on
        labels.append(description)
        return iter(items)

    monkeypatch.setattr(ops, "track", track)
    before = torch.get_num_threads()
    case = ModelCase("tiny", nn.Sequential(nn.Linear(16, 8)), (4, 16), batch=4)
    collect_model_latency([case], threads=2, min_time_s=0.0, warmup=1, min_samples=2)
    assert torch.get_num_threads() == before  # the limit holds for the timing only
    collect_inplace_ops([case], repeats=1)
    assert labels == [f"models on {ops_device_id(2)}", f"ops in place on {ops_device_id(1)}"]
    for collect in (collect_model_latency, collect_inplace_ops):
        with pytest.raises(CollectorError, match="^cases: no models to time$"):
            collect([], progress=False)
        with pytest.raises(CollectorError, match="timer 'bogus'"):
            collect([case], timer="bogus", progress=False)
    with pytest.raises(CollectorError, match="min_time_s"):
        collect_model_latency([case], min_time_s=-1.0, progress=False)
    assert torch.get_num_threads() == before


def test_predict_model_cli_errors_name_the_field(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hwsurrogate.cli import cli
    from hwsurrogate.errors import ModelSourceError, UnknownDeviceError

    (tmp_path / "nets.py").write_text("import torch.nn as nn\ndef mlp():\n    return nn.Linear(32, 8)\n")
    model, store = f"{tmp_path}/nets.py:mlp", str(tmp_path / "store")
    runner = CliRunner()
    r = runner.invoke(
        cli,
        ["predict", "model", "--model", model, "--input-shape", "4,31", "--device", "x/y", "--store", store],
    )
    assert isinstance(r.exception, ModelSourceError) and "input_shape [[4, 31]] does not fit" in str(
        r.exception
    )
    r = runner.invoke(
        cli,
        [
            "predict",
            "model",
            "--model",
            model,
            "--input-shape",
            "4,32",
            "--device",
            "nope/dev",
            "--store",
            store,
        ],
    )
    assert isinstance(r.exception, UnknownDeviceError) and "nope/dev" in str(r.exception)
    r = runner.invoke(cli, ["predict", "model", "--model", model, "--input-shape", "4,x", "--device", "a/b"])
    assert r.exit_code == 2 and "--input-shape" in r.output
