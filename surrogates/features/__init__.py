"""The one feature pipeline shared by training and serving (GEMM and FPGA surrogates).

Everything here is vectorised polars/numpy: a frame of queries in, a frame of features out.
Models logged to MLflow call these functions inside ``predict``, so the service and the CLI
never compute features themselves.

GEMM (:func:`gemm_features`)
    Analytical quantities of one call ``C[m,n] = A[m,k] @ B[k,n]`` repeated ``batch`` times,
    joined with the device descriptors (``devices`` table: ``peak_fp32_gflops``,
    ``peak_fp16_gflops``, ``mem_bw_gbs``, ``cores`` = SMs, ``l2_mb``, ``clock_mhz``):
    flops, bytes moved, arithmetic intensity, roofline time (``roofline_ms``), ridge-point
    ratio, wave quantization for typical threadblock tiles, dtype/op/layout codes.
    ``roofline_ms`` lets a model predict the *ratio* of runtime to roofline, which a tree can
    carry to larger shapes and faster devices (a raw-time tree cannot extrapolate).

FPGA (:func:`hls4ml_features`, :func:`hlsyn_features`)
    hls4ml: flat vectors of per-layer information (sums over layers of multiplications,
    multiplications / reuse factor, parameters, precision bits, layer counts).
    HLSyn/HARP: pragma vectors per kernel (aggregates that generalise across kernels plus
    positional per-placeholder values) and kernel identity statistics of the program graph.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import polars as pl

from hwsurrogate.errors import UnknownDeviceError

# ---------------------------------------------------------------------------------------------
# GEMM
# ---------------------------------------------------------------------------------------------

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


def _gemm_query_arrays(queries: pl.DataFrame) -> dict[str, np.ndarray]:
    """Validated GEMM query columns as numpy arrays; ``ValueError`` naming the column and row.

    Dims come back as float64 holding whole numbers >= 1; strings as object arrays, an unstated
    layout as ``nn``. Works on whole columns, so a one-row query costs microseconds and a
    100k-row one milliseconds (polars' per-operation overhead would dominate the one-row case).
    """
    missing = [c for c in GEMM_QUERY_COLUMNS if c not in queries.columns and c not in ("layout", "batch")]
    if missing:
        raise ValueError(f"gemm queries miss column(s) {missing}; expected {list(GEMM_QUERY_COLUMNS)}")
    n_rows = queries.height
    out: dict[str, np.ndarray] = {}
    for col in ("m", "n", "k", "batch"):
        if col not in queries.columns:  # only batch may be absent
            out[col] = np.ones(n_rows)
            continue
        s = queries.get_column(col)
        try:
            values = (s if s.dtype.is_numeric() else s.cast(pl.Float64, strict=True)).to_numpy()
            x = np.asarray(values, dtype=np.float64)
        except Exception:
            raise ValueError(f"gemm queries: column {col!r} must be numeric, got {s.dtype}") from None
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(x) | (x < 1) | (x != np.floor(x))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"gemm queries: column {col!r} must be a positive integer; row {i} has {s[i]!r}")
        out[col] = x
    for col, allowed in (("dtype", GEMM_DTYPE_SPECS), ("op", GEMM_OP_CODES)):
        v = _strings(queries.get_column(col))
        bad = np.isnan(_lookup(v, dict.fromkeys(allowed, 0.0)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"gemm queries: column {col!r} must be one of {sorted(allowed)}; row {i} has {v[i]!r}"
            )
        out[col] = v
    dev = _strings(queries.get_column("device_id"))
    nulls = pd.isna(dev)
    if nulls.any():
        raise ValueError(f"gemm queries: column 'device_id' is null in row {int(np.flatnonzero(nulls)[0])}")
    out["device_id"] = dev
    # an unstated layout means row-major operands as numpy/torch matmul take them ("nn"),
    # in training rows and queries alike (only GPPerf states layouts; the others never do)
    if "layout" in queries.columns:
        layout = _strings(queries.get_column("layout"))
        out["layout"] = np.where(pd.isna(layout), DEFAULT_LAYOUT, layout)
    else:
        out["layout"] = np.full(n_rows, DEFAULT_LAYOUT, dtype=object)
    return out


def _strings(s: pl.Series) -> np.ndarray:
    """A column as an object array of str/None (casting non-string columns to strings)."""
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    return s.to_numpy().astype(object, copy=False)


def _lookup(values: np.ndarray, table: dict[str, float]) -> np.ndarray:
    """``table[v]`` for each value (NaN where absent or null), one look-up per distinct value."""
    codes, uniques = pd.factorize(values)  # hashing: microseconds for one row, ms for 100k
    mapped = np.array([table.get(u, np.nan) for u in uniques] + [np.nan], dtype=np.float64)
    return mapped[codes]  # code -1 (null) takes the trailing NaN


def check_gemm_queries(queries: pl.DataFrame) -> pl.DataFrame:
    """Validate and normalise GEMM queries; raise ``ValueError`` naming the column and value."""
    a = _gemm_query_arrays(queries)
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


def _device_columns(device_ids: np.ndarray, devices: pl.DataFrame) -> dict[str, np.ndarray]:
    """Each query's device descriptors (NaN where not stated); unknown devices raise by name."""
    table = device_table(devices)
    known = table["device_id"].to_list()
    where = {d: float(i) for i, d in enumerate(known)}
    rows = _lookup(device_ids, where)
    if np.isnan(rows).any():
        raise UnknownGemmDeviceError(str(sorted(set(device_ids[np.isnan(rows)]))[0]), known)
    rows = rows.astype(np.int64)
    return {c: table.get_column(c).to_numpy().astype(np.float64)[rows] for c in DEVICE_DESCRIPTORS}


def alignment_bits(x: np.ndarray, max_bits: int = GEMM_MAX_ALIGN_BITS) -> np.ndarray:
    """Trailing zero bits of each positive integer in ``x``, capped at ``max_bits`` (float64).

    ``alignment_bits(12) == 2`` (12 = 4 x 3). The contiguous (leading) dimension of an operand
    decides whether BLAS can use vectorised 16-byte loads (fp32: a multiple of 4 elements), which
    picks a different, much faster kernel family (NeuSight's P4: 0.2 vs 0.75 of peak).
    """
    v = np.asarray(x).astype(np.int64)
    low = v & -v  # the lowest set bit
    return np.minimum(np.log2(low.astype(np.float64)), float(max_bits))


def _gemm_feature_arrays(queries: pl.DataFrame, devices: pl.DataFrame) -> dict[str, np.ndarray]:
    """Every column of :func:`gemm_features` as a float64 array (numpy, whole columns at once)."""
    q = _gemm_query_arrays(queries)
    dev = _device_columns(q["device_id"], devices)
    spec = {c: _lookup(q["dtype"], t) for c, t in _DTYPE_TABLES.items()}
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
        waves: dict[str, np.ndarray] = {}
        for tm, tn in GEMM_TILES:
            tiles = (_ceil_div(mi, tm) * _ceil_div(ni, tn)).astype(np.float64) * bt
            w = np.ceil(tiles / sms)
            waves[f"waves_{tm}x{tn}"] = np.log2(w)
            waves[f"wave_eff_{tm}x{tn}"] = tiles / (w * sms)
            waves[f"tile_eff_{tm}x{tn}"] = mi * n / (_ceil_div(mi, tm) * tm * _ceil_div(ni, tn) * tn)
        l2 = dev["l2_mb"]
        layout_code = _lookup(q["layout"], {k_: float(v) for k_, v in GEMM_LAYOUT_CODES.items()})
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
            "op_code": _lookup(q["op"], {k_: float(v) for k_, v in GEMM_OP_CODES.items()}),
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
    return pl.DataFrame(_gemm_feature_arrays(queries, devices))


def gemm_feature_matrix(
    queries: pl.DataFrame, devices: pl.DataFrame, *, device_features: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(X, roofline_ms) as float arrays; NaN marks descriptors a device does not state."""
    cols = _gemm_feature_arrays(queries, devices)
    names = gemm_feature_names(device_features=device_features)
    return np.column_stack([cols[c] for c in names]), cols["roofline_ms"]


def gemm_feature_names(*, device_features: bool = True) -> list[str]:
    return list(GEMM_SHAPE_FEATURES) + (list(GEMM_DEVICE_FEATURES) if device_features else [])


# ---------------------------------------------------------------------------------------------
# FPGA: hls4ml models as flat vectors
# ---------------------------------------------------------------------------------------------

HLS4ML_QUERY_COLUMNS: tuple[str, ...] = ("model", "reuse_factor", "precision", "strategy", "io_type", "part")
HLS4ML_FEATURES: tuple[str, ...] = (
    "n_layers",
    "n_dense",
    "n_conv",
    "n_act",
    "n_pool",
    "log2_params",
    "log2_mults",
    "log2_mults_per_rf",
    "log2_max_layer_mults",
    "log2_max_layer_mults_per_rf",
    "log2_sum_mults_bits",
    "log2_mults_per_rf_bits2",
    "log2_reuse_factor",
    "precision_bits",
    "precision_int_bits",
    "strategy_resource",
    "io_stream",
    "log2_in_size",
    "log2_out_size",
    "log2_max_width",
    "part_code",
)
_FIXED_RE = re.compile(r"(?:ap_)?u?fixed<\s*(\d+)\s*,\s*(-?\d+)|(?:ap_)?u?int<\s*(\d+)\s*>")
HLS4ML_PARTS: dict[str, int] = {}


def parse_precision(text: object) -> tuple[float, float]:
    """Total and integer bits of ``ap_fixed<W,I>`` / ``fixed<W,I,...>`` / ``ap_int<W>`` (NaN if absent)."""
    if text is None:
        return float("nan"), float("nan")
    if isinstance(text, dict):
        text = text.get("default") or text.get("weight") or next(iter(text.values()), None)
    mt = _FIXED_RE.search(str(text))
    if not mt:
        return float("nan"), float("nan")
    if mt.group(1) is not None:
        return float(mt.group(1)), float(mt.group(2))
    return float(mt.group(3)), float(mt.group(3))


def _shape_size(shape: object) -> float:
    """Number of elements of a Keras shape like ``[null, 16]`` or ``[[null, 8, 8, 3]]``."""
    if isinstance(shape, list) and shape and isinstance(shape[0], list):
        shape = shape[0]
    if not isinstance(shape, list):
        return float("nan")
    dims = [d for d in shape if isinstance(d, (int, float))]
    return float(np.prod(dims)) if dims else float("nan")


def _dims(value: object) -> float | None:
    """A scalar size from ``16`` or ``[8, 8, 3]`` (product), else None."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return float(np.prod(value))
    return None


def _layer_summary(model_json: str | None, rf_default: float) -> list[float]:
    """Per-model sums over layers (one parse per distinct model string; callers deduplicate)."""
    try:
        layers = json.loads(model_json) if model_json else []
    except (TypeError, ValueError):
        raise ValueError(
            f"fpga-hls4ml queries: column 'model' is not valid JSON: {str(model_json)[:80]!r}"
        ) from None
    if isinstance(layers, dict):
        layers = layers.get("layers") or layers.get("model_config") or [layers]
    if not isinstance(layers, list):
        raise ValueError("fpga-hls4ml queries: column 'model' must be a JSON list of layers")
    n_dense = n_conv = n_act = n_pool = 0
    params = mults = mults_rf = max_m = max_mrf = mult_bits = mrf_b2 = 0.0
    sizes: list[float] = []
    all_bits: list[float] = []
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        cls = str(layer.get("class_name", layer.get("type", ""))).lower()
        d_in = _dims(layer.get("d_in", layer.get("input_size")))
        d_out = layer.get("neurons", layer.get("units"))
        if d_out is None:
            d_out = _dims(layer.get("d_out"))
        in_size = float(d_in) if isinstance(d_in, (int, float)) else _shape_size(layer.get("input_shape"))
        out_size = _shape_size(layer.get("output_shape"))
        if np.isnan(out_size) and isinstance(_dims(layer.get("d_out")), (int, float)):
            out_size = float(_dims(layer.get("d_out")))
        if np.isnan(out_size) and isinstance(d_out, (int, float)):
            out_size = float(d_out)
        rf = layer.get("reuse_factor", layer.get("rf", rf_default))
        rf = float(rf) if isinstance(rf, (int, float)) and rf > 0 else rf_default
        bits = layer.get("weight_bits", layer.get("precision_bits", layer.get("prec")))
        bits = float(bits) if isinstance(bits, (int, float)) else parse_precision(layer.get("precision"))[0]
        p = layer.get("parameters", layer.get("n_params"))
        lm = 0.0
        if "dense" in cls:
            n_dense += 1
            if isinstance(d_out, (int, float)) and not np.isnan(in_size):
                lm = in_size * float(d_out)
            elif isinstance(p, (int, float)):
                lm = float(p)
        elif "conv" in cls:
            n_conv += 1
            ks = layer.get("kernel_size", 1)
            ks_n = float(np.prod(ks)) if isinstance(ks, list) else float(ks or 1)
            filters = float(layer.get("filters", 1) or 1)
            in_shape = layer.get("input_shape")
            if isinstance(in_shape, list) and in_shape and isinstance(in_shape[0], list):
                in_shape = in_shape[0]
            ch = float(in_shape[-1]) if isinstance(in_shape, list) and in_shape and in_shape[-1] else 1.0
            if isinstance(layer.get("d_in"), list) and layer["d_in"]:
                ch = float(layer["d_in"][-1])
            out_pos = out_size / filters if out_size == out_size else 1.0
            lm = out_pos * ks_n * ch * filters
        elif "activation" in cls or "relu" in cls or "softmax" in cls:
            n_act += 1
        elif "pool" in cls:
            n_pool += 1
        if isinstance(p, (int, float)):
            params += float(p)
        elif lm:
            params += lm
        mults += lm
        mults_rf += lm / rf
        max_m = max(max_m, lm)
        max_mrf = max(max_mrf, lm / rf)
        if bits == bits:
            if lm:
                all_bits.append(bits)
            mult_bits += lm * bits
            mrf_b2 += lm / rf * (bits / 16) ** 2
        for s in (in_size, out_size):
            if s == s:
                sizes.append(s)
    first_in = sizes[0] if sizes else float("nan")
    last_out = sizes[-1] if sizes else float("nan")
    width = max(sizes) if sizes else float("nan")
    lg = np.log2
    return [
        float(len(layers)),
        float(n_dense),
        float(n_conv),
        float(n_act),
        float(n_pool),
        float(lg(params + 1)),
        float(lg(mults + 1)),
        float(lg(mults_rf + 1)),
        float(lg(max_m + 1)),
        float(lg(max_mrf + 1)),
        float(lg(mult_bits + 1)),
        float(lg(mrf_b2 + 1)),
        float(lg(first_in)) if first_in == first_in else float("nan"),
        float(lg(last_out)) if last_out == last_out else float("nan"),
        float(lg(width)) if width == width else float("nan"),
        float(np.mean(all_bits)) if all_bits else float("nan"),
    ]


def hls4ml_features(queries: pl.DataFrame, *, parts: Sequence[str] = ()) -> pl.DataFrame:
    """Flat per-model features of hls4ml queries (``model`` JSON layer list + configuration).

    A model string is parsed once however many rows share it (sweeps repeat models over reuse
    factors and precisions); everything else is columnar. ``parts`` fixes the part codes seen
    at training (an unseen part gets code -1).
    """
    missing = [c for c in HLS4ML_QUERY_COLUMNS if c not in queries.columns]
    if missing:
        raise ValueError(f"fpga-hls4ml queries miss column(s) {missing}")
    rf = queries["reuse_factor"].cast(pl.Float64, strict=False)
    if (rf.is_null() | (rf < 1)).any():
        i = int((rf.is_null() | (rf < 1)).arg_true()[0])
        raise ValueError(f"fpga-hls4ml queries: column 'reuse_factor' must be >= 1; row {i} has {rf[i]!r}")
    prec = queries["precision"].cast(pl.String)
    bits = prec.map_elements(lambda s: parse_precision(s)[0], return_dtype=pl.Float64)
    ibits = prec.map_elements(lambda s: parse_precision(s)[1], return_dtype=pl.Float64)
    keyed = pl.DataFrame({"model": queries["model"].cast(pl.String), "rf": rf})
    uniq = keyed.unique(maintain_order=True)
    summaries = np.array(
        [_layer_summary(mj, r) for mj, r in zip(uniq["model"].to_list(), uniq["rf"].to_list(), strict=True)],
        dtype=np.float64,
    ).reshape(-1, 16)
    names = [
        "n_layers", "n_dense", "n_conv", "n_act", "n_pool", "log2_params", "log2_mults",
        "log2_mults_per_rf", "log2_max_layer_mults", "log2_max_layer_mults_per_rf",
        "log2_sum_mults_bits", "log2_mults_per_rf_bits2", "log2_in_size", "log2_out_size", "log2_max_width",
        "layer_bits",
    ]  # fmt: skip
    per_model = uniq.hstack(pl.DataFrame(summaries, schema=names, orient="row"))
    feats = keyed.join(per_model, on=["model", "rf"], how="left", maintain_order="left")
    part_codes = {p: float(i) for i, p in enumerate(parts)}
    strategy = queries["strategy"].cast(pl.String).str.to_lowercase()
    io = queries["io_type"].cast(pl.String).str.to_lowercase()
    out = feats.with_columns(
        rf.log(2).alias("log2_reuse_factor"),
        pl.lit(bits).fill_nan(None).fill_null(pl.col("layer_bits")).alias("precision_bits"),
        ibits.alias("precision_int_bits"),
        (strategy == "resource").cast(pl.Float64).fill_null(float("nan")).alias("strategy_resource"),
        io.str.contains("stream").cast(pl.Float64).fill_null(float("nan")).alias("io_stream"),
        queries["part"]
        .cast(pl.String)
        .replace_strict(part_codes, default=-1.0, return_dtype=pl.Float64)
        .alias("part_code"),
    )
    # mults/RF times precision when the layer list carries no per-layer bits
    out = out.with_columns(
        pl.when(pl.col("log2_sum_mults_bits") == 0)
        .then(((pl.lit(2.0).pow(pl.col("log2_mults"))) * pl.col("precision_bits") + 1).log(2))
        .otherwise(pl.col("log2_sum_mults_bits"))
        .alias("log2_sum_mults_bits"),
        pl.when(pl.col("log2_mults_per_rf_bits2") == 0)
        .then(
            (
                (pl.lit(2.0).pow(pl.col("log2_mults_per_rf")) - 1) * (pl.col("precision_bits") / 16) ** 2 + 1
            ).log(2)
        )
        .otherwise(pl.col("log2_mults_per_rf_bits2"))
        .alias("log2_mults_per_rf_bits2"),
    )
    return out.select(HLS4ML_FEATURES)


# ---------------------------------------------------------------------------------------------
# FPGA: HLSyn / HARP designs as pragma vectors
# ---------------------------------------------------------------------------------------------

HLSYN_QUERY_COLUMNS: tuple[str, ...] = ("kernel", "pragmas", "tool")
TOOL_CODES: dict[str, float] = {"vivado_hls": 0.0, "v18": 0.0, "vitis_hls": 1.0, "v20": 1.0, "v21": 2.0}
#: positional placeholders kept as individual features (``__PARA__L0`` ... ``__PIPE__L7``).
HLSYN_N_POSITIONS = 8
HLSYN_AGG_FEATURES: tuple[str, ...] = (
    "n_para",
    "n_pipe",
    "n_tile",
    "log2_para_sum",
    "log2_para_max",
    "log2_para_prod",
    "log2_tile_prod",
    "n_pipe_flatten",
    "n_pipe_off",
    "n_pipe_auto",
    "n_para_gt1",
    "log2_para_prod_pipelined",
)
HLSYN_POS_FEATURES: tuple[str, ...] = tuple(
    f"{kind}_L{i}" for kind in ("para", "pipe", "tile") for i in range(HLSYN_N_POSITIONS)
)
_PRAGMA_RE = r"^__(PARA|PIPE|TILE)__L(\d+)$"


def _pragma_long(queries: pl.DataFrame) -> pl.DataFrame:
    """One row per (query row, placeholder, value) from the ``pragmas`` JSON column."""
    pr = queries["pragmas"].cast(pl.String)
    if pr.is_null().any():
        raise ValueError(
            f"fpga-hlsyn queries: column 'pragmas' is null in row {int(pr.is_null().arg_true()[0])}"
        )
    keys: list[list[str]] = []
    vals: list[list[str]] = []
    for i, text in enumerate(pr.to_list()):  # json parsing is per string; the rest is columnar
        try:
            d = json.loads(text)
        except ValueError:
            raise ValueError(
                f"fpga-hlsyn queries: column 'pragmas' row {i} is not valid JSON: {text[:80]!r}"
            ) from None
        if not isinstance(d, dict):
            raise ValueError(f"fpga-hlsyn queries: column 'pragmas' row {i} must be a JSON object")
        keys.append(list(d))
        vals.append(["" if v is None else str(v) for v in d.values()])
    long = pl.DataFrame({"_row": np.arange(len(keys)), "key": keys, "value": vals}).explode(["key", "value"])
    parts = pl.col("key").str.extract_groups(_PRAGMA_RE)
    long = long.with_columns(
        parts.struct.field("1").str.to_lowercase().alias("kind"),
        parts.struct.field("2").cast(pl.Int64, strict=False).alias("pos"),
        pl.col("value").cast(pl.Float64, strict=False).alias("num"),
    )
    return long


def hlsyn_features(
    queries: pl.DataFrame, graph_stats: pl.DataFrame | None = None, graphs: dict | None = None
) -> pl.DataFrame:
    """Pragma-vector features of HLSyn/HARP designs, plus kernel graph statistics when given.

    ``graph_stats`` is one row per ``kernel`` with numeric columns (node/edge/type counts of the
    program graph); kernels missing from it get NaN (trees handle missing values).
    ``graphs`` (kernel -> :class:`.hlsyn_graphs.KernelGraph`) adds the analytical loop-nest
    features of :func:`.hlsyn_graphs.loop_features` (trip counts x parallel factors x body ops);
    a design of a kernel without a graph gets NaN there.
    """
    missing = [c for c in HLSYN_QUERY_COLUMNS if c not in queries.columns]
    if missing:
        raise ValueError(f"fpga-hlsyn queries miss column(s) {missing}")
    n = queries.height
    long = _pragma_long(queries)
    para = long.filter(pl.col("kind") == "para")
    pipe = long.filter(pl.col("kind") == "pipe")
    tile = long.filter(pl.col("kind") == "tile")
    base = pl.DataFrame({"_row": np.arange(n)})
    agg_para = para.group_by("_row").agg(
        pl.len().alias("n_para"),
        pl.col("num").sum().log(2).alias("log2_para_sum"),
        pl.col("num").max().log(2).alias("log2_para_max"),
        pl.col("num").log(2).sum().alias("log2_para_prod"),
        (pl.col("num") > 1).sum().alias("n_para_gt1"),
    )
    agg_pipe = pipe.group_by("_row").agg(
        pl.len().alias("n_pipe"),
        (pl.col("value") == "flatten").sum().alias("n_pipe_flatten"),
        (pl.col("value") == "off").sum().alias("n_pipe_off"),
        (pl.col("value") == "").sum().alias("n_pipe_auto"),
    )
    agg_tile = tile.group_by("_row").agg(
        pl.len().alias("n_tile"), pl.col("num").log(2).sum().alias("log2_tile_prod")
    )
    # parallel factors on loops that are also pipelined (same L index, pipe not 'off')
    piped = pipe.filter(pl.col("value") != "off").select("_row", "pos")
    pp = (
        para.join(piped, on=["_row", "pos"], how="inner")
        .group_by("_row")
        .agg(pl.col("num").log(2).sum().alias("log2_para_prod_pipelined"))
    )
    pipe_code = pipe.with_columns(
        pl.col("value").replace_strict({"off": 0.0, "": 1.0, "flatten": 2.0}, default=1.0).alias("num")
    )
    pos = (
        pl.concat([para, pipe_code, tile])
        .filter(pl.col("pos") < HLSYN_N_POSITIONS)
        .with_columns(
            pl.concat_str(pl.col("kind"), pl.lit("_L"), pl.col("pos").cast(pl.String)).alias("name"),
            pl.when(pl.col("kind") == "pipe").then(pl.col("num")).otherwise(pl.col("num").log(2)).alias("v"),
        )
        .select("_row", "name", "v")
        .unique(["_row", "name"], keep="first")
    )
    wide = pos.pivot(on="name", index="_row", values="v") if pos.height else pl.DataFrame({"_row": []})
    out = base
    for part in (agg_para, agg_pipe, agg_tile, pp, wide):
        out = out.join(part.with_columns(pl.col("_row").cast(pl.Int64)), on="_row", how="left")
    for c in HLSYN_AGG_FEATURES + HLSYN_POS_FEATURES:
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    counts = ["n_para", "n_pipe", "n_tile", "n_pipe_flatten", "n_pipe_off", "n_pipe_auto", "n_para_gt1"]
    out = out.sort("_row").with_columns(
        *(pl.col(c).cast(pl.Float64).fill_null(0.0) for c in counts),
        *(pl.col(c).cast(pl.Float64).fill_null(0.0) for c in ("log2_para_prod", "log2_tile_prod",
                                                               "log2_para_prod_pipelined")),
        pl.lit(queries["tool"].cast(pl.String)).alias("_tool"),
    )  # fmt: skip
    out = out.with_columns(pl.col("_tool").replace_strict(TOOL_CODES, default=-1.0).alias("tool_code"))
    cols = [*HLSYN_AGG_FEATURES, *HLSYN_POS_FEATURES, "tool_code"]
    feats = out.select(pl.col(c).cast(pl.Float64) for c in cols)
    if graph_stats is not None and graph_stats.height:
        stat_cols = [c for c in graph_stats.columns if c != "kernel" and graph_stats[c].dtype.is_numeric()]
        g = graph_stats.select(
            pl.col("kernel").cast(pl.String), *(pl.col(c).cast(pl.Float64) for c in stat_cols)
        )
        joined = (
            pl.DataFrame({"kernel": queries["kernel"].cast(pl.String)})
            .with_row_index("_r")
            .join(g.unique("kernel"), on="kernel", how="left")
            .sort("_r")
        )
        feats = feats.hstack(joined.select((pl.col(c) + 1).log(2).alias(f"g_{c}") for c in stat_cols))
    if graphs is not None:
        feats = feats.hstack(_hlsyn_loop_frame(queries, graphs))
    return feats


def _hlsyn_loop_frame(queries: pl.DataFrame, graphs: dict) -> pl.DataFrame:
    """:func:`.hlsyn_graphs.loop_features` of every row, computed per kernel (NaN without a graph)."""
    from hwsurrogate.surrogates.features.program_graphs import LOOP_FEATURES, loop_features, pragma_values

    out = np.full((queries.height, len(LOOP_FEATURES)), np.nan)
    kernels = queries["kernel"].cast(pl.String)
    idx = pl.DataFrame({"kernel": kernels}).with_row_index("_r").group_by("kernel").agg("_r")
    for kernel, rows in idx.iter_rows():
        kg = graphs.get(kernel)
        if kg is None:
            continue
        r = np.asarray(rows, dtype=np.int64)
        out[r] = loop_features(kg, pragma_values(kg, queries["pragmas"].cast(pl.String).gather(r)))
    return pl.DataFrame(out, schema=list(LOOP_FEATURES), orient="row")


#: node opcodes whose counts describe a kernel's work (loops ~ icmp, memory, arithmetic).
GRAPH_OPCODES: tuple[str, ...] = (
    "icmp",
    "load",
    "store",
    "fmul",
    "fadd",
    "mul",
    "add",
    "br",
    "call",
    "getelementptr",
)


def program_graph_stats(graphs: pl.DataFrame) -> pl.DataFrame:
    """Kernel identity features from the ``program_graphs`` table, one row per ``kernel``.

    Node/edge/pragma counts, node-type and edge-flow counts and opcode counts (``icmp`` ~ loops);
    computed once at training and baked into the model.
    """
    if graphs.height == 0:
        return pl.DataFrame({"kernel": []}, schema={"kernel": pl.String})
    node_dtype = pl.List(pl.Struct({"type": pl.Int64, "text": pl.String}))
    nodes = (
        graphs.select("kernel", pl.col("nodes").str.json_decode(node_dtype).alias("node"))
        .explode("node")
        .unnest("node")
    )
    by_type = nodes.group_by("kernel").agg(
        *((pl.col("type") == t).sum().cast(pl.Float64).alias(f"n_type{t}") for t in range(4)),
        *((pl.col("text") == op).sum().cast(pl.Float64).alias(f"n_{op}") for op in GRAPH_OPCODES),
    )
    edges = graphs.select(
        "kernel", pl.col("edges").str.json_decode(pl.List(pl.List(pl.Int64))).alias("e")
    ).explode("e")
    by_flow = (
        edges.with_columns(pl.col("e").list.get(2, null_on_oob=True).alias("flow"))
        .group_by("kernel")
        .agg(*((pl.col("flow") == f).sum().cast(pl.Float64).alias(f"n_flow{f}") for f in range(4)))
    )
    base = graphs.select(
        "kernel",
        pl.col("n_nodes").cast(pl.Float64),
        pl.col("n_edges").cast(pl.Float64),
        pl.col("n_pragma_nodes").cast(pl.Float64),
    ).unique("kernel", keep="first")
    return base.join(by_type, on="kernel", how="left").join(by_flow, on="kernel", how="left").sort("kernel")


#: HLS-stage power features (directives + Vivado HLS report): PowerGear's information stage.
POWERGEAR_HLS_FEATURES: tuple[str, ...] = (
    "io_buffer_partition", "buffer_partition_d1d2", "n_pipelined_loops", "log2_max_unroll", "n_loops",
    "log2_unroll_prod", "log2_unroll_sum", "n_outer_pipelined", "log2_pipelined_unroll", "hls_lut", "hls_ff",
    "hls_dsp", "hls_bram", "c_num_arith", "c_num_logic", "rtl_num_arith", "rtl_num_logic", "clk_estimated_ns",
    "in_port_bits", "out_port_bits", "log_hls_lut", "log_hls_ff", "log_hls_dsp", "log_hls_bram",
    "log_hls_switched", "arith_parallelism", "dsp_per_c_op", "nest_speed_spread", "nest_activity",
    "slow_nest_time_share",
)  # fmt: skip
#: Post-route features (Vivado implementation report, incl. Vivado's own dynamic-power estimate).
POWERGEAR_ROUTE_FEATURES: tuple[str, ...] = (
    "route_lut", "route_logic_lut", "route_lutram", "route_srl", "route_ff", "route_dsp", "route_bram",
    "route_freq_mhz", "log_route_lut", "log_route_ff", "log_route_dsp", "log_route_bram",
    "log_route_switched", "log_vivado_dynamic_mw", "route_to_hls_ff", "route_to_hls_lut",
    "log_vivado_per_switched",
)  # fmt: skip
#: Vivado-report-style dynamic-power weights per resource (mW per unit at 100 MHz, 12.5% toggle);
#: only the *relative* sizes matter (the feature is a log-sum): a DSP48 ~ 10 LUTs, a BRAM18 ~ 20.
_SWITCHED_WEIGHTS: dict[str, float] = {"lut": 1.0, "ff": 0.5, "dsp": 10.0, "bram": 20.0}
POWERGEAR_FEATURES: tuple[str, ...] = POWERGEAR_HLS_FEATURES


def _require(frame: pl.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame misses column(s) {missing}")


def _switched(lut: pl.Expr, ff: pl.Expr, dsp: pl.Expr, bram: pl.Expr) -> pl.Expr:
    """log of the resource-weighted 'switched capacitance' proxy sum(w_r * count_r)."""
    w = _SWITCHED_WEIGHTS
    return (w["lut"] * lut + w["ff"] * ff + w["dsp"] * dsp + w["bram"] * bram + 1.0).log()


#: a-priori log2 speed-ups of a loop nest (no trip counts or latencies in the data): pipelining
#: a float loop body (~8-cycle latency -> II 1) ~ 2**3; each loop fully unrolled below a
#: pipelined one (PolyBench trip counts of ~32) ~ 2**5.
NEST_PIPELINE_LOG2_SPEEDUP = 3.0
NEST_FULL_UNROLL_LOG2_SPEEDUP = 5.0


def _loop_features(pragmas: pl.DataFrame) -> pl.DataFrame:
    """Per-design aggregates of the loop directives (``_r``-indexed ``pragmas`` JSON).

    ``{"l1": [{"pipeline":0,"unroll":1}, ...], ...}``: one list per loop nest, outer loop first.
    Vivado HLS fully unrolls every loop inside a pipelined one, so a pipelined loop that is not
    the innermost of its nest (``n_outer_pipelined``) multiplies the hardware by the inner trip
    counts; ``log2_pipelined_unroll`` sums log2(unroll) over the pipelined loops.

    Activity (duty cycle): the nests of a PolyBench kernel run one after another, each on its
    own hardware, so a nest's hardware switches only while that nest runs. With a nest's
    log2 speed ``s`` = sum log2(unroll) + 3 if pipelined + 5 per loop unrolled below the
    pipelined one, its time ~ 2**-s and its hardware ~ 2**s: ``nest_activity`` =
    N / (sum 2**s * sum 2**-s) is the time-averaged fraction of the parallel hardware that is
    busy (1/N for balanced nests, -> 0 when a slow nest idles fast ones); ``nest_speed_spread``
    = max s - min s and ``slow_nest_time_share`` = the slowest nest's share of the run time.
    """
    obj = pl.Struct({"pipeline": pl.Int64, "unroll": pl.Int64})
    nests = (
        pragmas.with_columns(pl.col("pragmas").str.extract_all(r"\[[^\[\]]*\]").alias("nest"))
        .explode("nest")
        .with_columns(pl.int_range(pl.len()).over("_r").alias("nest_idx"))
        .with_columns(pl.col("nest").str.extract_all(r"\{[^{}]*\}").alias("loop"))
        .with_columns(pl.col("loop").list.len().alias("depth"))
        .explode("loop")
        .with_columns(
            (pl.int_range(pl.len()).over("_r", "nest_idx") + 1).alias("level"),
            pl.col("loop").str.json_decode(obj).alias("l"),
        )
        .unnest("l")
    )
    if nests["unroll"].is_null().any() or nests["pipeline"].is_null().any():
        bad = nests.filter(pl.col("unroll").is_null() | pl.col("pipeline").is_null()).row(0, named=True)
        raise ValueError(f"pragmas: loop entry {bad['loop']!r} lacks 'pipeline' or 'unroll'")
    if (nests["unroll"] < 1).any():
        raise ValueError("pragmas: loop 'unroll' factors must be >= 1")
    u = pl.col("unroll").cast(pl.Float64)
    piped = pl.col("pipeline") > 0
    first_pipe = pl.col("level").filter(piped).min()
    speed = (
        nests.group_by("_r", "nest_idx")
        .agg(
            u.log(2).sum().alias("s_unroll"),
            first_pipe.alias("pipe_level"),
            pl.col("depth").first(),
        )
        .with_columns(
            (
                pl.col("s_unroll")
                + pl.when(pl.col("pipe_level").is_not_null())
                .then(NEST_PIPELINE_LOG2_SPEEDUP + NEST_FULL_UNROLL_LOG2_SPEEDUP * (pl.col("depth") - pl.col("pipe_level")))
                .otherwise(0.0)
            ).alias("s")
        )
        .group_by("_r")
        .agg(
            (pl.col("s").max() - pl.col("s").min()).alias("nest_speed_spread"),
            (pl.len() / ((2.0 ** pl.col("s")).sum() * (2.0 ** -pl.col("s")).sum())).alias("nest_activity"),
            ((2.0 ** -pl.col("s")).max() / (2.0 ** -pl.col("s")).sum()).alias("slow_nest_time_share"),
        )
    )  # fmt: skip
    loops = nests.group_by("_r").agg(
        pl.len().cast(pl.Float64).alias("n_loops"),
        u.log(2).sum().alias("log2_unroll_prod"),
        u.sum().log(2).alias("log2_unroll_sum"),
        (piped & (pl.col("level") < pl.col("depth"))).sum().cast(pl.Float64).alias("n_outer_pipelined"),
        u.log(2).filter(piped).sum().alias("log2_pipelined_unroll"),
    )
    return loops.join(speed, on="_r", how="left")


def _join_all(out: pl.DataFrame, rows: pl.DataFrame, name: str) -> pl.DataFrame:
    """Left-join a per-design report; every design must have one (else the features are wrong)."""
    joined = out.join(rows.with_columns(pl.lit(True).alias("_hit")), on="design_id", how="left")
    if joined["_hit"].null_count():
        miss = joined.filter(pl.col("_hit").is_null())["design_id"]
        raise ValueError(f"{name}: no report row for {miss.len()} design(s), e.g. design_id {miss[0]!r}")
    return joined.drop("_hit")


def _port_bits(col: str) -> pl.Expr:
    """``"2x32"`` (ports x bits) -> total bits."""
    parts = pl.col(col).str.extract_groups(r"^(\d+)x(\d+)$")
    return (parts.struct.field("1").cast(pl.Float64) * parts.struct.field("2").cast(pl.Float64)).alias(col)


def powergear_features(
    designs: pl.DataFrame, hls: pl.DataFrame, route: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Power features of HLSDataset/PowerGear designs (one row per design, in ``designs`` order).

    ``designs`` holds one row per design (``design_id``, ``pragmas`` JSON of loop nests with
    pipeline/unroll, ``extra`` with the partition factors). ``hls`` holds the Vivado HLS report
    rows of the same designs (``lut/ff/dsp/bram`` estimates; operator counts, ports and the
    estimated clock in ``extra``): :data:`POWERGEAR_HLS_FEATURES`, PowerGear's early stage.
    With ``route`` (post-route rows: ``lut/ff/dsp/bram``, ``power_dynamic_w`` = Vivado's
    vectorless estimate, LUTRAM/SRL/frequency in ``extra``) the
    :data:`POWERGEAR_ROUTE_FEATURES` are appended; those exist only after implementation.
    A design absent from ``hls`` (or ``route``) gets null features.
    """
    _require(designs, ("design_id", "pragmas", "extra"), "designs")
    _require(hls, ("design_id", "lut", "ff", "dsp", "bram", "extra"), "hls")
    d = designs.select("design_id", "pragmas", "extra").with_row_index("_r")
    if d["pragmas"].null_count():
        i = int(d["pragmas"].is_null().arg_true()[0])
        raise ValueError(f"designs: 'pragmas' is empty for design {d['design_id'][i]!r}")
    ex = pl.col("extra")
    base = d.with_columns(
        ex.str.json_path_match("$.io_buffer_partition").cast(pl.Float64).alias("io_buffer_partition"),
        ex.str.json_path_match("$.buffer_partition_d1d2").cast(pl.Float64).alias("buffer_partition_d1d2"),
        ex.str.json_path_match("$.n_pipelined_loops").cast(pl.Float64).alias("n_pipelined_loops"),
        ex.str.json_path_match("$.max_unroll").cast(pl.Float64).log(2).alias("log2_max_unroll"),
    )
    h = (
        hls.select(
            pl.col("design_id"),
            *(pl.col(r).cast(pl.Float64).alias(f"hls_{r}") for r in ("lut", "ff", "dsp", "bram")),
            *(ex.str.json_path_match(f"$.{c}").cast(pl.Float64).alias(c) for c in
              ("c_num_arith", "c_num_logic", "rtl_num_arith", "rtl_num_logic", "clk_estimated_ns")),
            ex.str.json_path_match("$.data_input_port").alias("data_input_port"),
            ex.str.json_path_match("$.data_output_port").alias("data_output_port"),
        )
        .unique("design_id", keep="first")
        .with_columns(
            _port_bits("data_input_port").alias("in_port_bits"),
            _port_bits("data_output_port").alias("out_port_bits"),
            *((pl.col(f"hls_{r}") + 1).log().alias(f"log_hls_{r}") for r in ("lut", "ff", "dsp", "bram")),
            _switched(*(pl.col(f"hls_{r}") for r in ("lut", "ff", "dsp", "bram"))).alias("log_hls_switched"),
            # operators HLS instantiated per operator in the C source: the directives' parallelism
            (pl.col("rtl_num_arith") / pl.col("c_num_arith").clip(1)).alias("arith_parallelism"),
            (pl.col("hls_dsp") / pl.col("c_num_arith").clip(1)).alias("dsp_per_c_op"),
        )
    )  # fmt: skip
    out = base.join(_loop_features(d.select("_r", "pragmas")), on="_r", how="left")
    out = _join_all(out, h, "hls")
    cols = list(POWERGEAR_HLS_FEATURES)
    if route is not None:
        _require(route, ("design_id", "lut", "ff", "dsp", "bram", "power_dynamic_w", "extra"), "route")
        r = (
            route.select(
                pl.col("design_id"),
                *(pl.col(c).cast(pl.Float64).alias(f"route_{c}") for c in ("lut", "ff", "dsp", "bram")),
                *(ex.str.json_path_match(f"$.{k}").cast(pl.Float64).alias(f"route_{v}") for k, v in
                  (("logic_luts", "logic_lut"), ("lutrams", "lutram"), ("srls", "srl"), ("freq_mhz", "freq_mhz"))),
                (pl.col("power_dynamic_w").cast(pl.Float64) * 1000).alias("vivado_dynamic_mw"),
            )
            .unique("design_id", keep="first")
            .with_columns(
                *((pl.col(f"route_{c}") + 1).log().alias(f"log_route_{c}") for c in ("lut", "ff", "dsp", "bram")),
                _switched(*(pl.col(f"route_{c}") for c in ("lut", "ff", "dsp", "bram"))).alias("log_route_switched"),
                pl.col("vivado_dynamic_mw").log().alias("log_vivado_dynamic_mw"),
            )
        )  # fmt: skip
        out = _join_all(out, r, "route")
        out = out.with_columns(
            (pl.col("route_ff") / pl.col("hls_ff").clip(1)).alias("route_to_hls_ff"),
            (pl.col("route_lut") / pl.col("hls_lut").clip(1)).alias("route_to_hls_lut"),
            # Vivado's estimate per unit of switched resources: its activity/routing assumption
            (pl.col("log_vivado_dynamic_mw") - pl.col("log_route_switched")).alias("log_vivado_per_switched"),
        )
        cols += POWERGEAR_ROUTE_FEATURES
    return out.sort("_r").select(pl.col(c).cast(pl.Float64) for c in cols)
