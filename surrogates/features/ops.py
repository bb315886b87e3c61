"""Operator features: non-GEMM operator calls of an operator table on a described device.

Input is an operator table (:mod:`hwsurrogate.datasets.optable`) plus per-row device descriptor
arrays (:func:`device_arrays`: peak FP32 GFLOP/s, memory bandwidth, SMs/cores, L2, clock).
Output is a feature matrix and the roofline time of every row,
``max(flops / peak, bytes / bandwidth)``, so a model can fit the *ratio* of latency to the
roofline (NeuSight's idea: predict utilisation, not milliseconds), which carries over to faster
devices than the training ones. GEMM kinds (linear, bmm) use :mod:`.gemm` instead.

Two groups, each with its own feature list:

- ``vector``: elementwise, activation, softmax, layernorm, reduction, copy, embedding
  (``rows x cols`` with ``inputs`` operands);
- ``conv``: conv2d (with its implicit-GEMM dimensions and threadblock waves).

Everything is vectorised numpy over whole columns.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from hwsurrogate.datasets.optable import DTYPE_BYTES, OP_KINDS, VECTOR_KINDS, derive_flops_bytes
from hwsurrogate.surrogates.features.gemm import DEVICE_DESCRIPTORS, alignment_bits, device_table

__all__ = [
    "CONV_FEATURES",
    "OPS_FEATURE_VERSION",
    "POWER_DESCRIPTOR",
    "VECTOR_FEATURES",
    "VECTOR_GROUP_KINDS",
    "conv_features",
    "device_arrays",
    "describe_device",
    "op_code",
    "power_limits",
    "vector_features",
]

#: bumped whenever a feature's definition changes; a fitted model refuses another version
#: (2: pooling, batch_norm and depthwise_conv2d got op codes of their own)
OPS_FEATURE_VERSION = 2
VECTOR_GROUP_KINDS = frozenset(VECTOR_KINDS | {"embedding"})
KIND_CODES: dict[str, int] = {k: i for i, k in enumerate(sorted(OP_KINDS))}
#: specific operators with a code of their own; any other op gets -1 (the tree falls back on kind)
KNOWN_OPS: tuple[str, ...] = (
    "add", "sub", "mul", "div", "truediv", "pow", "where", "masked_fill", "dropout", "eq", "ne", "lt",
    "gt", "le", "ge", "neg", "rsqrt", "sqrt", "exp", "log", "max", "min", "relu", "gelu", "tanh",
    "sigmoid", "silu", "softmax", "layer_norm", "mean", "sum", "cumsum", "amax", "argmax",
    "count_nonzero", "logsumexp", "contiguous", "to", "clone", "reshape", "cat", "embedding", "conv2d",
    # appended (v2), so the codes above do not move: CPU CNN ops whose cost differs from their kind's
    # other ops by 10x (a max pool reads every window; an adaptive average pool to 1x1 is one pass)
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "batch_norm", "depthwise_conv2d",
)  # fmt: skip
_OP_CODES = {o: float(i) for i, o in enumerate(KNOWN_OPS)}
DEVICE_FEATURES: tuple[str, ...] = (
    "log2_peak_gflops",
    "log2_mem_bw_gbs",
    "log2_ridge",
    "cores",
    "log2_l2_mb",
)
_COMMON: tuple[str, ...] = (
    "kind_code", "op_code", "backward", "dtype_bytes",
    "log2_flops", "log2_bytes", "log2_compute_ms", "log2_memory_ms", "log2_roofline_ms",
    "log2_intensity_over_ridge", "log2_bytes_over_l2",
)  # fmt: skip
VECTOR_FEATURES: tuple[str, ...] = (
    *_COMMON, "inputs", "log2_rows", "log2_cols", "log2_numel", "log2_waves", "align_cols", "log2_rows_per_sm",
)  # fmt: skip
CONV_FEATURES: tuple[str, ...] = (
    *_COMMON, "log2_batch", "log2_in_channels", "log2_out_channels", "kernel_size", "log2_input_size",
    "stride", "padding", "log2_out_size", "log2_gemm_m", "log2_gemm_n", "log2_gemm_k", "log2_waves_128",
    "wave_eff_128", "align_in_channels",
)  # fmt: skip
#: the board power limit (W) of a device: a ``devices`` row's ``power_limit_w`` column or its
#: ``descriptors.power_limit_w``. Not a tree feature: the operator model's GEMM utilisation ceiling
#: reads it (:class:`~hwsurrogate.surrogates.models.ops.OperatorLatencyModel`)
POWER_DESCRIPTOR = "power_limit_w"
#: threads one SM keeps resident (used to express a tensor's size in waves of the whole device)
_THREADS_PER_SM = 2048.0


def op_code(ops: pl.Series) -> np.ndarray:
    """Stable numeric code of each specific operator (-1 for ops outside :data:`KNOWN_OPS`)."""
    return ops.cast(pl.String).replace_strict(_OP_CODES, default=-1.0, return_dtype=pl.Float64).to_numpy()


def describe_device(device: Mapping[str, object]) -> dict[str, float]:
    """The descriptor values of one device (a ``devices`` row as a dict); NaN where not stated.

    A CPU without a published peak uses the fingerprint collector's measured GEMM GFLOP/s, as
    :func:`~.gemm.device_table` does. Raises ``ValueError`` naming the device and the field when the
    roofline needs a value it lacks.
    """
    if "device_id" not in device:
        raise ValueError("device descriptor needs a 'device_id'")
    keep = {k: device.get(k) for k in ("device_id", *DEVICE_DESCRIPTORS) if k in device}
    if device.get("descriptors") is not None:  # None states nothing (a null column has no JSON to read)
        keep["descriptors"] = device["descriptors"]
    row = device_table(pl.DataFrame([keep], infer_schema_length=None)).row(0, named=True)
    out = {c: float("nan") if row[c] is None else float(row[c]) for c in DEVICE_DESCRIPTORS}
    stated = {
        k: device[k] for k in ("device_id", POWER_DESCRIPTOR, "descriptors") if device.get(k) is not None
    }
    out[POWER_DESCRIPTOR] = power_limits(pl.DataFrame([stated], infer_schema_length=None))[
        str(device["device_id"])
    ]
    for field in ("peak_fp32_gflops", "mem_bw_gbs"):
        if not np.isfinite(out[field]) or out[field] <= 0:
            raise ValueError(
                f"device {device['device_id']!r}: descriptor {field!r} is missing or not positive; the "
                "operator surrogates need peak_fp32_gflops and mem_bw_gbs (or a fingerprint's measured GEMM GFLOP/s)"
            )
    return out


def power_limits(devices: pl.DataFrame) -> dict[str, float]:
    """``device_id -> board power limit (W)`` of a ``devices`` frame; NaN where not stated.

    The ``power_limit_w`` column wins over ``descriptors.power_limit_w``; null or NaN states
    nothing. Raises ``ValueError`` naming the device when a stated limit is not a positive number.
    """
    if "device_id" not in devices.columns:
        raise ValueError("devices table needs a 'device_id' column")
    raw = (
        pl.col(POWER_DESCRIPTOR).cast(pl.String)
        if POWER_DESCRIPTOR in devices.columns
        else pl.lit(None, pl.String)
    )
    if "descriptors" in devices.columns:
        raw = pl.coalesce(raw, pl.col("descriptors").str.json_path_match(f"$.{POWER_DESCRIPTOR}"))
    table = devices.select(pl.col("device_id").cast(pl.String), raw.alias("raw")).unique(
        "device_id", keep="last"
    )
    table = table.with_columns(pl.col("raw").cast(pl.Float64, strict=False).alias("w"))
    out: dict[str, float] = {}
    for dev, text, w in table.iter_rows():
        if w is not None and np.isnan(w):  # a NaN (pandas' missing value) states nothing
            text = w = None
        if text is not None and (w is None or not (np.isfinite(w) and w > 0)):
            raise ValueError(
                f"device {dev!r}: descriptor {POWER_DESCRIPTOR!r} must be a positive number of W, got {text!r}"
            )
        out[dev] = float("nan") if w is None else float(w)
    return out


def device_arrays(device_ids: pl.Series, devices: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per-row descriptor arrays for ``device_ids`` from a ``devices`` table (KeyError names an unknown id)."""
    table = device_table(devices)
    where = {d: i for i, d in enumerate(table["device_id"].to_list())}
    ids = device_ids.cast(pl.String).to_list()
    unknown = sorted({d for d in ids if d not in where})
    if unknown:
        raise KeyError(f"no descriptors for device(s) {unknown[:5]}")
    rows = np.array([where[d] for d in ids], dtype=np.int64)
    return {c: table[c].to_numpy().astype(np.float64)[rows] for c in DEVICE_DESCRIPTORS}


