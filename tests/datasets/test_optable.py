"""The operator table contract: shapes checked with the op named, FLOPs/bytes by hand."""

from __future__ import annotations

import polars as pl
import pytest

from hwsurrogate.datasets.optable import OP_TABLE_SCHEMA, op_table
from hwsurrogate.datasets.schemas import conform
from hwsurrogate.errors import SchemaMismatchError


def test_flops_and_bytes_match_hand_computed_values() -> None:
    t = op_table(
        [
            {"name": "fc", "op_kind": "linear", "op": "addmm", "dtype": "fp32", "batch": 1, "m": 8, "n": 16, "k": 32},
            {"name": "fc_bw", "op_kind": "linear", "op": "addmm", "phase": "backward", "dtype": "fp32",
             "batch": 1, "m": 8, "n": 16, "k": 32},
            {"name": "conv", "op_kind": "conv2d", "op": "conv2d", "dtype": "fp16", "batch": 2, "in_channels": 3,
             "out_channels": 4, "kernel_size": 3, "input_size": 8, "stride": 1, "padding": 1},
            {"name": "add", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 4, "cols": 5, "inputs": 2},
            {"name": "gelu", "op_kind": "activation", "op": "gelu", "dtype": "fp32", "rows": 4, "cols": 5},
            {"name": "ln", "op_kind": "layernorm", "op": "layer_norm", "dtype": "fp32", "rows": 4, "cols": 5, "count": 24},
            {"name": "view", "op_kind": "other", "op": "view", "dtype": "fp32"},
        ]
    )  # fmt: skip
    assert list(t.schema) == list(OP_TABLE_SCHEMA)
    flops = dict(zip(t["name"], t["flops"], strict=True))
    nbytes = dict(zip(t["name"], t["bytes"], strict=True))
    assert flops["fc"] == 2 * 8 * 16 * 32 and nbytes["fc"] == 4 * (8 * 32 + 32 * 16 + 8 * 16)
    assert flops["fc_bw"] == 2 * flops["fc"] and nbytes["fc_bw"] == 2 * nbytes["fc"]
    # out = (8 + 2 - 3) // 1 + 1 = 8
    assert flops["conv"] == 2 * 2 * 4 * 8 * 8 * 3 * 9
    assert nbytes["conv"] == 2 * (2 * 3 * 64 + 4 * 3 * 9 + 2 * 4 * 64)
    assert flops["add"] == 20 and nbytes["add"] == 4 * 3 * 20
    assert nbytes["gelu"] == 4 * 2 * 20
    assert flops["ln"] == 100 and nbytes["ln"] == 4 * (40 + 10)
    assert t.filter(pl.col("name") == "ln")["count"].item() == 24
    assert flops["view"] == 0 and nbytes["view"] == 0


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"name": "fc", "op_kind": "linear", "op": "mm", "dtype": "fp32", "m": 1, "n": 1, "k": 1}, "'fc'.*batch"),
        ({"name": "x", "op_kind": "matmul", "op": "mm", "dtype": "fp32"}, "'x'.*op_kind"),
        ({"name": "x", "op_kind": "softmax", "op": "softmax", "dtype": "fp99", "rows": 1, "cols": 1}, "dtype"),
        ({"name": "x", "op_kind": "softmax", "op": "softmax", "dtype": "fp32", "rows": 0, "cols": 1}, "rows.*>= 1"),
        ({"name": "c", "op_kind": "conv2d", "op": "conv2d", "dtype": "fp32", "batch": 1, "in_channels": 1,
          "out_channels": 1, "kernel_size": 9, "input_size": 2, "stride": 1, "padding": 0}, "'c'.*kernel_size"),
    ],
)  # fmt: skip
def test_bad_rows_are_refused_naming_op_and_column(row: dict[str, object], needle: str) -> None:
    with pytest.raises(SchemaMismatchError, match=needle):
        op_table([row])


def test_op_and_model_latency_tables_have_schemas() -> None:
    ops = conform(
        "ops",
        pl.DataFrame(
            {"device_id": ["d"], "op_kind": ["softmax"], "op": ["softmax"], "phase": ["forward"], "dtype": ["fp32"],
             "rows": [4], "cols": [8], "latency_ms": [0.1], "source": ["t"], "origin": ["t"],
             "imported_at": [None], "measurement_id": ["x"]}
        ).with_columns(pl.lit("2026-01-01").str.to_datetime(time_zone="UTC").alias("imported_at")),
    )  # fmt: skip
    assert ops.height == 1
    with pytest.raises(SchemaMismatchError, match="mode"):
        conform(
            "model_latency",
            pl.DataFrame({"device_id": ["d"], "model": ["m"], "mode": ["serving"], "batch": [1], "dtype": ["fp32"],
                          "latency_ms": [1.0], "source": ["t"], "origin": ["t"], "measurement_id": ["x"]}
            ).with_columns(pl.lit("2026-01-01").str.to_datetime(time_zone="UTC").alias("imported_at")),
        )  # fmt: skip
