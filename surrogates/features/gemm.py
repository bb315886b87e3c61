"""GEMM features: analytical quantities of ``C[m,n] = A[m,k] @ B[k,n]`` on a described device.

:func:`gemm_features` takes a frame of queries (one call repeated ``batch`` times) joined with
the device descriptors (``devices`` table: ``peak_fp32_gflops``, ``peak_fp16_gflops``,
``mem_bw_gbs``, ``cores`` = SMs, ``l2_mb``, ``clock_mhz``) and returns flops, bytes moved,
arithmetic intensity, roofline time (``roofline_ms``), ridge-point ratio, wave quantization for
typical threadblock tiles and dtype/op/layout codes. ``roofline_ms`` lets a model predict the
*ratio* of runtime to roofline, which a tree can carry to larger shapes and faster devices (a
raw-time tree cannot extrapolate).

Everything is vectorised numpy over whole columns; models logged to MLflow call these functions
inside ``predict``, so the service and the CLI never compute features themselves. The steps are
public for the served models (:mod:`~hwsurrogate.surrogates.models.gemm_serving`), which check a
query once and build its features once for both the runtime and the power model:
:func:`gemm_query_arrays` (checked columns), :func:`gemm_feature_arrays` (every feature column),
:func:`stack_features` (the matrix a model reads). pandas is imported only for batches over 8 rows.
"""

from __future__ import annotations

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


#: a query frame of up to this many rows is read with one ``rows()`` call instead of per column
FEW_QUERY_ROWS = 8
_DIM_COLUMNS = ("m", "n", "k", "batch")
_STRING_COLUMNS = ("device_id", "op", "dtype", "layout")


def gemm_query_arrays(queries: pl.DataFrame) -> dict[str, np.ndarray]:
    """Validated GEMM query columns as numpy arrays; ``ValueError`` naming the column and row.

    Dims come back as float64 holding whole numbers >= 1; strings as object arrays, an unstated
    layout as ``nn``. Works on whole columns, so a one-row query costs microseconds and a
    100k-row one milliseconds (polars' per-operation overhead would dominate the one-row case).
    A frame of at most :data:`FEW_QUERY_ROWS` rows with numeric dims and string columns is read
    in one ``rows()`` call (the values are the same; every check below is shared).
    """
    names = queries.columns
    present = set(names)
    missing = [c for c in GEMM_QUERY_COLUMNS if c not in present and c not in ("layout", "batch")]
    if missing:
        raise ValueError(f"gemm queries miss column(s) {missing}; expected {list(GEMM_QUERY_COLUMNS)}")
    n_rows = queries.height
    raw = _few_rows(queries, names) if n_rows <= FEW_QUERY_ROWS else None
    out: dict[str, np.ndarray] = {}
    if raw is not None:
        dims = np.array([raw.get(c, (1,) * n_rows) for c in _DIM_COLUMNS], dtype=np.float64).reshape(
            4, n_rows
        )
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
        bad = ~np.isfinite(dims) | (dims < 1) | (dims != np.floor(dims))
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


def _few_rows(queries: pl.DataFrame, names: list[str]) -> dict[str, tuple] | None:
    """The query columns as tuples of Python values, read in one call, where every dim column is
    numeric and every text column a string column (else None: read column by column)."""
    schema = queries.schema
    for col in _DIM_COLUMNS:
        if col in schema and not schema[col].is_numeric():
            return None
    for col in _STRING_COLUMNS:
        if col in schema and schema[col] != pl.String:
            return None
    if not queries.height:
        return dict.fromkeys(names, ())
    return dict(zip(names, zip(*queries.rows(), strict=True), strict=True))


def _text(queries: pl.DataFrame, col: str, raw: dict[str, tuple] | None) -> np.ndarray:
    """Column ``col`` as an object array of str/None (from :func:`_few_rows` where read so)."""
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


def _lookup(values: np.ndarray, table: dict[str, float]) -> np.ndarray:
    """``table[v]`` for each value (NaN where absent or null), one look-up per distinct value."""
    if values.size <= 8:  # a few queries: plain dict look-ups beat hashing the column
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


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return (a + (b - 1)) // b


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
_DTYPE_ROWS: dict[str, float] = {d: float(c) for d, c in GEMM_DTYPE_CODES.items()}
_TILE_M = np.array([tm for tm, _ in GEMM_TILES], dtype=np.int64)
_TILE_N = np.array([tn for _, tn in GEMM_TILES], dtype=np.int64)
#: per tile (GEMM_TILES order): its waves, wave-efficiency and tile-efficiency feature names
_TILE_FEATURES = tuple((f"waves_{a}x{b}", f"wave_eff_{a}x{b}", f"tile_eff_{a}x{b}") for a, b in GEMM_TILES)
_LAYOUT_ROWS: dict[str, float] = {k: float(v) for k, v in GEMM_LAYOUT_CODES.items()}
_OP_ROWS: dict[str, float] = {k: float(v) for k, v in GEMM_OP_CODES.items()}


