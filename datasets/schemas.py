"""One declared schema per table kind, enforced on every write.

A table is a list of :class:`Column` specs: name, polars dtype, whether nulls are allowed,
an optional closed range, an optional set of allowed values, and for text a length cap and
pattern. :func:`conform` checks a frame against the schema (adding nullable columns that are
absent) and raises :class:`~hwsurrogate.errors.SchemaMismatchError` naming the column, the row
and the offending value when a row does not fit. Nothing is written before a frame has passed
:func:`conform`; uploads and collectors build their frames with :func:`records_frame`.

Validation is strict, never coercing a value into another one: an integer column takes
integers (or integral floats, which are the same number), never ``1.5``, ``true`` or ``"8"``; a
float column takes numbers, never booleans or strings; a boolean column takes booleans only; a
text column takes text only, with no control characters and at most ``max_len`` characters; a
timestamp column takes timestamps or ISO-8601 strings (``2024-01-01T00:00:00Z``; no offset
means UTC), never numbers. Lists and objects are refused in every column. Every integer is at
most :data:`MAX_INT` and every float at most :data:`MAX_FLOAT` unless its column says less.

Units live in column names (``runtime_ms``, ``power_w``, ``energy_j``, ``latency_ms``).
Every row carries provenance: ``source``, ``origin`` (repository@commit or URL), ``license``,
``imported_at`` and a ``measurement_id`` that makes re-imports and re-uploads idempotent.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from hwsurrogate.datasets import KINDS, Kind
from hwsurrogate.errors import SchemaMismatchError


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType | type[pl.DataType]
    nullable: bool = True
    min: float | None = None  # inclusive lower bound
    max: float | None = None  # inclusive upper bound
    gt: float | None = None  # exclusive lower bound
    allowed: frozenset[str] | None = None
    doc: str = ""
    max_len: int | None = None  # text: most characters (TEXT_MAX_LEN when unset)
    pattern: str | None = None  # text: a regular expression every value must match


def _c(name: str, dtype: pl.DataType | type[pl.DataType], doc: str = "", **kw: object) -> Column:
    return Column(name, dtype, doc=doc, **kw)


#: Largest integer any integer column takes unless it says otherwise (dims, batches, counts: 2**24,
#: as the predict schemas' ``MAX_DIM``).
MAX_DIM = 1 << 24
MAX_INT = MAX_DIM
#: Largest float any float column takes unless it says otherwise; times in ms stop at MAX_MS.
MAX_FLOAT = 1e15
MAX_MS = 1e9
#: Text caps: ids, short text (names, kernels, origins), JSON documents, program graphs.
ID_MAX_LEN = 128
TEXT_MAX_LEN = 1024
JSON_MAX_LEN = 1 << 16
GRAPH_MAX_LEN = 1 << 22
#: The device id grammar shared with the predict schemas: 'gpperf/rtx4070', 'local/host-cpu'.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*(/[A-Za-z0-9_.:+-]+)*$"
_CONTROL = r"[\x00-\x1f\x7f]"

PROVENANCE: tuple[Column, ...] = (
    _c("source", pl.String, "importer or collector name, e.g. 'help', 'collector:gemm'", nullable=False),
    _c("origin", pl.String, "repository@commit, URL or host the row came from", nullable=False),
    _c("license", pl.String, "license of the source data"),
    _c("imported_at", pl.Datetime("us", "UTC"), "when the row entered the store", nullable=False),
    _c(
        "measurement_id",
        pl.String,
        "stable id of the measurement; duplicates are dropped",
        nullable=False,
        max_len=8192,
    ),
)

GEMM_OPS = frozenset({"gemm", "bmm", "linear"})
GEMM_DTYPES = frozenset(
    {
        "fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "fp8_block", "fp8_static", "nvfp4",
        "int8", "int4_wo", "int8_wo", "sq", "int32",
    }
)  # fmt: skip
DEVICE_KINDS = frozenset({"cpu", "gpu", "mobile", "fpga", "asic", "accelerator", "dsp", "tpu"})
LATENCY_SPACES = frozenset({"nb201", "fbnet", "ofa", "custom"})
#: ``on_board``: measured on the physical board running the post-route bitstream (power only).
FPGA_STAGES = frozenset({"hls_estimate", "post_synth", "post_route", "on_board"})
BRAM_UNITS = frozenset({"bram18k", "bram36k"})

GEMM_COLUMNS: tuple[Column, ...] = (
    _c("device_id", pl.String, "source-qualified device id, e.g. 'gpperf/rtx4070'", nullable=False),
    _c("op", pl.String, "gemm | bmm | linear", nullable=False, allowed=GEMM_OPS),
    _c("m", pl.Int64, "rows of A / output", nullable=False, min=1),
    _c("n", pl.Int64, "columns of the output", nullable=False, min=1),
    _c("k", pl.Int64, "reduction dimension", nullable=False, min=1),
    _c("batch", pl.Int64, "batch count (1 for plain GEMM)", nullable=False, min=1),
    _c("dtype", pl.String, "operand data type", nullable=False, allowed=GEMM_DTYPES),
    _c("layout", pl.String, "operand layout, e.g. 'nn', 'tn' (null when not stated)"),
    _c("kernel", pl.String, "kernel name when known"),
    _c("runtime_ms", pl.Float64, "median runtime of one call, ms", nullable=False, gt=0),
    _c("runtime_spread_ms", pl.Float64, "spread of repeated runtimes (IQR), ms", min=0),
    _c("repetitions", pl.Int64, "timed repetitions behind runtime_ms", min=1),
    _c("power_w", pl.Float64, "mean power during the kernel, W", gt=0),
    _c("energy_j", pl.Float64, "energy of one call, J", min=0),
    _c("power_method", pl.String, "how power/energy was obtained, or why it is null"),
    _c("power_trusted", pl.Boolean, "False when power was read outside the kernel (e.g. idle)"),
    _c("power_limit_w", pl.Float64, "board power limit, W", gt=0),
    _c("sm_clock_mhz", pl.Float64, "SM / core clock, MHz", min=0),
    _c("mem_clock_mhz", pl.Float64, "memory clock, MHz", min=0),
    _c("temperature_c", pl.Float64, "device temperature, C"),
    _c("threads", pl.Int64, "CPU threads used", min=1),
    _c("framework", pl.String, "framework / library and version that ran the op"),
    _c("software", pl.String, "JSON of library versions"),
    _c("extra", pl.String, "JSON of source-specific fields"),
    _c("collected_at", pl.Datetime("us", "UTC"), "when the measurement was taken, if known"),
)

LATENCY_COLUMNS: tuple[Column, ...] = (
    _c("device_id", pl.String, "source-qualified device id, e.g. 'help/pixel2'", nullable=False),
    _c("space", pl.String, "nb201 | fbnet | ofa | custom", nullable=False, allowed=LATENCY_SPACES),
    _c("arch_index", pl.Int64, "index in the space's architecture list (NB201 API index)", min=0),
    _c("arch_key", pl.String, "canonical architecture string", nullable=False),
    _c("batch", pl.Int64, "batch size", nullable=False, min=1),
    _c("precision", pl.String, "fp32 | fp16 | int8 ...", nullable=False),
    _c("latency_ms", pl.Float64, "inference latency of one batch, ms", nullable=False, gt=0),
    _c("measured", pl.Boolean, "False for simulated/estimated costs (eyeriss, fpga)", nullable=False),
    _c("framework", pl.String, "runtime used for the measurement"),
    _c("extra", pl.String, "JSON of source-specific fields"),
    _c("collected_at", pl.Datetime("us", "UTC"), "when the measurement was taken, if known"),
)

FPGA_COLUMNS: tuple[Column, ...] = (
    _c("design_id", pl.String, "unique design id within its domain", nullable=False),
    _c("domain", pl.String, "hls4ml | hlsyn | harp | hlsdataset | yosys-xc7 ...", nullable=False),
    _c("kernel", pl.String, "kernel or model name (the unit held out in splits)", nullable=False),
    _c("model", pl.String, "JSON layer list, or a graph reference for HLS kernels"),
    _c("config", pl.String, "JSON of the full configuration (pragmas, directives, hls_config)"),
    _c("reuse_factor", pl.Int64, "hls4ml reuse factor", min=1),
    _c("precision", pl.String, "e.g. ap_fixed<16,6>"),
    _c("strategy", pl.String, "latency | resource"),
    _c("io_type", pl.String, "io_parallel | io_stream"),
    _c("pragmas", pl.String, "JSON of pragma placeholder -> value"),
    _c("part", pl.String, "FPGA part number", nullable=False),
    _c("tool", pl.String, "tool name, e.g. 'vivado_hls', 'vitis_hls', 'yosys'", nullable=False),
    _c("tool_version", pl.String, "tool version"),
    _c(
        "stage",
        pl.String,
        "hls_estimate | post_synth | post_route | on_board",
        nullable=False,
        allowed=FPGA_STAGES,
    ),
    _c("valid", pl.Boolean, "design accepted by the flow (null when not stated)"),
    _c("lut", pl.Float64, "LUTs", min=0),
    _c("ff", pl.Float64, "flip-flops", min=0),
    _c("dsp", pl.Float64, "DSP blocks", min=0),
    _c("bram", pl.Float64, "block RAM, in bram_unit", min=0),
    _c("bram_unit", pl.String, "bram18k | bram36k", allowed=BRAM_UNITS),
    _c("uram", pl.Float64, "UltraRAM blocks", min=0),
    _c("carry", pl.Float64, "CARRY4/8 cells (yosys)", min=0),
    _c("cycles", pl.Float64, "latency in clock cycles (best/min)", min=0),
    _c("cycles_max", pl.Float64, "worst-case latency in cycles", min=0),
    _c("ii", pl.Float64, "initiation interval, cycles", min=0),
    _c("clock_ns", pl.Float64, "target clock period, ns", gt=0),
    _c("power_total_w", pl.Float64, "total power, W", min=0),
    _c("power_dynamic_w", pl.Float64, "dynamic power, W", min=0),
    _c("power_static_w", pl.Float64, "static power, W", min=0),
    _c("power_method", pl.String, "board_measured | vivado_estimate | ..."),
    _c("extra", pl.String, "JSON of source-specific fields"),
)

DEVICES_COLUMNS: tuple[Column, ...] = (
    _c("device_id", pl.String, "source-qualified device id", nullable=False),
    _c("kind", pl.String, "cpu | gpu | mobile | fpga | asic | accelerator | dsp | tpu", nullable=False,
       allowed=DEVICE_KINDS),
    _c("name", pl.String, "human-readable name", nullable=False),
    _c("vendor", pl.String, "vendor"),
    _c("cores", pl.Int64, "CPU cores or GPU SMs", min=1),
    _c("peak_fp32_gflops", pl.Float64, "peak FP32 GFLOP/s", gt=0),
    _c("peak_fp16_gflops", pl.Float64, "peak FP16/BF16 tensor GFLOP/s", gt=0),
    _c("mem_bw_gbs", pl.Float64, "memory bandwidth, GB/s", gt=0),
    _c("memory_gb", pl.Float64, "device memory, GB", gt=0),
    _c("clock_mhz", pl.Float64, "core clock, MHz", gt=0),
    _c("l2_mb", pl.Float64, "last-level cache, MB", gt=0),
    _c("descriptors", pl.String, "JSON of further static descriptors and micro-benchmarks"),
    _c("fingerprint", pl.String, "JSON {space: {arch_index: latency_ms}} of reference architectures"),
)  # fmt: skip

PROGRAM_GRAPH_COLUMNS: tuple[Column, ...] = (
    _c("graph_id", pl.String, "graph name within its domain, e.g. 'stencil_stencil2d'", nullable=False),
    _c("domain", pl.String, "design domain whose fpga rows use the graph, e.g. 'hlsyn'", nullable=False),
    _c("kernel", pl.String, "kernel name used by the designs' fpga rows, e.g. 'stencil'", nullable=False),
    _c("n_nodes", pl.Int64, "number of nodes", nullable=False, min=1),
    _c("n_edges", pl.Int64, "number of edges (a multigraph: parallel edges count)", nullable=False, min=0),
    _c("n_pragma_nodes", pl.Int64, "nodes of type 3 (pragma)", nullable=False, min=0),
    _c("pragma_placeholders", pl.String, "JSON list of the pragma placeholders, e.g. ['__PARA__L0']"),
    _c(
        "nodes",
        pl.String,
        "JSON list of {id, type, text, full_text, block, function, pragma}",
        nullable=False,
    ),
    _c("edges", pl.String, "JSON list of [src, dst, flow, position]", nullable=False),
    _c("extra", pl.String, "JSON of source-specific fields"),
)

#: Operator kinds of the ``ops`` table; the same vocabulary as :mod:`.optable`.
OP_KIND_VALUES = frozenset(
    {"linear", "bmm", "conv2d", "elementwise", "activation", "softmax", "layernorm", "embedding",
     "reduction", "copy", "other"}
)  # fmt: skip
MODEL_MODES = frozenset({"inference", "training"})

OPS_COLUMNS: tuple[Column, ...] = (
    _c("device_id", pl.String, "source-qualified device id, e.g. 'neusight/Tesla_T4'", nullable=False),
    _c("op_kind", pl.String, "operator kind (datasets/optable.py)", nullable=False, allowed=OP_KIND_VALUES),
    _c("op", pl.String, "the specific operator: add, gelu, softmax, conv2d ...", nullable=False),
    _c("phase", pl.String, "forward | backward", nullable=False, allowed=frozenset({"forward", "backward"})),
    _c("dtype", pl.String, "operand data type", nullable=False, allowed=GEMM_DTYPES | {"int64"}),
    _c("batch", pl.Int64, "GEMM batch count or conv N", min=1),
    _c("m", pl.Int64, "GEMM rows", min=1),
    _c("n", pl.Int64, "GEMM output columns", min=1),
    _c("k", pl.Int64, "GEMM reduction", min=1),
    _c("rows", pl.Int64, "vector ops: rows of the 2-D view (NeuSight's B)", min=1),
    _c("cols", pl.Int64, "vector ops: last dimension (NeuSight's H)", min=1),
    _c("inputs", pl.Int64, "tensor operands of a vector op", min=1),
    _c("in_channels", pl.Int64, "conv2d input channels", min=1),
    _c("out_channels", pl.Int64, "conv2d output channels", min=1),
    _c("kernel_size", pl.Int64, "conv2d square kernel", min=1),
    _c("input_size", pl.Int64, "conv2d square input H = W", min=1),
    _c("stride", pl.Int64, "conv2d stride", min=1),
    _c("padding", pl.Int64, "conv2d padding", min=0),
    _c("flops", pl.Float64, "floating-point operations of one call", min=0),
    _c("bytes", pl.Float64, "bytes moved by one call (optable conventions)", min=0),
    _c("latency_ms", pl.Float64, "latency of one call, ms", nullable=False, gt=0),
    _c("repetitions", pl.Int64, "timed repetitions behind latency_ms", min=1),
    _c("threads", pl.Int64, "CPU threads used", min=1),
    _c("model", pl.String, "the traced model configuration the op came from (traces only)"),
    _c("name", pl.String, "node name within that model (traces only)"),
    _c("module", pl.String, "owning module (traces only)"),
    _c("framework", pl.String, "framework / library and version that ran the op"),
    _c("extra", pl.String, "JSON of source-specific fields"),
    _c("collected_at", pl.Datetime("us", "UTC"), "when the measurement was taken, if known"),
)

MODEL_LATENCY_COLUMNS: tuple[Column, ...] = (
    _c("device_id", pl.String, "source-qualified device id", nullable=False),
    _c("model", pl.String, "model configuration name, e.g. 'bert_large'", nullable=False),
    _c("mode", pl.String, "inference | training", nullable=False, allowed=MODEL_MODES),
    _c("batch", pl.Int64, "batch size", nullable=False, min=1),
    _c("seqlen", pl.Int64, "sequence length (null for non-sequence models)", min=1),
    _c("input_shape", pl.String, "JSON input shape when not (batch, seqlen)"),
    _c("num_layer", pl.Int64, "layers of the whole model", min=1),
    _c("dtype", pl.String, "data type", nullable=False, allowed=GEMM_DTYPES),
    _c("latency_ms", pl.Float64, "measured end-to-end latency (forward, + backward when training), ms",
       nullable=False, gt=0),
    _c("fw_latency_ms", pl.Float64, "forward part, ms", gt=0),
    _c("bw_latency_ms", pl.Float64, "backward part, ms", min=0),
    _c("threads", pl.Int64, "CPU threads used", min=1),
    _c("config", pl.String, "JSON of the model configuration"),
    _c("framework", pl.String, "framework / library and version that ran the model"),
    _c("extra", pl.String, "JSON of source-specific fields"),
    _c("collected_at", pl.Datetime("us", "UTC"), "when the measurement was taken, if known"),
)  # fmt: skip

#: Per-name caps applied to every table's columns of that name (JSON documents and graphs).
_TEXT_CAPS = {
    "extra": JSON_MAX_LEN, "config": JSON_MAX_LEN, "software": JSON_MAX_LEN,
    "descriptors": JSON_MAX_LEN, "fingerprint": JSON_MAX_LEN, "pragmas": JSON_MAX_LEN,
    "pragma_placeholders": JSON_MAX_LEN, "model": JSON_MAX_LEN, "nodes": GRAPH_MAX_LEN,
    "edges": GRAPH_MAX_LEN,
}  # fmt: skip
_MS_COLUMNS = frozenset({"runtime_ms", "runtime_spread_ms", "latency_ms", "fw_latency_ms", "bw_latency_ms"})


def _bounded(spec: tuple[Column, ...]) -> tuple[Column, ...]:
    """The columns with their default caps made explicit (so ``describe`` shows them)."""
    out = []
    for c in spec:
        if c.name == "device_id":
            c = replace(c, max_len=ID_MAX_LEN, pattern=DEVICE_ID_PATTERN)
        elif c.dtype == pl.String and c.max_len is None:
            c = replace(c, max_len=_TEXT_CAPS.get(c.name, TEXT_MAX_LEN))
        elif c.dtype == pl.Int64 and c.max is None:
            c = replace(c, max=MAX_INT)
        elif c.dtype == pl.Float64 and c.max is None:
            c = replace(c, max=MAX_MS if c.name in _MS_COLUMNS else MAX_FLOAT)
        out.append(c)
    return tuple(out)


TABLES: dict[Kind, tuple[Column, ...]] = {
    "gemm": _bounded(GEMM_COLUMNS + PROVENANCE),
    "latency": _bounded(LATENCY_COLUMNS + PROVENANCE),
    "fpga": _bounded(FPGA_COLUMNS + PROVENANCE),
    "devices": _bounded(DEVICES_COLUMNS + PROVENANCE),
    "program_graphs": _bounded(PROGRAM_GRAPH_COLUMNS + PROVENANCE),
    "ops": _bounded(OPS_COLUMNS + PROVENANCE),
    "model_latency": _bounded(MODEL_LATENCY_COLUMNS + PROVENANCE),
}

#: Columns whose values, with ``source``, identify a row when no measurement id is given.
NATURAL_KEYS: dict[Kind, tuple[str, ...]] = {
    "gemm": ("device_id", "op", "m", "n", "k", "batch", "dtype", "layout", "kernel"),
    "latency": ("device_id", "space", "arch_key", "batch", "precision"),
    "fpga": ("domain", "design_id", "stage"),
    "devices": ("device_id",),
    "program_graphs": ("domain", "graph_id"),
    "ops": (
        "device_id", "op", "phase", "dtype", "batch", "m", "n", "k", "rows", "cols", "inputs",
        "in_channels", "out_channels", "kernel_size", "input_size", "stride", "padding", "threads",
        "model", "name",
    ),
    "model_latency": ("device_id", "model", "mode", "batch", "seqlen", "input_shape", "dtype", "threads"),
}  # fmt: skip


def check_kind(kind: str) -> Kind:
    if kind not in TABLES:
        raise SchemaMismatchError(f"unknown table kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind  # type: ignore[return-value]


def schema(kind: str) -> pl.Schema:
    """The ordered polars schema of a table kind."""
    return pl.Schema({c.name: c.dtype for c in TABLES[check_kind(kind)]})


def columns(kind: str) -> tuple[Column, ...]:
    return TABLES[check_kind(kind)]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _raise_bad(kind: str, where: str, col: str, problem: str, values: pl.Series, mask: pl.Series) -> None:
    """Raise naming the column, how many rows are bad, the first bad row and its value."""
    idx = mask.arg_true()
    if len(idx) == 0:  # a caller's mask with no row: still an error, naming the column
        raise SchemaMismatchError(f"{kind}{where}: column {col!r} {problem}", column=col)
    first = int(idx[0])
    raise SchemaMismatchError(
        f"{kind}{where}: column {col!r} {problem}; {len(idx)} row(s), first at row {first} "
        f"with value {_short(values[first])}",
        column=col,
        row=first,
    )


def _type_name(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "booleans"
    if dtype.is_integer():
        return "integers"
    if dtype.is_float():
        return "floats"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "text"
    if dtype.is_nested():
        return "lists/objects"
    return str(dtype)


def _parse_iso(src: pl.Series) -> tuple[pl.Series, pl.Series]:
    """ISO-8601 strings -> UTC timestamps (no offset means UTC), and the mask of unparseable ones."""
    parsed: dict[str, datetime | None] = {}
    for text in src.drop_nulls().unique().to_list():
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            parsed[text] = None
            continue
        parsed[text] = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    values = pl.Series(src.name, [parsed.get(t) if t is not None else None for t in src.to_list()],
                       dtype=pl.Datetime("us", "UTC"))  # fmt: skip
    return values, values.is_null() & src.is_not_null()


def _strict_cast(kind: str, where: str, src: pl.Series, col: Column) -> pl.Series:
    """``src`` as ``col.dtype`` when that changes no value; otherwise raise naming the row."""
    dtype, target = src.dtype, col.dtype
    if dtype == pl.Null or src.null_count() == len(src):  # only nulls: nothing to convert
        return pl.Series(col.name, [None] * len(src), dtype=target)
    wrong = f"must be {_type_name(target) if target != pl.Datetime('us', 'UTC') else 'timestamps'}"
    if target == pl.Int64:
        if dtype.is_integer():
            too_big = src.cast(pl.Float64) > MAX_INT if dtype == pl.UInt64 else None
            if too_big is not None and too_big.any():
                _raise_bad(kind, where, col.name, f"must be <= {MAX_INT}", src, too_big.fill_null(False))
            return src.cast(pl.Int64)
        if dtype.is_float():
            bad = (~src.is_finite() | (src != src.round(0))).fill_null(False)
            if bad.any():
                _raise_bad(kind, where, col.name, "must be integers (no fractions, NaN or inf)", src, bad)
            too_big = (src.abs() > MAX_INT).fill_null(False)
            if too_big.any():
                _raise_bad(kind, where, col.name, f"must be <= {MAX_INT}", src, too_big)
            return src.cast(pl.Int64)
    elif target == pl.Float64:
        if dtype.is_integer() or dtype.is_float():
            return src.cast(pl.Float64)
    elif target == pl.Boolean:
        if dtype == pl.Boolean:
            return src
    elif target == pl.String:
        if dtype == pl.String or dtype == pl.Categorical or isinstance(dtype, pl.Enum):
            return src.cast(pl.String)
    elif isinstance(target, pl.Datetime):
        if isinstance(dtype, pl.Datetime):
            tz = dtype.time_zone  # type: ignore[union-attr]
            utc = src.dt.replace_time_zone("UTC") if tz is None else src.dt.convert_time_zone("UTC")
            return utc.cast(target)
        if dtype == pl.Date:
            return src.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        if dtype == pl.String:
            values, bad = _parse_iso(src)
            if bad.any():
                _raise_bad(kind, where, col.name, "must be ISO-8601 timestamps, e.g. 2024-01-01T00:00:00Z",
                           src, bad)  # fmt: skip
            return values
    _raise_bad(kind, where, col.name, f"{wrong}, not {_type_name(dtype)}", src, src.is_not_null())
    raise AssertionError("unreachable")


def conform(kind: str, frame: pl.DataFrame, *, context: str = "") -> pl.DataFrame:
    """Check ``frame`` against the schema of ``kind`` and return it in the schema's types.

    Absent nullable columns are added as nulls; unknown extra columns are an error (a typo
    in an importer must not silently drop data). No value is ever changed to fit (see the
    module docstring); a value that does not fit raises naming its column and row.
    """
    where = f" ({context})" if context else ""
    spec = columns(kind)
    names = {c.name for c in spec}
    extra = [c for c in frame.columns if c not in names]
    if extra:
        shown = [_short(c) for c in extra[:5]] + (["..."] if len(extra) > 5 else [])
        raise SchemaMismatchError(
            f"{kind}{where}: unexpected column(s) [{', '.join(shown)}]; the schema has {sorted(names)}",
            column=extra[0][:128],
        )
    exprs: list[pl.Series] = []
    for col in spec:
        if col.name in frame.columns:
            exprs.append(_strict_cast(kind, where, frame[col.name], col).alias(col.name))
        else:
            if not col.nullable:
                raise SchemaMismatchError(
                    f"{kind}{where}: required column {col.name!r} is missing", column=col.name
                )
            exprs.append(pl.Series(col.name, [None] * frame.height, dtype=col.dtype))
    out = pl.DataFrame(exprs)
    _check_values(kind, out, where)
    return out


#: up to this many rows the control-character check is part of the one query of
#: :func:`_check_values`; larger frames (imports) use the byte scan of :func:`_any_control_byte`
_QUERY_CONTROL_ROWS = 10_000


@functools.lru_cache(maxsize=64)
def _value_checks(kind: str, control: bool) -> tuple[pl.Expr, ...]:
    """Every check of :func:`_check_values` on a conformed frame, each one boolean "some row fails"
    (built once per kind); ``control`` adds the control-character check of every text column."""
    exprs: list[pl.Expr] = []
    for col in columns(kind):
        c = pl.col(col.name)
        if not col.nullable:
            exprs.append(c.null_count() > 0)
        if col.dtype.is_float():
            exprs.append((~c.is_finite() & c.is_not_null()).any())
        if col.min is not None:
            exprs.append((c < col.min).any())
        if col.max is not None:
            exprs.append((c > col.max).any())
        if col.gt is not None:
            exprs.append((c <= col.gt).any())
        if col.dtype == pl.String:
            max_len = col.max_len if col.max_len is not None else TEXT_MAX_LEN
            exprs.append((c.str.len_chars() > max_len).any())
            if control:
                exprs.append(c.str.contains(_CONTROL).any())
            if col.pattern is not None:
                exprs.append(~c.drop_nulls().unique().str.contains(col.pattern).all())
        if col.allowed is not None:
            exprs.append((~c.is_in(sorted(col.allowed)) & c.is_not_null()).any())
    return tuple(e.alias(f"check{i}") for i, e in enumerate(exprs))


def _check_values(kind: str, out: pl.DataFrame, where: str) -> None:
    """Raise naming the column, row and value of the first check that fails.

    All checks run as one polars query first (a small upload pays one query, not one per column
    and check); only when one fails are they repeated column by column to name the culprit.
    """
    if out.height == 0:
        return
    small = out.height <= _QUERY_CONTROL_ROWS
    if not any(out.select(_value_checks(kind, small)).row(0)):
        strings = [] if small else [col.name for col in columns(kind) if col.dtype == pl.String]
        if not any(_any_control_byte(out[name]) for name in strings):
            return
    for col in columns(kind):
        s = out[col.name]
        if not col.nullable and s.null_count():
            _raise_bad(kind, where, col.name, "may not be null", s, s.is_null())
        if s.dtype.is_float():
            bad = ~s.is_finite() & s.is_not_null()
            if bad.any():
                _raise_bad(kind, where, col.name, "must be finite (no NaN/inf)", s, bad)
        checks = ((col.min, operator.lt, ">="), (col.max, operator.gt, "<="), (col.gt, operator.le, ">"))
        for bound, fails, op in checks:
            if bound is not None:
                bad = fails(s, bound).fill_null(False)
                if bad.any():
                    _raise_bad(kind, where, col.name, f"must be {op} {bound}", s, bad)
        if s.dtype == pl.String:
            _check_text(kind, where, col, s)
        if col.allowed is not None:
            bad = ~s.is_in(sorted(col.allowed)) & s.is_not_null()
            if bad.any():
                _raise_bad(kind, where, col.name, f"must be one of {sorted(col.allowed)}", s, bad)


def _is_control(data: np.ndarray) -> np.ndarray:
    return (data < 0x20) | (data == 0x7F)


def _control_in_views(chunk: pa.Array) -> bool:
    """Control bytes in a string-view array: the inline bytes of short values, then, for long
    values, the byte ranges they refer to in the data buffers (which may hold other bytes too,
    e.g. the length prefixes of a parquet page, so only referenced ranges count)."""
    bufs = chunk.buffers()
    views = np.frombuffer(bufs[1], dtype=np.uint8).reshape(-1, 16)[chunk.offset : chunk.offset + len(chunk)]
    lengths = np.ascontiguousarray(views[:, :4]).view("<i4").ravel()
    short = lengths <= 12
    used = np.arange(12) < np.where(short, lengths, 0)[:, None]
    if (_is_control(views[:, 4:]) & used).any():
        return True
    if short.all():
        return False
    long_views = np.ascontiguousarray(views[~short])
    buffer_index = long_views[:, 8:12].view("<i4").ravel()
    start = long_views[:, 12:16].view("<i4").ravel().astype(np.int64)
    end = start + lengths[~short]
    for b in np.unique(buffer_index):
        data = np.frombuffer(bufs[2 + int(b)], dtype=np.uint8)
        hits = np.flatnonzero(_is_control(data))
        if hits.size:
            sel = buffer_index == b
            if (np.searchsorted(hits, end[sel]) > np.searchsorted(hits, start[sel])).any():
                return True
    return False


def _any_control_byte(values: pl.Series) -> bool:
    """Whether any value holds a byte 0x00-0x1f or 0x7f, checked on the UTF-8 bytes with numpy.

    Those bytes never occur inside a multi-byte UTF-8 sequence, so a byte scan is exact; it reads
    polars' buffers without copying, ~10x faster than a per-row regex over a million rows.
    """
    arr = values.to_arrow(compat_level=pl.CompatLevel.newest())  # string views: no copy
    for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
        if len(chunk) == 0:
            continue
        if pa.types.is_string_view(chunk.type):
            if _control_in_views(chunk):
                return True
            continue
        _, offsets_buf, data_buf = chunk.buffers()
        if data_buf is None:
            continue
        wide = pa.types.is_large_string(chunk.type)
        offsets = np.frombuffer(offsets_buf, dtype=np.int64 if wide else np.int32)
        offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
        if _is_control(data).any():
            return True
    return False


def _check_text(kind: str, where: str, col: Column, s: pl.Series) -> None:
    max_len = col.max_len if col.max_len is not None else TEXT_MAX_LEN
    bad = (s.str.len_chars() > max_len).fill_null(False)
    if bad.any():
        _raise_bad(kind, where, col.name, f"must be at most {max_len} characters", s, bad)
    if _any_control_byte(s):
        bad = s.str.contains(_CONTROL).fill_null(False)
        if bad.any():
            _raise_bad(kind, where, col.name, "must not contain control characters", s, bad)
    if col.pattern is not None and not s.drop_nulls().unique().str.contains(col.pattern).all():
        bad = ~s.str.contains(col.pattern).fill_null(True)
        _raise_bad(kind, where, col.name, f"must match {col.pattern}", s, bad)


def _json_column(kind: str, name: str, values: list[Any]) -> pl.Series:
    """One column of JSON values as a typed series, refusing lists, objects and mixed types."""
    types = {type(v) for v in values}
    types.discard(type(None))
    if not types:
        return pl.Series(name, values, dtype=pl.Null)
    if types <= {int}:
        bad = [i for i, v in enumerate(values) if v is not None and not -(1 << 63) <= v < (1 << 63)]
        if not bad:
            return pl.Series(name, values, dtype=pl.Int64)
    elif types <= {int, float}:
        bad = [i for i, v in enumerate(values) if type(v) is int and abs(v) > 1 << 53]
        if not bad:
            return pl.Series(name, values, dtype=pl.Float64)
    elif types in ({bool}, {str}):
        return pl.Series(name, values, dtype=pl.Boolean if types == {bool} else pl.String)
    else:
        scalar = (int, float, bool, str, type(None))
        bad = [i for i, v in enumerate(values) if not isinstance(v, scalar)]
        if bad:
            what = "a list or object"
        else:  # mixed scalar kinds: blame the first value whose kind differs from the first one's
            first = next(v for v in values if v is not None)

            def kind_of(v: object) -> str:
                return "number" if type(v) in (int, float) else type(v).__name__

            bad = [i for i, v in enumerate(values) if v is not None and kind_of(v) != kind_of(first)]
            what = f"a {kind_of(values[bad[0]])} among {kind_of(first)} values"
        raise SchemaMismatchError(
            f"{kind}: column {name!r} row {bad[0]} holds {what} ({_short(values[bad[0]])}); "
            "each column takes one scalar type",
            column=name,
            row=bad[0],
        )
    raise SchemaMismatchError(
        f"{kind}: column {name!r} row {bad[0]} holds {_short(values[bad[0]])}, too large to be exact",
        column=name,
        row=bad[0],
    )


def records_frame(kind: str, rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Rows as parsed from JSON -> a frame for :func:`conform`, one typed column per key.

    Unlike ``pl.DataFrame(rows)`` nothing is coerced: ``[1, true]`` or ``[1, "a"]`` in one
    column, a list or an object anywhere, or an integer beyond 64 bits raise naming the column
    and the row. Unknown columns raise before any column is built.
    """
    spec = {c.name for c in columns(kind)}
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        for key in row:
            if key not in names:
                if key not in spec:
                    raise SchemaMismatchError(
                        f"{kind}: unexpected column {_short(key)} (row {i}); the schema has {sorted(spec)}",
                        column=str(key)[:128],
                        row=i,
                    )
                names[key] = None
    if not names:
        raise SchemaMismatchError(f"{kind}: the rows hold no columns; the schema has {sorted(spec)}", row=0)
    return pl.DataFrame([_json_column(kind, name, [r.get(name) for r in rows]) for name in names])


