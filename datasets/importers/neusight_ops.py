"""Importer: NeuSight non-GEMM operator latency (elementwise, activation, softmax, layer norm, conv2d).

Read the source README under ``$HWSURROGATE_DATA_DIR/gemm/neusight_ops`` for units and defects.

Files: ``train/<op>/<GPU>.csv.gz`` (the five training GPUs; conv has A100-80GB in place of
A100-40GB) and ``test/vec.csv.gz`` (held-out shapes on the training GPUs and on L4 and
A100-80GB). ``test/elem``, ``test/ln`` and ``test/softmax`` are subsets of ``vec`` and are not
read again. Every row becomes one ``ops`` row (phase ``forward``, fp32, 25 timings, mean of the
fastest 5 with launch overhead); ``extra.split`` says which file it came from.

Op mapping onto the operator-table vocabulary (:mod:`hwsurrogate.datasets.optable`):

- ``add, mul, div, pow`` -> elementwise, ``inputs=2`` (``a op b``); ``addu, mulu, divu, powu``
  -> the same op with ``inputs=1`` (a scalar operand); the original name stays in ``extra.op_name``.
- ``relu, gelu, tanh`` -> activation; ``ln`` -> layernorm (op ``layer_norm``); ``softmax``.
- NeuSight's ``B, H`` -> ``rows, cols``.
- ``conv`` -> conv2d with ``batch, in_channels, out_channels, kernel_size, input_size, stride,
  padding`` from ``B, Input_Channel, Output_Channel, Kernel_Szie, Input_Size, Stride, Padding``.

Device ids are ``neusight/<Device with spaces -> _>``, the ids of the ``neusight`` GEMM source,
which owns the device descriptor rows (with its datasheet corrections): this importer writes no
``devices`` rows, so there is one NeuSight device namespace.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import check_positive_finite, read_csv_checked, with_provenance
from hwsurrogate.datasets.importers.neusight import device_id
from hwsurrogate.datasets.optable import OP_SHAPE_COLUMNS, op_table
from hwsurrogate.datasets.schemas import Kind
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="neusight_ops",
    kinds=("ops",),
    subpath="gemm/neusight_ops",
    url="https://github.com/sitar-lab/NeuSight/tree/6945927d9afcca2b9daf021f8395e53edc5b4eef/scripts/asplos/data/dataset",
    license="MIT",
    description="NeuSight: FP32 elementwise/activation/softmax/layernorm/conv2d latency on 7 NVIDIA GPUs",
)
#: Rows the README promises (5 training GPUs x 14 ops train files + the test file vec).
EXPECTED_ROWS: dict[str, int] = {"ops": 142_286}
ORIGIN = "github.com/sitar-lab/NeuSight@6945927d9afcca2b9daf021f8395e53edc5b4eef:scripts/asplos/data/dataset"

#: NeuSight op name -> (op_kind, op, tensor inputs)
OP_MAP: dict[str, tuple[str, str, int]] = {
    **{o: ("elementwise", o, 2) for o in ("add", "mul", "div", "pow")},
    **{f"{o}u": ("elementwise", o, 1) for o in ("add", "mul", "div", "pow")},
    **{o: ("activation", o, 1) for o in ("relu", "gelu", "tanh")},
    "ln": ("layernorm", "layer_norm", 1),
    "softmax": ("softmax", "softmax", 1),
    "conv": ("conv2d", "conv2d", 1),
}
VECTOR_SHAPE = ("B", "H")
CONV_SHAPE = ("B", "Input_Channel", "Output_Channel", "Kernel_Szie", "Input_Size", "Stride", "Padding")
CONV_COLUMNS = dict(
    zip(
        CONV_SHAPE,
        ("batch", "in_channels", "out_channels", "kernel_size", "input_size", "stride", "padding"),
        strict=True,
    )
)
_BASE = ("OPName", "Latency", "Device", "Torch Version", "Kernel Name")


def _read(file: Path, split: str, *, conv: bool) -> pl.DataFrame:
    shape = CONV_SHAPE if conv else VECTOR_SHAPE
    df = read_csv_checked(file, (*_BASE, *shape), infer_schema_length=0)
    typed = df.select(
        *(pl.col(c) for c in ("OPName", "Device", "Torch Version", "Kernel Name")),
        pl.col("Latency").cast(pl.Float64, strict=False),
        *(pl.col(c).cast(pl.Int64, strict=False) for c in shape),
    )
    for c in shape:
        bad = typed[c].is_null() | (typed[c] < (0 if c == "Padding" else 1))
        if bad.any():
            i = int(bad.arg_true()[0])
            raise SourceFormatError(f"{file}: column {c!r} row {i} is not a valid size: {df[c][i]!r}")
    check_positive_finite(typed, "Latency", file)
    unknown = sorted(set(typed["OPName"].unique().to_list()) - set(OP_MAP))
    if unknown:
        raise SourceFormatError(f"{file}: unknown OPName(s) {unknown}; known: {sorted(OP_MAP)}")
    kinds = {o: OP_MAP[o] for o in typed["OPName"].unique().to_list()}
    out = typed.with_columns(
        pl.col("OPName").replace_strict({o: k[0] for o, k in kinds.items()}).alias("op_kind"),
        pl.col("OPName").replace_strict({o: k[1] for o, k in kinds.items()}).alias("op"),
        pl.col("OPName")
        .replace_strict({o: k[2] for o, k in kinds.items()}, return_dtype=pl.Int64)
        .alias("inputs"),
        pl.lit(split).alias("split"),
        pl.lit(f"{file.parent.name}/{file.name}").alias("file"),
        pl.int_range(pl.len()).alias("row"),
    )
    if conv:
        return out.rename(CONV_COLUMNS).with_columns(pl.lit(None, pl.Int64).alias("inputs"))
    return out.rename({"B": "rows", "H": "cols"})


def _ops_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Schema columns of the ``ops`` table (flops/bytes by the operator-table conventions)."""
    shape_cols = [c for c in OP_SHAPE_COLUMNS if c in frame.columns]
    table = op_table(
        frame.select(
            pl.col("op").alias("name"), "op_kind", "op", pl.lit("forward").alias("phase"),
            pl.lit("fp32").alias("dtype"), *shape_cols,
        )
    )  # fmt: skip
    extra = pl.struct(
        "split", "file", "row", pl.col("OPName").alias("op_name"), pl.col("Kernel Name").alias("kernel"),
        pl.lit("mean of the fastest 5 of 25 CUDA-event timings, launch overhead included").alias("runtime_stat"),
    ).struct.json_encode()  # fmt: skip
    dev = device_id(pl.col("Device"))
    keep = [c for c in ("batch", "rows", "cols", "inputs", "in_channels", "out_channels", "kernel_size",
                        "input_size", "stride", "padding", "flops", "bytes")]  # fmt: skip
    return pl.concat(
        [
            frame.select(
                dev.alias("device_id"),
                "op_kind",
                "op",
                pl.lit("forward").alias("phase"),
                pl.lit("fp32").alias("dtype"),
                pl.col("Latency").alias("latency_ms"),
                pl.lit(25, pl.Int64).alias("repetitions"),
                pl.concat_str([pl.lit("PyTorch "), pl.col("Torch Version").str.strip_prefix("p")]).alias(
                    "framework"
                ),
                extra.alias("extra"),
                pl.concat_str(
                    [pl.lit("neusight_ops"), "split", "file", pl.col("row").cast(pl.String)], separator="|"
                ).alias("measurement_id"),
            ),  # fmt: skip
            table.select(keep),
        ],
        how="horizontal",
    )


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into the ``ops`` frame."""
    frames: list[pl.DataFrame] = []
    for op in OP_MAP:
        files = sorted((path / "train" / op).glob("*.csv*"))
        if not files:
            raise SourceFormatError(f"{path / 'train' / op}: no training CSV files found")
        frames += [_ops_rows(_read(f, "train", conv=op == "conv")) for f in files]
    test = path / "test" / "vec.csv.gz"
    if not test.exists():
        raise SourceFormatError(f"{test} is missing")
    frames.append(_ops_rows(_read(test, "test", conv=False)))
    ops = pl.concat(frames, how="diagonal_relaxed")
    return {"ops": with_provenance(ops, source="neusight_ops", origin=ORIGIN, license=SOURCE.license)}
