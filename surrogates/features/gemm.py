"""GEMM features: analytical quantities of ``C[m,n] = A[m,k] @ B[k,n]`` on a described device.

:func:`gemm_features` takes a frame of queries (one call repeated ``batch`` times) joined with
the device descriptors (``devices`` table: ``peak_fp32_gflops``, ``peak_fp16_gflops``,
``mem_bw_gbs``, ``cores`` = SMs, ``l2_mb``, ``clock_mhz``) and returns flops, bytes moved,
arithmetic intensity, roofline time (``roofline_ms``), ridge-point ratio, wave quantization for
typical threadblock tiles and dtype/op/layout codes. ``roofline_ms`` lets a model predict the
*ratio* of runtime to roofline, which a tree can carry to larger shapes and faster devices (a
raw-time tree cannot extrapolate).

The features are written once, in :func:`_feature_formulas`, and evaluated two ways with the
same bits: vectorised numpy over whole columns (training, batches), or, for a frame of up to
:data:`SCALAR_QUERY_ROWS` queries on a :class:`DeviceIndex`, query by query in Python floats
(:class:`FeatureRows`; numpy on one-element arrays cost ~75 us a query, this a few). Models
logged to MLflow call these functions inside ``predict``, so the service and the CLI never
compute features themselves. The steps are
public for the served models (:mod:`~hwsurrogate.surrogates.models.gemm_serving`), which check a
query once and build its features once for both the runtime and the power model:
:func:`gemm_query_arrays` (checked columns), :func:`gemm_feature_arrays` (every feature column),
:func:`stack_features` (the matrix a model reads). pandas is imported only for batches over 64 rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import UnknownDeviceError

#: bytes per element of A, B and C, and the peak column (x multiplier) the dtype runs at.
#: Weight-only quantisation (``*_wo``) reads B narrow and computes in 16 bit.
GEMM_DTYPE_SPECS: dict[str, tuple[float, float, float, str, float]] = {
    "fp64": (8, 8, 8, "peak_fp32_gflops", 0.5),
    "fp32": (4, 4, 4, "peak_fp32_gflops", 1.0),
    "int32": (4, 4, 4, "peak_fp32_gflops", 1.0),
    "tf32": (4, 4, 4, "peak_fp16_gflops", 0.5),
    "fp16": (2, 2, 2, "peak_fp16_gflops", 1.0),
    "bf16": (2, 2, 2, "peak_fp16_gflops", 1.0),
    "fp8": (1, 1, 2, "peak_fp16_gflops", 2.0),
    "fp8_block": (1, 1, 2, "peak_fp16_gflops", 2.0),
    "fp8_static": (1, 1, 2, "peak_fp16_gflops", 2.0),
    "int8": (1, 1, 2, "peak_fp16_gflops", 2.0),
    "sq": (1, 1, 2, "peak_fp16_gflops", 2.0),
    "nvfp4": (0.5, 0.5, 2, "peak_fp16_gflops", 4.0),
    "int4_wo": (2, 0.5, 2, "peak_fp16_gflops", 1.0),
    "int8_wo": (2, 1, 2, "peak_fp16_gflops", 1.0),
}
GEMM_DTYPE_CODES: dict[str, int] = {d: i for i, d in enumerate(GEMM_DTYPE_SPECS)}
GEMM_OP_CODES: dict[str, int] = {"gemm": 0, "bmm": 1, "linear": 2}
GEMM_LAYOUT_CODES: dict[str, int] = {"nn": 0, "nt": 1, "tn": 2, "tt": 3}
#: threadblock tiles (rows x cols of C) whose wave quantization is a feature.
GEMM_TILES: tuple[tuple[int, int], ...] = ((64, 64), (128, 64), (128, 128), (256, 128))
#: descriptor columns the GEMM features read from the ``devices`` table.
DEVICE_DESCRIPTORS: tuple[str, ...] = (
    "cores",
    "peak_fp32_gflops",
    "peak_fp16_gflops",
    "mem_bw_gbs",
    "l2_mb",
    "clock_mhz",
)
DEFAULT_LAYOUT = "nn"
#: bumped whenever a GEMM feature's definition changes; a model remembers the version it was
#: fitted with and refuses to predict with another (its trees would read different numbers)
#: 2: linear tiled as one (batch*m) x n GEMM; footprint over L2 counts every batch entry
#: 3: operand alignment of n and k (align_n, align_k, align_nk)
GEMM_FEATURE_VERSION = 3
#: alignment features count trailing zero bits up to this many (divisible by 2**7 = 128)
GEMM_MAX_ALIGN_BITS = 7
GEMM_QUERY_COLUMNS: tuple[str, ...] = ("device_id", "op", "m", "n", "k", "batch", "dtype", "layout")

#: feature columns produced by :func:`gemm_features` (in this order).
GEMM_SHAPE_FEATURES: tuple[str, ...] = (
    "log2_m",
    "log2_n",
    "log2_k",
    "log2_batch",
    "log2_flops",
    "log2_bytes",
    "log2_intensity",
    "log2_intensity_over_ridge",
    "log2_roofline_ms",
    "log2_compute_ms",
    "log2_memory_ms",
    "log2_footprint_over_l2",
    "dtype_code",
    "op_code",
    "layout_code",
    "k_mod_64",
    "mn_aspect",
    "align_n",
    "align_k",
    "align_nk",
    *(f"waves_{a}x{b}" for a, b in GEMM_TILES),
    *(f"wave_eff_{a}x{b}" for a, b in GEMM_TILES),
    *(f"tile_eff_{a}x{b}" for a, b in GEMM_TILES),
)
GEMM_DEVICE_FEATURES: tuple[str, ...] = (
    "log2_peak_gflops",
    "log2_mem_bw_gbs",
    "log2_ridge",
    "cores",
    "log2_l2_mb",
    "clock_mhz",
)


class UnknownGemmDeviceError(UnknownDeviceError, ValueError):
    """A GEMM query names a device without descriptors (neither trained on nor adapted)."""


#: a query frame of up to this many rows is read as Python lists (:func:`gemm_query_arrays`)
FEW_QUERY_ROWS = 64
_DIM_COLUMNS = ("m", "n", "k", "batch")
_STRING_COLUMNS = ("device_id", "op", "dtype", "layout")


def gemm_query_arrays(queries: pl.DataFrame) -> dict[str, np.ndarray]:
    """Validated GEMM query columns as numpy arrays; ``ValueError`` naming the column and row.

    Dims come back as float64 holding whole numbers >= 1; strings as object arrays, an unstated
    layout as ``nn``. Works on whole columns, so a one-row query costs microseconds and a
    100k-row one milliseconds (polars' per-operation overhead would dominate the one-row case).
    A frame of at most :data:`FEW_QUERY_ROWS` rows with numeric dims and string columns is read
    as Python values (the values are the same; every check below is shared).
    """
    names = queries.columns
    present = set(names)
    missing = [c for c in GEMM_QUERY_COLUMNS if c not in present and c not in ("layout", "batch")]
    if missing:
        raise ValueError(f"gemm queries miss column(s) {missing}; expected {list(GEMM_QUERY_COLUMNS)}")
    n_rows = queries.height
    raw = _few_columns(queries, present) if n_rows <= FEW_QUERY_ROWS else None
    out: dict[str, np.ndarray] = {}
    if raw is not None:
        dims = np.array([raw.get(c, (1,) * n_rows) for c in _DIM_COLUMNS], dtype=np.float64).reshape(
            4, n_rows
        )
        checked = _few_checked(raw, dims, n_rows)
        if checked is not None:
            return checked
    else:
        dims = np.ones((4, n_rows))
        for j, col in enumerate(_DIM_COLUMNS):
            if col not in present:  # only batch may be absent
                continue
            s = queries.get_column(col)
            try:
                values = (s if s.dtype.is_numeric() else s.cast(pl.Float64, strict=True)).to_numpy()
                dims[j] = np.asarray(values, dtype=np.float64)
            except Exception:
                raise ValueError(f"gemm queries: column {col!r} must be numeric, got {s.dtype}") from None
    with np.errstate(invalid="ignore"):
        bad = ~_whole_positive(dims, _Columns)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=1))[0])
        col, i = _DIM_COLUMNS[j], int(np.flatnonzero(bad[j])[0])
        value = raw[col][i] if raw is not None else queries.get_column(col)[i]
        raise ValueError(f"gemm queries: column {col!r} must be a positive integer; row {i} has {value!r}")
    for j, col in enumerate(_DIM_COLUMNS):
        out[col] = dims[j]
    for col, allowed in (("dtype", GEMM_DTYPE_SPECS), ("op", GEMM_OP_CODES)):
        v = _text(queries, col, raw)
        bad = np.isnan(_lookup(v, dict.fromkeys(allowed, 0.0)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"gemm queries: column {col!r} must be one of {sorted(allowed)}; row {i} has {v[i]!r}"
            )
        out[col] = v
    dev = _text(queries, "device_id", raw)
    nulls = _nulls(dev)
    if nulls.any():
        raise ValueError(f"gemm queries: column 'device_id' is null in row {int(np.flatnonzero(nulls)[0])}")
    out["device_id"] = dev
    # an unstated layout means row-major operands as numpy/torch matmul take them ("nn"),
    # in training rows and queries alike (only GPPerf states layouts; the others never do)
    if "layout" in present:
        layout = _text(queries, "layout", raw)
        out["layout"] = np.where(_nulls(layout), DEFAULT_LAYOUT, layout)
    else:
        out["layout"] = np.full(n_rows, DEFAULT_LAYOUT, dtype=object)
    return out


def _whole_positive(d: Any, ops: type[_Columns] | type[_Scalars]) -> Any:
    """The rule for a dim (m, n, k, batch): finite, at least 1, a whole number; on a column of
    dims or on one (:func:`gemm_query_arrays`)."""
    return ops.isfinite(d) & (d >= 1) & (d == ops.floor(d))


def _few_checked(raw: dict[str, list], dims: np.ndarray, n_rows: int) -> dict[str, np.ndarray] | None:
    """:func:`gemm_query_arrays` of a few rows read by :func:`_few_columns`, checked with the same
    rules (value by value up to :data:`SCALAR_DIM_ROWS` rows, else on the dims array), where every
    value passes; None where one fails (the column checks then name it). Costs a few microseconds
    where the column checks cost tens on a one-row frame."""
    if n_rows <= SCALAR_DIM_ROWS:
        for v in dims.ravel().tolist():
            if not _whole_positive(v, _Scalars):
                return None
    else:
        with np.errstate(invalid="ignore"):
            if not _whole_positive(dims, _Columns).all():
                return None
    dev, dtype, op = raw["device_id"], raw["dtype"], raw["op"]
    if None in dev or not _DTYPE_NAMES.issuperset(dtype) or not _OP_NAMES.issuperset(op):
        return None
    layout = raw.get("layout", (None,) * n_rows)
    out = {col: dims[j] for j, col in enumerate(_DIM_COLUMNS)}
    for col, values in (("dtype", dtype), ("op", op), ("device_id", dev)):
        out[col] = np.array(values, dtype=object)  # strings: a 1-d object array
    out["layout"] = np.array([DEFAULT_LAYOUT if v is None else v for v in layout], dtype=object)
    return out


#: up to this many rows :func:`_few_checked` checks the dims one by one (numpy's per-call cost
#: outweighs a few Python comparisons), beyond it on the whole array
SCALAR_DIM_ROWS = 8
_DTYPE_NAMES = frozenset(GEMM_DTYPE_SPECS)
_OP_NAMES = frozenset(GEMM_OP_CODES)


def _few_columns(queries: pl.DataFrame, present: set[str]) -> dict[str, list] | None:
    """The query columns as lists of Python values, where every dim is a number (int or float)
    or null and every text value a string or null (else None: read by the column path, which
    casts). Judged on the values, not the column types: a frame's ``dtypes`` costs more than
    reading a few values, and a categorical column's values are the strings the column path
    casts it to."""
    raw: dict[str, list] = {}
    if 0 < queries.height <= SCALAR_DIM_ROWS:  # one ``rows()`` call beats a call per column here
        raw = dict(zip(queries.columns, map(list, zip(*queries.rows(), strict=True)), strict=True))
    for columns, types in ((_DIM_COLUMNS, _NUMBERS), (_STRING_COLUMNS, _TEXTS)):
        for col in columns:
            if col in present:
                values = raw.get(col)
                if values is None:
                    values = raw[col] = queries.get_column(col).to_list()
                if not types.issuperset(map(type, values)):
                    return None
    return raw


_NUMBERS = frozenset((int, float, type(None)))  # not bool: a boolean column is cast by the column path
_TEXTS = frozenset((str, type(None)))


def _text(queries: pl.DataFrame, col: str, raw: dict[str, list] | None) -> np.ndarray:
    """Column ``col`` as an object array of str/None (from :func:`_few_columns` where read so)."""
    if raw is not None:
        out = np.empty(len(raw[col]), dtype=object)
        out[:] = raw[col]
        return out
    return _strings(queries.get_column(col))


def _nulls(values: np.ndarray) -> np.ndarray:
    """Which entries of an object array of str/None are None."""
    return np.equal(values, None)


def _strings(s: pl.Series) -> np.ndarray:
    """A column as an object array of str/None (casting non-string columns to strings)."""
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    return s.to_numpy().astype(object, copy=False)


#: up to this many values :func:`_lookup` looks each up in the dict (measured on the 2-core machine,
#: load ~1.7: 22 values 3.0 us against 10.1 us for ``pandas.factorize``, 64 values 6.6 against 11.0,
#: 128 values 12.2 against 12.4)
FEW_LOOKUP_VALUES = 64


def _lookup(values: np.ndarray, table: dict[str, float]) -> np.ndarray:
    """``table[v]`` for each value (NaN where absent or null), one look-up per distinct value."""
    if values.size <= FEW_LOOKUP_VALUES:  # a few queries: plain dict look-ups beat hashing the column
        return np.array(
            [table.get(v, np.nan) if isinstance(v, str) else np.nan for v in values], dtype=np.float64
        )
    import pandas as pd

    codes, uniques = pd.factorize(values)  # hashing: ms for 100k rows
    mapped = np.array([table.get(u, np.nan) for u in uniques] + [np.nan], dtype=np.float64)
    return mapped[codes]  # code -1 (null) takes the trailing NaN


def check_gemm_queries(queries: pl.DataFrame) -> pl.DataFrame:
    """Validate and normalise GEMM queries; raise ``ValueError`` naming the column and value."""
    a = gemm_query_arrays(queries)
    return pl.DataFrame(
        {
            "device_id": pl.Series(a["device_id"], dtype=pl.String),
            "op": pl.Series(a["op"], dtype=pl.String),
            **{c: pl.Series(a[c].astype(np.int64)) for c in ("m", "n", "k", "batch")},
            "dtype": pl.Series(a["dtype"], dtype=pl.String),
            "layout": pl.Series(a["layout"], dtype=pl.String),
        }
    )


def device_table(devices: pl.DataFrame) -> pl.DataFrame:
    """The descriptor columns of a ``devices`` frame (one row per device, missing columns null).

    A device without a published peak falls back to the fp32 GEMM GFLOP/s measured on it by the
    fingerprint collector (``descriptors.micro_benchmarks.gemm_gflops.fp32``). A device without
    a peak or a bandwidth keeps NaN roofline features (trees cope); models that predict the ratio
    to roofline refuse such devices by name.
    """
    if "device_id" not in devices.columns:
        raise ValueError("devices table needs a 'device_id' column")
    cols = [
        pl.col(c).cast(pl.Float64) if c in devices.columns else pl.lit(None, dtype=pl.Float64).alias(c)
        for c in DEVICE_DESCRIPTORS
    ]
    if "descriptors" in devices.columns and "peak_fp32_gflops" in DEVICE_DESCRIPTORS:
        # Empirical roofline: a device with no published peak (e.g. a CPU recorded by
        # `hws collect fingerprint`) uses the fp32 GEMM GFLOP/s measured on it.
        measured = (
            pl.col("descriptors")
            .str.json_path_match("$.micro_benchmarks.gemm_gflops.fp32")
            .cast(pl.Float64, strict=False)
        )
        i = DEVICE_DESCRIPTORS.index("peak_fp32_gflops")
        cols[i] = pl.coalesce(cols[i], measured).alias("peak_fp32_gflops")
    table = devices.select(pl.col("device_id").cast(pl.String), *cols).unique("device_id", keep="last")
    return table.sort("device_id")


_DTYPE_TABLES: dict[str, dict[str, float]] = {
    "a_bytes": {d: float(s[0]) for d, s in GEMM_DTYPE_SPECS.items()},
    "b_bytes": {d: float(s[1]) for d, s in GEMM_DTYPE_SPECS.items()},
    "c_bytes": {d: float(s[2]) for d, s in GEMM_DTYPE_SPECS.items()},
    "uses_fp16_peak": {d: float(s[3] == "peak_fp16_gflops") for d, s in GEMM_DTYPE_SPECS.items()},
    "peak_mult": {d: float(s[4]) for d, s in GEMM_DTYPE_SPECS.items()},
    "dtype_code": {d: float(c) for d, c in GEMM_DTYPE_CODES.items()},
}
#: the same tables as one matrix, a row per dtype (in GEMM_DTYPE_CODES order) and a last all-NaN row
#: for an unknown dtype: one look-up per query instead of one per table
_DTYPE_MATRIX = np.array(
    [[_DTYPE_TABLES[c][d] for c in _DTYPE_TABLES] for d in GEMM_DTYPE_CODES] + [[np.nan] * len(_DTYPE_TABLES)]
)
#: the same again per dtype as a tuple of Python floats (the one-query path)
_DTYPE_SPEC_ROWS: dict[str, tuple[float, ...]] = {
    d: tuple(row) for d, row in zip(GEMM_DTYPE_CODES, _DTYPE_MATRIX[:-1].tolist(), strict=True)
}
_DTYPE_ROWS: dict[str, float] = {d: float(c) for d, c in GEMM_DTYPE_CODES.items()}
#: per tile (GEMM_TILES order): its waves, wave-efficiency and tile-efficiency feature names
_TILE_FEATURES = tuple((f"waves_{a}x{b}", f"wave_eff_{a}x{b}", f"tile_eff_{a}x{b}") for a, b in GEMM_TILES)
_LAYOUT_ROWS: dict[str, float] = {k: float(v) for k, v in GEMM_LAYOUT_CODES.items()}
_OP_ROWS: dict[str, float] = {k: float(v) for k, v in GEMM_OP_CODES.items()}

#: every column :func:`gemm_feature_arrays` returns, in order
GEMM_FEATURE_COLUMNS: tuple[str, ...] = (
    *GEMM_SHAPE_FEATURES,
    *GEMM_DEVICE_FEATURES,
    "roofline_ms",
    "flops",
    "bytes",
)
#: the columns that are the log2 of what :func:`_feature_formulas` computes for them
_LOG2_COLUMNS: frozenset[str] = frozenset(
    [c for c in GEMM_FEATURE_COLUMNS if c.startswith(("log2_", "waves_"))]
    + ["mn_aspect", "align_n", "align_k", "align_nk"]
)
_COLUMN_INDEX: dict[str, int] = {c: j for j, c in enumerate(GEMM_FEATURE_COLUMNS)}
_LOG2_MASK = np.array([c in _LOG2_COLUMNS for c in GEMM_FEATURE_COLUMNS])
#: the one-query path computes in Python ints where numpy uses int64: only shapes whose tile
#: products stay below this bound (far beyond any real GEMM) take it, so the two never differ
_SCALAR_INT_BOUND = 2**62
#: a frame of up to this many queries on a :class:`DeviceIndex` gets its features query by query
#: in Python floats (:func:`gemm_feature_arrays`). Measured on the 2-core machine (load ~10):
#: 1 query 15 us this way against 74 us on numpy columns, 4 queries 44 vs 96, 8 queries 82 vs 98
SCALAR_QUERY_ROWS = 8


class DeviceIndex:
    """:func:`device_table` of a devices frame, indexed once by device id.

    Pass it wherever a devices frame is expected to skip rebuilding the table per call: a model
    answering one query at a time would otherwise spend most of its time there. ``descriptors``
    holds each device's :data:`DEVICE_DESCRIPTORS` as Python floats (the one-query path).
    """

    __slots__ = ("descriptors", "ids", "row", "values")

    def __init__(self, devices: pl.DataFrame) -> None:
        table = device_table(devices)
        self.ids: list[str] = table["device_id"].to_list()
        self.row: dict[str, float] = {d: float(i) for i, d in enumerate(self.ids)}
        self.values = {c: table.get_column(c).to_numpy().astype(np.float64) for c in DEVICE_DESCRIPTORS}
        self.descriptors: dict[str, tuple[float, ...]] = {
            d: tuple(float(self.values[c][i]) for c in DEVICE_DESCRIPTORS) for i, d in enumerate(self.ids)
        }


def _device_columns(device_ids: np.ndarray, devices: pl.DataFrame | DeviceIndex) -> dict[str, np.ndarray]:
    """Each query's device descriptors (NaN where not stated); unknown devices raise by name."""
    index = devices if isinstance(devices, DeviceIndex) else DeviceIndex(devices)
    rows = _lookup(device_ids, index.row)
    if np.isnan(rows).any():
        raise UnknownGemmDeviceError(str(sorted(set(device_ids[np.isnan(rows)]))[0]), index.ids)
    rows = rows.astype(np.int64)
    return {c: v[rows] for c, v in index.values.items()}


class _Columns:
    """The operations :func:`_feature_formulas` needs beyond arithmetic, on numpy columns."""

    isnan = staticmethod(np.isnan)
    isfinite = staticmethod(np.isfinite)
    floor = staticmethod(np.floor)
    where = staticmethod(np.where)
    fmax = staticmethod(np.fmax)
    minimum = staticmethod(np.minimum)
    ceil = staticmethod(np.ceil)
    mod = staticmethod(np.mod)

    @staticmethod
    def integer(x: np.ndarray) -> np.ndarray:
        return np.asarray(x).astype(np.int64)

    @staticmethod
    def real(x: np.ndarray) -> np.ndarray:
        return np.asarray(x).astype(np.float64)


class _Scalars:
    """The same operations on one query's Python numbers, giving numpy's values (NaN rules included).

    Python float arithmetic is IEEE double arithmetic, as numpy's is, so the same formulas give
    the same bits; the one difference, a division by zero, raises ``ZeroDivisionError`` here
    (the caller then takes the column path). Python ints stand for numpy's int64 only below
    :data:`_SCALAR_INT_BOUND`. log2 is not here: :func:`_feature_formulas` leaves it to its
    callers, which take numpy's log2 on a vector of every column that needs it."""

    @staticmethod
    def isnan(x: float) -> bool:
        return x != x

    isfinite = staticmethod(math.isfinite)

    @staticmethod
    def floor(x: float) -> float:
        return float(math.floor(x)) if math.isfinite(x) else x

    @staticmethod
    def where(cond: bool, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def fmax(a: float, b: float) -> float:
        return b if a != a else a if b != b else max(a, b)

    @staticmethod
    def minimum(a: float, b: float) -> float:
        return a if a != a else b if b != b else min(a, b)

    @staticmethod
    def ceil(x: float) -> float:
        return float(math.ceil(x)) if math.isfinite(x) else x

    @staticmethod
    def mod(a: float, b: float) -> float:
        return a % b

    @staticmethod
    def integer(x: float) -> int:
        return int(x)

    @staticmethod
    def real(x: int) -> float:
        return float(x)


def _feature_formulas(
    q: tuple[Any, ...], spec: tuple[Any, ...], dev: tuple[Any, ...], ops: type[_Columns] | type[_Scalars]
) -> dict[str, Any]:
    """THE definition of the GEMM features, evaluated on numpy columns (``ops=_Columns``) or on one
    query's Python numbers (``ops=_Scalars``) with the same values.

    ``q`` is (m, n, k, batch, is_linear, op_code, layout_code), ``spec`` the dtype's
    :data:`_DTYPE_TABLES` entries in order, ``dev`` the device's :data:`DEVICE_DESCRIPTORS` in
    order. Returns every column of :data:`GEMM_FEATURE_COLUMNS` in order; those in
    :data:`_LOG2_COLUMNS` before their log2 (taken by the caller)."""
    m, n, k, b, is_linear, op_code, layout_code = q
    a_bytes, b_bytes, c_bytes, uses_fp16_peak, peak_mult, dtype_code = spec
    cores, p32, p16, bw, l2, clock = dev
    # linear shares its weight across the batch; gemm/bmm read one B per batch entry
    b_reads = ops.where(is_linear, 1.0, b)
    fp16 = ops.where(ops.isnan(p16), p32, p16)
    fp32 = ops.where(ops.isnan(p32), p16 / 4, p32)
    peak = ops.where(uses_fp16_peak == 1.0, fp16, fp32) * peak_mult
    flops = 2.0 * b * m * n * k
    nbytes = b * m * k * a_bytes + b_reads * k * n * b_bytes + b * m * n * c_bytes
    compute_ms = flops / (peak * 1e6)
    memory_ms = nbytes / (bw * 1e6)
    intensity = flops / nbytes
    ridge = peak / bw
    roofline_ms = ops.fmax(compute_ms, memory_ms)  # a missing bandwidth leaves the compute bound
    sms = ops.where(ops.isnan(cores), 80.0, cores)
    # linear runs as ONE (batch*m) x n GEMM (torch flattens the leading dims); gemm/bmm tile
    # each of the batch's m x n outputs separately
    mi = ops.integer(ops.where(is_linear, m * b, m))
    ni = ops.integer(n)
    bt = ops.where(is_linear, 1.0, b)
    waves: dict[str, Any] = {}
    for (tm, tn), (w_name, eff_name, tile_name) in zip(GEMM_TILES, _TILE_FEATURES, strict=True):
        m_tiles, n_tiles = (mi + (tm - 1)) // tm, (ni + (tn - 1)) // tn
        tiles = ops.real(m_tiles * n_tiles) * bt
        w = ops.ceil(tiles / sms)
        waves[w_name] = w  # log2
        waves[eff_name] = tiles / (w * sms)
        waves[tile_name] = (mi * n) / (m_tiles * tm * n_tiles * tn)
    # n is contiguous in C (and in B for gemm/bmm), k in A (and in linear's weight): the lowest
    # set bit, capped (log2: the trailing zero bits, see alignment_bits)
    cap = 2**GEMM_MAX_ALIGN_BITS
    align_n = ops.minimum(_lowest_set_bit(ni), cap)
    align_k = ops.minimum(_lowest_set_bit(ops.integer(k)), cap)
    return {
        "log2_m": m,
        "log2_n": n,
        "log2_k": k,
        "log2_batch": b,
        "log2_flops": flops,
        "log2_bytes": nbytes,
        "log2_intensity": intensity,
        "log2_intensity_over_ridge": intensity / ridge,
        "log2_roofline_ms": roofline_ms,
        "log2_compute_ms": compute_ms,
        "log2_memory_ms": memory_ms,
        # the whole working set (all batch entries) against L2: timings repeated back to back
        # keep a working set that fits in L2 there (NeuSight times 25 calls in a row)
        "log2_footprint_over_l2": nbytes / (ops.where(ops.isnan(l2), 4.0, l2) * 1e6),
        "dtype_code": dtype_code,
        "op_code": op_code,
        "layout_code": ops.where(ops.isnan(layout_code), -1.0, layout_code),
        "k_mod_64": ops.mod(k, 64),
        "mn_aspect": m / n,
        "align_n": align_n,
        "align_k": align_k,
        "align_nk": ops.minimum(align_n, align_k),
        **{name: waves[name] for name in GEMM_SHAPE_FEATURES if name in waves},
        "log2_peak_gflops": peak,
        "log2_mem_bw_gbs": bw,
        "log2_ridge": ridge,
        "cores": sms,
        "log2_l2_mb": l2,
        "clock_mhz": clock,
        "roofline_ms": roofline_ms,
        "flops": flops,
        "bytes": nbytes,
    }


def _lowest_set_bit(v: Any) -> Any:
    """``v & -v``: the lowest set bit of each integer (int64 column or Python int)."""
    return v & -v


def alignment_bits(x: np.ndarray, max_bits: int = GEMM_MAX_ALIGN_BITS) -> np.ndarray:
    """Trailing zero bits of each positive integer in ``x``, capped at ``max_bits`` (float64).

    ``alignment_bits(12) == 2`` (12 = 4 x 3). The contiguous (leading) dimension of an operand
    decides whether BLAS can use vectorised 16-byte loads (fp32: a multiple of 4 elements), which
    picks a different, much faster kernel family (NeuSight's P4: 0.2 vs 0.75 of peak).
    """
    low = _lowest_set_bit(np.asarray(x).astype(np.int64))
    return np.log2(np.minimum(low, 2**max_bits).astype(np.float64))


def gemm_feature_arrays(
    q: dict[str, np.ndarray], devices: pl.DataFrame | DeviceIndex
) -> Mapping[str, np.ndarray]:
    """Every column of :func:`gemm_features` (:data:`GEMM_FEATURE_COLUMNS`) as a float64 array,
    from the checked query columns of :func:`gemm_query_arrays`.

    Whole columns at once (numpy); a batch of at most :data:`SCALAR_QUERY_ROWS` queries on a
    :class:`DeviceIndex` query by query in Python floats instead (:class:`FeatureRows`: the same
    formulas and the same values, without numpy's per-operation cost on one-element arrays)."""
    if isinstance(devices, DeviceIndex) and len(q["m"]) <= SCALAR_QUERY_ROWS:
        rows = _feature_rows(q, devices)
        if rows is not None:
            return rows
    dev = _device_columns(q["device_id"], devices)
    code = _lookup(q["dtype"], _DTYPE_ROWS)
    table = _DTYPE_MATRIX[np.where(np.isnan(code), -1, code).astype(np.intp)]
    spec = tuple(table[:, j] for j in range(table.shape[1]))
    is_linear = q["op"] == "linear"
    query = (
        q["m"],
        q["n"],
        q["k"],
        q["batch"],
        is_linear,
        _lookup(q["op"], _OP_ROWS),
        _lookup(q["layout"], _LAYOUT_ROWS),
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        raw = _feature_formulas(query, spec, tuple(dev[c] for c in DEVICE_DESCRIPTORS), _Columns)
        return {c: np.log2(v) if c in _LOG2_COLUMNS else v for c, v in raw.items()}


def _feature_rows(q: dict[str, np.ndarray], index: DeviceIndex) -> FeatureRows | None:
    """:func:`_feature_formulas` query by query on Python numbers; None where a query needs the
    column path (an unknown device, which it names; a zero descriptor; a shape past
    :data:`_SCALAR_INT_BOUND`)."""
    known = index.descriptors
    values = []
    for m, n, k, b, op, dtype, layout, device in zip(
        q["m"].tolist(), q["n"].tolist(), q["k"].tolist(), q["batch"].tolist(),
        q["op"].tolist(), q["dtype"].tolist(), q["layout"].tolist(), q["device_id"].tolist(), strict=True,
    ):  # fmt: skip
        dev, spec = known.get(device), _DTYPE_SPEC_ROWS.get(dtype)
        if dev is None or spec is None:
            return None
        is_linear = op == "linear"
        if ((int(m * b) if is_linear else int(m)) + 256) * (int(n) + 256) >= _SCALAR_INT_BOUND:
            return None
        query = (m, n, k, b, is_linear, _OP_ROWS.get(op, math.nan), _LAYOUT_ROWS.get(layout, math.nan))
        try:
            values.append(list(_feature_formulas(query, spec, dev, _Scalars).values()))
        except ZeroDivisionError:
            return None
    matrix = np.array(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log2(matrix, out=matrix, where=_LOG2_MASK)  # in place: a third of an indexed round trip
    return FeatureRows(matrix)


class FeatureRows(Mapping[str, np.ndarray]):
    """The columns of :func:`gemm_feature_arrays` for a few queries, held as one ``(rows,
    columns)`` float64 matrix (:data:`GEMM_FEATURE_COLUMNS` order); :func:`stack_features`
    takes a model's columns from it with one indexing."""

    __slots__ = ("matrix",)

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def __getitem__(self, name: str) -> np.ndarray:
        return self.matrix[:, _COLUMN_INDEX[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(GEMM_FEATURE_COLUMNS)

    def __len__(self) -> int:
        return len(GEMM_FEATURE_COLUMNS)


def gemm_features(queries: pl.DataFrame, devices: pl.DataFrame) -> pl.DataFrame:
    """Features of GEMM ``queries`` on the devices described in ``devices`` (one row per query).

    Returns the columns of :data:`GEMM_SHAPE_FEATURES` and :data:`GEMM_DEVICE_FEATURES` plus
    ``roofline_ms`` (max of compute time at peak and memory time at full bandwidth), ``flops``
    and ``bytes``. Raises :class:`UnknownGemmDeviceError` naming the first unknown device.
    A descriptor a device does not state gives NaN in the features that need it.
    """
    return pl.DataFrame(dict(gemm_feature_arrays(gemm_query_arrays(queries), devices)))


def gemm_feature_matrix(
    queries: pl.DataFrame, devices: pl.DataFrame | DeviceIndex, *, device_features: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(X, roofline_ms) as float arrays; NaN marks descriptors a device does not state."""
    cols = gemm_feature_arrays(gemm_query_arrays(queries), devices)
    return stack_features(cols, gemm_feature_names(device_features=device_features)), cols["roofline_ms"]


def stack_features(cols: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    """The ``(rows, len(names))`` float64 matrix of the named columns of :func:`gemm_feature_arrays`
    (a new array)."""
    if isinstance(cols, FeatureRows):
        if tuple(names) == GEMM_FEATURE_COLUMNS[: len(names)]:  # a model's columns lead the table
            return cols.matrix[:, : len(names)].copy()
        return cols.matrix[:, [_COLUMN_INDEX[c] for c in names]]
    x = np.empty((len(cols["roofline_ms"]), len(names)))
    for j, c in enumerate(names):
        x[:, j] = cols[c]
    return x


def gemm_feature_names(*, device_features: bool = True) -> list[str]:
    return list(GEMM_SHAPE_FEATURES) + (list(GEMM_DEVICE_FEATURES) if device_features else [])