def with_measurement_id(
    frame: pl.DataFrame, kind: str, *, key: Sequence[str] | None = None, namespace: str | None = None
) -> pl.DataFrame:
    """Fill ``measurement_id`` from ``source`` (or ``namespace``) and the natural key of ``kind``.

    Uploads pass ``namespace="upload"`` on a frame already through :func:`conform`, so the id
    depends on the canonical values only: the same measurement sent by two clients, or as
    ``1`` and ``1.0``, is one row.
    """
    cols: Iterable[str] = key if key is not None else NATURAL_KEYS[check_kind(kind)]
    head = pl.lit(namespace) if namespace is not None else pl.col("source").cast(pl.String)
    parts = [head] + [pl.col(c).cast(pl.String).fill_null("") for c in cols if c in frame.columns]
    return frame.with_columns(pl.concat_str(parts, separator="|").alias("measurement_id"))


def describe(kind: str) -> list[dict[str, object]]:
    """The schema as plain records (name, dtype, nullable, bounds, allowed, doc) for docs and the API."""
    out: list[dict[str, object]] = []
    for c in columns(kind):
        out.append(
            {
                "name": c.name,
                "dtype": str(c.dtype),
                "nullable": c.nullable,
                "min": c.min,
                "max": c.max,
                "gt": c.gt,
                "allowed": sorted(c.allowed) if c.allowed else None,
                "max_len": c.max_len,
                "pattern": c.pattern,
                "doc": c.doc,
            }
        )
    return out