def _broadcast(dev: Mapping[str, float] | Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {c: np.broadcast_to(np.asarray(dev[c], dtype=np.float64), (n,)).copy() for c in DEVICE_DESCRIPTORS}


def _log2(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log2(np.maximum(np.asarray(x, dtype=np.float64), 1e-12))


def _num(table: pl.DataFrame, col: str) -> np.ndarray:
    return table[col].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _common(table: pl.DataFrame, dev: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if table["flops"].null_count() or table["bytes"].null_count():
        table = derive_flops_bytes(table.with_columns(pl.col("flops", "bytes").fill_nan(None)))
    flops, nbytes = _num(table, "flops"), _num(table, "bytes")
    peak, bw = dev["peak_fp32_gflops"], dev["mem_bw_gbs"]
    compute = flops / (peak * 1e6)  # GFLOP/s -> flop per ms
    memory = nbytes / (bw * 1e6)  # GB/s -> bytes per ms
    roof = np.maximum(np.maximum(compute, memory), 1e-6)
    ridge = peak / bw
    l2 = dev["l2_mb"] * 1e6
    feats = {
        "kind_code": table["op_kind"]
        .replace_strict(KIND_CODES, default=-1, return_dtype=pl.Float64)
        .to_numpy(),
        "op_code": op_code(table["op"]),
        "backward": (table["phase"] == "backward").cast(pl.Float64).to_numpy(),
        "dtype_bytes": table["dtype"]
        .replace_strict(DTYPE_BYTES, default=4, return_dtype=pl.Float64)
        .to_numpy(),
        "log2_flops": _log2(flops + 1.0),
        "log2_bytes": _log2(nbytes + 1.0),
        "log2_compute_ms": _log2(compute),
        "log2_memory_ms": _log2(memory),
        "log2_roofline_ms": _log2(roof),
        "log2_intensity_over_ridge": _log2((flops + 1.0) / np.maximum(nbytes, 1.0) / ridge),
        "log2_bytes_over_l2": np.where(np.isfinite(l2), _log2(nbytes / l2), np.nan),
        "log2_peak_gflops": _log2(peak),
        "log2_mem_bw_gbs": _log2(bw),
        "log2_ridge": _log2(ridge),
        "cores": dev["cores"],
        "log2_l2_mb": _log2(dev["l2_mb"]),
    }
    return feats, roof


def _matrix(feats: dict[str, np.ndarray], names: tuple[str, ...], device_features: bool) -> np.ndarray:
    cols = [*names, *(DEVICE_FEATURES if device_features else ())]
    return np.column_stack([feats[c] for c in cols]).astype(np.float64)


def vector_features(
    table: pl.DataFrame, dev: Mapping[str, float] | Mapping[str, np.ndarray], *, device_features: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (:data:`VECTOR_FEATURES` [+ device features]) and roofline ms of vector-kind rows."""
    d = _broadcast(dev, table.height)
    feats, roof = _common(table, d)
    rows, cols = _num(table, "rows"), _num(table, "cols")
    numel = rows * cols
    cores = np.where(np.isfinite(d["cores"]) & (d["cores"] > 0), d["cores"], np.nan)
    feats |= {
        "inputs": _num(table, "inputs"),
        "log2_rows": _log2(rows),
        "log2_cols": _log2(cols),
        "log2_numel": _log2(numel),
        "log2_waves": _log2(numel / (cores * _THREADS_PER_SM)),
        "align_cols": alignment_bits(np.nan_to_num(cols, nan=1.0).astype(np.int64)).astype(np.float64),
        "log2_rows_per_sm": _log2(rows / cores),
    }
    return _matrix(feats, VECTOR_FEATURES, device_features), roof


def conv_features(
    table: pl.DataFrame, dev: Mapping[str, float] | Mapping[str, np.ndarray], *, device_features: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (:data:`CONV_FEATURES` [+ device features]) and roofline ms of conv2d rows."""
    d = _broadcast(dev, table.height)
    feats, roof = _common(table, d)
    n, cin, cout = _num(table, "batch"), _num(table, "in_channels"), _num(table, "out_channels")
    k, size, stride, pad = (_num(table, c) for c in ("kernel_size", "input_size", "stride", "padding"))
    out = np.floor((size + 2 * pad - k) / stride) + 1
    gm, gn, gk = n * out * out, cout, cin * k * k
    tiles = np.ceil(gm / 128) * np.ceil(gn / 128)
    cores = np.where(np.isfinite(d["cores"]) & (d["cores"] > 0), d["cores"], np.nan)
    waves = tiles / cores
    feats |= {
        "log2_batch": _log2(n),
        "log2_in_channels": _log2(cin),
        "log2_out_channels": _log2(cout),
        "kernel_size": k,
        "log2_input_size": _log2(size),
        "stride": stride,
        "padding": pad,
        "log2_out_size": _log2(out),
        "log2_gemm_m": _log2(gm),
        "log2_gemm_n": _log2(gn),
        "log2_gemm_k": _log2(gk),
        "log2_waves_128": _log2(waves),
        "wave_eff_128": waves / np.maximum(np.ceil(waves), 1.0),
        "align_in_channels": alignment_bits(np.nan_to_num(cin, nan=1.0).astype(np.int64)).astype(np.float64),
    }
    return _matrix(feats, CONV_FEATURES, device_features), roof
