"""hls4ml features: flat vectors of per-layer information of a Keras/hls4ml model.

:func:`hls4ml_features` sums over layers the multiplications, multiplications / reuse factor,
parameters and precision bits, and counts layers by kind; the configuration (reuse factor,
precision, strategy, io type, part) adds the remaining columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import polars as pl

from hwsurrogate.datasets import precision

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


def parse_precision(text: object) -> tuple[float, float]:
    """Total and integer bits of a precision (hls4ml's grammar, :mod:`hwsurrogate.datasets.precision`).

    A per-layer dict uses its ``default`` (or ``weight``, or first) entry; NaN, NaN when absent or
    not a fixed-point / integer type.
    """
    if isinstance(text, dict):
        text = text.get("default") or text.get("weight") or next(iter(text.values()), None)
    fixed = precision.parse_precision(text.strip() if isinstance(text, str) else text)
    if fixed is None:
        return float("nan"), float("nan")
    return float(fixed.width), float(fixed.integer)


#: Layer classes hls4ml converts (its ``layer_map`` plus the Keras/QKeras layers its converters map
#: onto them or skip, and its own internal class names, which the report parser writes).
HLS4ML_LAYER_CLASSES: frozenset[str] = frozenset(
    """
    Input InputLayer Activation QActivation LeakyReLU ThresholdedReLU ELU PReLU ReLU Softmax TernaryTanh
    HardActivation ParametrizedActivation Reshape Flatten Permute Transpose Dense BinaryDense TernaryDense
    QDense QDenseBatchnorm DenseBatchnorm Conv1D QConv1D Conv2D BinaryConv2D QConv2D QConv2DBatchnorm
    Conv2DBatchnorm SeparableConv1D QSeparableConv1D SeparableConv2D QSeparableConv2D DepthwiseConv1D
    DepthwiseConv2D QDepthwiseConv2D BatchNormalization QBatchNormalization MaxPooling1D AveragePooling1D
    MaxPooling2D AveragePooling2D Pooling1D Pooling2D GlobalMaxPooling1D GlobalAveragePooling1D
    GlobalMaxPooling2D GlobalAveragePooling2D GlobalPooling1D GlobalPooling2D ZeroPadding1D ZeroPadding2D
    Cropping1D Cropping2D Merge Add Subtract Multiply Average Maximum Minimum Concatenate Dot Resize
    UpSampling1D UpSampling2D Embedding SimpleRNN QSimpleRNN LSTM QLSTM GRU QGRU GarNet GarNetStack
    LayerGroup BiasAdd Dropout
    """.split()
)
_LAYER_CLASSES_LOWER = {c.lower(): c for c in HLS4ML_LAYER_CLASSES}
#: Top-level ``class_name`` of a Keras ``model.to_json()`` (not a layer list).
_KERAS_MODEL_CLASSES = {"sequential", "functional", "model"}


def _layer_list_error(model_json: object) -> str | None:
    """Why ``model_json`` is not an hls4ml layer list (the ``model`` column's format), or None."""
    try:
        layers = json.loads(model_json) if isinstance(model_json, str) else None
    except ValueError:
        return f"is not valid JSON: {str(model_json)[:80]!r}"
    if layers is None:
        return "is empty; expected a JSON list of layers"
    if isinstance(layers, dict):
        if str(layers.get("class_name", "")).lower() in _KERAS_MODEL_CLASSES or "keras_version" in layers:
            return (
                "is a Keras model.to_json(), not an hls4ml layer list; pass one object per layer with "
                "class_name, d_in, d_out, neurons/filters, ... (docs/fpga-data.md), e.g. the `model` column "
                "that `hws collect fpga parse` writes"
            )
        layers = layers.get("layers") or layers.get("model_config") or [layers]
    if not isinstance(layers, list) or not layers:
        return "must be a non-empty JSON list of layers"
    for j, layer in enumerate(layers):
        if not isinstance(layer, dict):
            return f"layer {j} is {type(layer).__name__}, not an object"
        cls = layer.get("class_name", layer.get("type"))
        if not isinstance(cls, str) or cls.lower() not in _LAYER_CLASSES_LOWER:
            return (
                f"layer {j} has class_name {cls!r}, which hls4ml does not convert; known: "
                f"{', '.join(sorted(HLS4ML_LAYER_CLASSES))}"
            )
        if isinstance(layer.get("config"), dict) and not any(
            k in layer for k in ("d_in", "d_out", "neurons", "input_shape", "output_shape", "parameters")
        ):
            return (
                f"layer {j} ({cls}) is a Keras layer config (sizes under 'config'), not an hls4ml layer "
                "with d_in/d_out/neurons; see docs/fpga-data.md"
            )
    return None


def check_hls4ml_queries(queries: pl.DataFrame, *, parts: Sequence[str] = ()) -> None:
    """Refuse what hls4ml could not build: a ValueError naming the column and the first bad row.

    ``model`` must be an hls4ml layer list of known layer classes (a Keras ``model.to_json()`` is
    refused), ``reuse_factor`` a finite integer >= 1, ``precision`` null or an hls4ml fixed-point
    type (:func:`hwsurrogate.datasets.precision.parse_precision`), and ``part`` one of ``parts``
    (the parts the model was trained on) when given.
    """
    from hwsurrogate.datasets.precision import parse_precision as parse_fixed

    missing = [c for c in HLS4ML_QUERY_COLUMNS if c not in queries.columns]
    if missing:
        raise ValueError(f"fpga-hls4ml queries miss column(s) {missing}")

    def fail(col: str, row: int, why: str) -> ValueError:
        return ValueError(f"fpga-hls4ml queries: column {col!r} {why} (row {row})")

    rf = queries["reuse_factor"].cast(pl.Float64, strict=False)
    bad = (rf.is_null() | rf.is_nan() | (rf < 1) | (rf != rf.floor())).fill_null(True)
    if bad.any():
        i = int(bad.arg_true()[0])
        raw = queries["reuse_factor"][i]
        raise fail("reuse_factor", i, f"must be an integer >= 1; it is {raw!r}")
    prec = queries["precision"].cast(pl.String)
    for value in prec.drop_nulls().unique(maintain_order=True).to_list():
        if parse_fixed(value) is None:
            i = int((prec == value).arg_true()[0])
            raise fail("precision", i, f"is {value!r}, not an hls4ml fixed-point type (ap_fixed<W,I>, ap_ufixed<W,I>, "
                       "ap_int<W>, ap_uint<W>, with or without the ap_ prefix)")  # fmt: skip
    if parts:
        part = queries["part"].cast(pl.String)
        unknown = (~part.is_in(list(parts))).fill_null(True)
        if unknown.any():
            i = int(unknown.arg_true()[0])
            known = ", ".join(parts)
            raise fail(
                "part", i, f"is {part[i]!r}, a part this model was not trained on; known parts: {known}"
            )
    models = queries["model"].cast(pl.String)
    for value in models.unique(maintain_order=True).to_list():
        why = _layer_list_error(value)
        if why is not None:
            rows = models.is_null() if value is None else (models == value).fill_null(False)
            raise fail("model", int(rows.arg_true()[0]), why)


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
    check_hls4ml_queries(queries, parts=parts)
    rf = queries["reuse_factor"].cast(pl.Float64, strict=False)
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