class DeviceIndex:
    """:func:`device_table` of a devices frame, indexed once by device id.

    Pass it wherever a devices frame is expected to skip rebuilding the table per call: a model
    answering one query at a time would otherwise spend most of its time there.
    """

    __slots__ = ("ids", "row", "values")

    def __init__(self, devices: pl.DataFrame) -> None:
        table = device_table(devices)
        self.ids: list[str] = table["device_id"].to_list()
        self.row: dict[str, float] = {d: float(i) for i, d in enumerate(self.ids)}
        self.values = {c: table.get_column(c).to_numpy().astype(np.float64) for c in DEVICE_DESCRIPTORS}


def _device_columns(device_ids: np.ndarray, devices: pl.DataFrame | DeviceIndex) -> dict[str, np.ndarray]:
    """Each query's device descriptors (NaN where not stated); unknown devices raise by name."""
    index = devices if isinstance(devices, DeviceIndex) else DeviceIndex(devices)
    rows = _lookup(device_ids, index.row)
    if np.isnan(rows).any():
        raise UnknownGemmDeviceError(str(sorted(set(device_ids[np.isnan(rows)]))[0]), index.ids)
    rows = rows.astype(np.int64)
    return {c: v[rows] for c, v in index.values.items()}


def alignment_bits(x: np.ndarray, max_bits: int = GEMM_MAX_ALIGN_BITS) -> np.ndarray:
    """Trailing zero bits of each positive integer in ``x``, capped at ``max_bits`` (float64).

    ``alignment_bits(12) == 2`` (12 = 4 x 3). The contiguous (leading) dimension of an operand
    decides whether BLAS can use vectorised 16-byte loads (fp32: a multiple of 4 elements), which
    picks a different, much faster kernel family (NeuSight's P4: 0.2 vs 0.75 of peak).
    """
    v = np.asarray(x).astype(np.int64)
    low = v & -v  # the lowest set bit
    return np.minimum(np.log2(low.astype(np.float64)), float(max_bits))


