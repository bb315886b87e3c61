"""The operator table: one model as a list of operator calls, whatever it was read from.

Every front end (a PyTorch module traced on meta tensors, an ONNX file, a HuggingFace-style
config, a NeuSight trace) produces this table, and every operator surrogate and the whole-model
aggregation consume it. One row is one operator call with its shapes; ``count`` says how many
times the model makes that call (layer replication), so a 48-layer model need not repeat rows.

Shape columns by ``op_kind`` (the others are null):

================  =========================================================================
op_kind           shape columns
================  =========================================================================
linear, bmm       ``batch`` (bmm batch count, 1 for linear), ``m`` (rows), ``n`` (output
                  columns), ``k`` (reduction): the same meaning as the ``gemm`` table
conv2d            ``batch`` (N), ``in_channels``, ``out_channels``, ``kernel_size``,
                  ``input_size`` (H = W), ``stride``, ``padding`` (square, as NeuSight's data)
elementwise,      ``rows`` x ``cols``: the tensor viewed as 2-D with ``cols`` its last dim
activation,       (NeuSight's ``B, H``); ``inputs`` = tensor operands (2 for ``a + b``, 1 for
softmax,          ``a + 1.0`` or ``gelu(a)``)
layernorm,
reduction, copy
embedding         ``rows`` = looked-up indices, ``cols`` = embedding width
other             no shape columns: no surrogate; its share of the time is reported as unmodeled
================  =========================================================================

``phase`` is ``forward`` or ``backward``; a backward row carries the shapes of its forward op.
``flops`` and ``bytes`` are the conventions of :func:`derive_flops_bytes` unless a front end
knows better. Validation (:func:`check_op_table`) names the row and column of anything wrong.
"""

from __future__ import annotations

import polars as pl

from hwsurrogate.errors import SchemaMismatchError

__all__ = [
    "DTYPE_BYTES",
    "GEMM_KINDS",
    "OP_KINDS",
    "OP_SHAPE_COLUMNS",
    "OP_TABLE_SCHEMA",
    "PHASES",
    "VECTOR_KINDS",
    "check_op_table",
    "derive_flops_bytes",
    "op_table",
]

GEMM_KINDS = frozenset({"linear", "bmm"})
VECTOR_KINDS = frozenset({"elementwise", "activation", "softmax", "layernorm", "reduction", "copy"})
OP_KINDS = frozenset(GEMM_KINDS | VECTOR_KINDS | {"conv2d", "embedding", "other"})
PHASES = frozenset({"forward", "backward"})

#: bytes per element of the operand data types the table accepts
DTYPE_BYTES: dict[str, int] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "fp8": 1,
    "int8": 1,
    "int32": 4,
    "int64": 8,
}

OP_SHAPE_COLUMNS: tuple[str, ...] = (
    "batch", "m", "n", "k", "rows", "cols", "inputs",
    "in_channels", "out_channels", "kernel_size", "input_size", "stride", "padding",
)  # fmt: skip

#: column -> polars dtype, in order
OP_TABLE_SCHEMA = pl.Schema(
    {
        "name": pl.String,  # node name, unique within the model (e.g. fx node or ONNX node name)
        "op_kind": pl.String,  # one of OP_KINDS
        "op": pl.String,  # the specific operator: add, mul, gelu, matmul, addmm, conv2d, ...
        "phase": pl.String,  # forward | backward
        "module": pl.String,  # owning module path or type (nullable)
        "dtype": pl.String,  # key of DTYPE_BYTES
        **{c: pl.Int64 for c in OP_SHAPE_COLUMNS},
        "flops": pl.Float64,
        "bytes": pl.Float64,
        "count": pl.Int64,  # how many times the model makes this call
        "input_shapes": pl.String,  # JSON list of shapes, for display (nullable)
        "output_shape": pl.String,  # JSON shape, for display (nullable)
    }
)