def gemm_feature_arrays(
    q: dict[str, np.ndarray], devices: pl.DataFrame | DeviceIndex
) -> dict[str, np.ndarray]:
    """Every column of :func:`gemm_features` as a float64 array (numpy, whole columns at once),
    from the checked query columns of :func:`gemm_query_arrays`."""
    dev = _device_columns(q["device_id"], devices)
    code = _lookup(q["dtype"], _DTYPE_ROWS)
    table = _DTYPE_MATRIX[np.where(np.isnan(code), -1, code).astype(np.intp)]
    spec = {c: table[:, j] for j, c in enumerate(_DTYPE_TABLES)}
    m, n, k, b = q["m"], q["n"], q["k"], q["batch"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # linear shares its weight across the batch; gemm/bmm read one B per batch entry
        b_reads = np.where(q["op"] == "linear", 1.0, b)
        p32, p16 = dev["peak_fp32_gflops"], dev["peak_fp16_gflops"]
        fp16 = np.where(np.isnan(p16), p32, p16)
        fp32 = np.where(np.isnan(p32), p16 / 4, p32)
        peak = np.where(spec["uses_fp16_peak"] == 1.0, fp16, fp32) * spec["peak_mult"]
        flops = 2.0 * b * m * n * k
        nbytes = b * m * k * spec["a_bytes"] + b_reads * k * n * spec["b_bytes"] + b * m * n * spec["c_bytes"]
        bw = dev["mem_bw_gbs"]
        compute_ms = flops / (peak * 1e6)
        memory_ms = nbytes / (bw * 1e6)
        intensity = flops / nbytes
        ridge = peak / bw
        roofline_ms = np.fmax(compute_ms, memory_ms)  # a missing bandwidth leaves the compute bound
        sms = np.where(np.isnan(dev["cores"]), 80.0, dev["cores"])
        # linear runs as ONE (batch*m) x n GEMM (torch flattens the leading dims); gemm/bmm tile
        # each of the batch's m x n outputs separately
        is_linear = q["op"] == "linear"
        mi = np.where(is_linear, m * b, m).astype(np.int64)
        ni = n.astype(np.int64)
        bt = np.where(is_linear, 1.0, b)
        # every tile at once: (rows, tiles) arrays, column j for GEMM_TILES[j]
        m_tiles, n_tiles = _ceil_div(mi[:, None], _TILE_M), _ceil_div(ni[:, None], _TILE_N)
        tiles = (m_tiles * n_tiles).astype(np.float64) * bt[:, None]
        w = np.ceil(tiles / sms[:, None])
        log_w, wave_eff = np.log2(w), tiles / (w * sms[:, None])
        tile_eff = (mi * n)[:, None] / (m_tiles * _TILE_M * n_tiles * _TILE_N)
        waves: dict[str, np.ndarray] = {}
        for j, (w_name, eff_name, tile_name) in enumerate(_TILE_FEATURES):
            waves[w_name] = log_w[:, j]
            waves[eff_name] = wave_eff[:, j]
            waves[tile_name] = tile_eff[:, j]
        l2 = dev["l2_mb"]
        layout_code = _lookup(q["layout"], _LAYOUT_ROWS)
        cols = {
            "log2_m": np.log2(m),
            "log2_n": np.log2(n),
            "log2_k": np.log2(k),
            "log2_batch": np.log2(b),
            "log2_flops": np.log2(flops),
            "log2_bytes": np.log2(nbytes),
            "log2_intensity": np.log2(intensity),
            "log2_intensity_over_ridge": np.log2(intensity / ridge),
            "log2_roofline_ms": np.log2(roofline_ms),
            "log2_compute_ms": np.log2(compute_ms),
            "log2_memory_ms": np.log2(memory_ms),
            # the whole working set (all batch entries) against L2: timings repeated back to back
            # keep a working set that fits in L2 there (NeuSight times 25 calls in a row)
            "log2_footprint_over_l2": np.log2(nbytes / (np.where(np.isnan(l2), 4.0, l2) * 1e6)),
            "dtype_code": spec["dtype_code"],
            "op_code": _lookup(q["op"], _OP_ROWS),
            "layout_code": np.where(np.isnan(layout_code), -1.0, layout_code),
            "k_mod_64": np.mod(k, 64),
            "mn_aspect": np.log2(m / n),
            # n is contiguous in C (and in B for gemm/bmm), k in A (and in linear's weight)
            "align_n": (align_n := alignment_bits(n)),
            "align_k": (align_k := alignment_bits(k)),
            "align_nk": np.minimum(align_n, align_k),
            **{name: waves[name] for name in GEMM_SHAPE_FEATURES if name in waves},
            "log2_peak_gflops": np.log2(peak),
            "log2_mem_bw_gbs": np.log2(bw),
            "log2_ridge": np.log2(ridge),
            "cores": sms,
            "log2_l2_mb": np.log2(l2),
            "clock_mhz": dev["clock_mhz"],
            "roofline_ms": roofline_ms,
            "flops": flops,
            "bytes": nbytes,
        }
    return cols


def gemm_features(queries: pl.DataFrame, devices: pl.DataFrame) -> pl.DataFrame:
    """Features of GEMM ``queries`` on the devices described in ``devices`` (one row per query).

    Returns the columns of :data:`GEMM_SHAPE_FEATURES` and :data:`GEMM_DEVICE_FEATURES` plus
    ``roofline_ms`` (max of compute time at peak and memory time at full bandwidth), ``flops``
    and ``bytes``. Raises :class:`UnknownGemmDeviceError` naming the first unknown device.
    A descriptor a device does not state gives NaN in the features that need it.
    """
    return pl.DataFrame(gemm_feature_arrays(gemm_query_arrays(queries), devices))


def gemm_feature_matrix(
    queries: pl.DataFrame, devices: pl.DataFrame | DeviceIndex, *, device_features: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(X, roofline_ms) as float arrays; NaN marks descriptors a device does not state."""
    cols = gemm_feature_arrays(gemm_query_arrays(queries), devices)
    return stack_features(cols, gemm_feature_names(device_features=device_features)), cols["roofline_ms"]


def stack_features(cols: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """The ``(rows, len(names))`` float64 matrix of the named columns of :func:`gemm_feature_arrays`."""
    x = np.empty((len(cols["roofline_ms"]), len(names)))
    for j, c in enumerate(names):
        x[:, j] = cols[c]
    return x


def gemm_feature_names(*, device_features: bool = True) -> list[str]:
    return list(GEMM_SHAPE_FEATURES) + (list(GEMM_DEVICE_FEATURES) if device_features else [])