_REQUIRED: dict[str, tuple[str, ...]] = {
    "linear": ("batch", "m", "n", "k"),
    "bmm": ("batch", "m", "n", "k"),
    "conv2d": ("batch", "in_channels", "out_channels", "kernel_size", "input_size", "stride", "padding"),
    "embedding": ("rows", "cols"),
    **{kind: ("rows", "cols", "inputs") for kind in VECTOR_KINDS},
    "other": (),
}


def op_table(rows: list[dict[str, object]] | pl.DataFrame) -> pl.DataFrame:
    """Build a checked operator table from records or a frame (absent columns become null;
    ``count`` defaults to 1, ``phase`` to forward, ``inputs`` to 1 for vector ops; missing
    ``flops``/``bytes`` are derived)."""
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, infer_schema_length=None)
    extra = [c for c in frame.columns if c not in OP_TABLE_SCHEMA]
    if extra:
        raise SchemaMismatchError(
            f"operator table: unexpected column(s) {extra}; expected {list(OP_TABLE_SCHEMA)}"
        )
    for col, dtype in OP_TABLE_SCHEMA.items():
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(col))
    try:
        frame = frame.select([pl.col(c).cast(t, strict=True) for c, t in OP_TABLE_SCHEMA.items()])
    except Exception as exc:  # polars raises InvalidOperationError / ComputeError
        raise SchemaMismatchError(f"operator table: {str(exc).splitlines()[0]}") from None
    frame = frame.with_columns(
        pl.col("count").fill_null(1),
        pl.col("phase").fill_null("forward"),
        pl.when(pl.col("op_kind").is_in(sorted(VECTOR_KINDS)) & pl.col("inputs").is_null())
        .then(pl.lit(1, pl.Int64))
        .otherwise(pl.col("inputs"))
        .alias("inputs"),
    )
    check_op_table(frame, flops_required=False)
    return derive_flops_bytes(frame)


def _fail(frame: pl.DataFrame, mask: pl.Series, column: str, what: str) -> None:
    idx = int(mask.arg_true()[0])
    name = frame["name"][idx]
    raise SchemaMismatchError(
        f"operator table: op {name!r} (row {idx}, {int(mask.sum())} row(s) in all): {column} {what}; "
        f"got {frame[column][idx]!r}"
    )


def check_op_table(frame: pl.DataFrame, *, flops_required: bool = True) -> None:
    """Raise :class:`SchemaMismatchError` naming the op, row and column of the first problem."""
    missing = [c for c in OP_TABLE_SCHEMA if c not in frame.columns]
    if missing:
        raise SchemaMismatchError(f"operator table: missing column(s) {missing}")
    if frame.height == 0:
        raise SchemaMismatchError("operator table: no operators")
    for col in ("name", "op_kind", "op", "dtype"):
        bad = frame[col].is_null()
        if bad.any():
            _fail(frame, bad, col, "may not be null")
    for col, allowed in (("op_kind", OP_KINDS), ("phase", PHASES), ("dtype", frozenset(DTYPE_BYTES))):
        bad = ~frame[col].is_in(sorted(allowed)).fill_null(False)
        if bad.any():
            _fail(frame, bad, col, f"must be one of {sorted(allowed)}")
    for kind, needed in _REQUIRED.items():
        of_kind = frame["op_kind"] == kind
        for col in needed:
            bad = of_kind & frame[col].is_null()
            if bad.any():
                _fail(frame, bad, col, f"is required for op_kind {kind!r}")
    for col in (*OP_SHAPE_COLUMNS, "count"):
        low = 0 if col == "padding" else 1
        bad = (frame[col] < low).fill_null(False)
        if bad.any():
            _fail(frame, bad, col, f"must be >= {low}")
    big = 1 << 31
    for col in OP_SHAPE_COLUMNS:
        bad = (frame[col] > big).fill_null(False)
        if bad.any():
            _fail(frame, bad, col, f"must be <= {big}")
    conv = frame["op_kind"] == "conv2d"
    bad = conv & ((frame["input_size"] + 2 * frame["padding"]) < frame["kernel_size"]).fill_null(False)
    if bad.any():
        _fail(frame, bad, "kernel_size", "is larger than the padded input")
    for col in ("flops", "bytes"):
        s = frame[col]
        if flops_required and s.null_count():
            _fail(frame, s.is_null(), col, "may not be null")
        bad = ((s < 0) | ~s.is_finite()).fill_null(False)
        if bad.any():
            _fail(frame, bad, col, "must be finite and >= 0")


def derive_flops_bytes(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill null ``flops`` and ``bytes`` from the shapes (vectorised).

    Conventions (forward; a backward row counts 2x the forward for linear/bmm/conv2d, which
    compute the input and the weight gradients, and 2x the bytes for the others):

    - linear/bmm: flops 2*batch*m*n*k; bytes (batch*(m*k + k*n + m*n)) elements
    - conv2d: out = (input_size + 2*padding - kernel_size) // stride + 1;
      flops 2*N*C_out*out^2*C_in*K^2; bytes N*C_in*in^2 + C_out*C_in*K^2 + N*C_out*out^2 elements
    - elementwise/activation: flops rows*cols; bytes (inputs + 1)*rows*cols elements
    - softmax, layernorm: flops 5*rows*cols; bytes 2*rows*cols elements (+ 2*cols for layernorm)
    - reduction: flops rows*cols, bytes (rows*cols + rows) elements; copy: 0 flops, 2*rows*cols
    - embedding: 0 flops, bytes 2*rows*cols elements (+ rows indices of 8 bytes)
    - other: 0 and 0 (no surrogate; reported as unmodeled)
    """
    f = pl.col
    elt = f("dtype").replace_strict(DTYPE_BYTES, default=4, return_dtype=pl.Float64)
    numel = (f("rows") * f("cols")).cast(pl.Float64)
    kind = f("op_kind")
    out = ((f("input_size") + 2 * f("padding") - f("kernel_size")) // f("stride") + 1).cast(pl.Float64)
    gemm_flops = 2.0 * f("batch") * f("m") * f("n") * f("k")
    gemm_elems = f("batch").cast(pl.Float64) * (f("m") * f("k") + f("k") * f("n") + f("m") * f("n"))
    conv_flops = 2.0 * f("batch") * f("out_channels") * out * out * f("in_channels") * f("kernel_size") ** 2
    conv_elems = (
        f("batch") * f("in_channels") * f("input_size") ** 2
        + f("out_channels") * f("in_channels") * f("kernel_size") ** 2
    ).cast(pl.Float64) + f("batch") * f("out_channels") * out * out
    flops = (
        pl.when(kind.is_in(sorted(GEMM_KINDS)))
        .then(gemm_flops)
        .when(kind == "conv2d")
        .then(conv_flops)
        .when(kind.is_in(["elementwise", "activation", "reduction"]))
        .then(numel)
        .when(kind.is_in(["softmax", "layernorm"]))
        .then(5.0 * numel)
        .otherwise(0.0)
    )
    elems = (
        pl.when(kind.is_in(sorted(GEMM_KINDS)))
        .then(gemm_elems)
        .when(kind == "conv2d")
        .then(conv_elems)
        .when(kind.is_in(["elementwise", "activation"]))
        .then((f("inputs") + 1) * numel)
        .when(kind == "softmax")
        .then(2.0 * numel)
        .when(kind == "layernorm")
        .then(2.0 * numel + 2.0 * f("cols"))
        .when(kind == "reduction")
        .then(numel + f("rows"))
        .when(kind.is_in(["copy", "embedding"]))
        .then(2.0 * numel)
        .otherwise(0.0)
    )
    nbytes = elems * elt + pl.when(kind == "embedding").then(8.0 * f("rows")).otherwise(0.0)
    backward = f("phase") == "backward"
    heavy = kind.is_in(["linear", "bmm", "conv2d"])
    flops = pl.when(backward & heavy).then(2.0 * flops).otherwise(flops)
    nbytes = pl.when(backward).then(2.0 * nbytes).otherwise(nbytes)
    frame = frame.with_columns(
        pl.coalesce(f("flops"), flops).alias("flops"), pl.coalesce(f("bytes"), nbytes).alias("bytes")
    )
    check_op_table(frame)
    return frame
