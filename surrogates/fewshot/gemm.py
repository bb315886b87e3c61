"""Few-shot adaptation of the GEMM surrogate to an unseen GPU (``hws adapt --task gemm``).

Zero-shot, the GEMM model predicts a new GPU from its spec sheet alone (descriptors in the
``devices`` table: peak GFLOP/s, bandwidth, SMs): the trees predict the *utilisation* of the
roofline bound, the roofline comes from the specs. A spec sheet can be far from what a GPU
sustains (a 72 W card throttles its clock; dual-issue FP32 lanes double the paper peak), so a
handful of measured shapes adapts the model in two small steps, both over the *frozen* trees
(nothing large is refitted):

1. **Spec calibration.** Effective peak and bandwidth are the spec values times scales
   ``a`` and ``b`` picked on a log2 grid: the trees re-predict the measured shapes once per
   grid point (one batched call) and the pair with the lowest robust (pseudo-Huber) log error
   plus a Gaussian prior on ``log a``, ``log b`` (shrinking toward the spec sheet) wins.
   Compute-bound and memory-bound shapes move separately, which a single scale factor cannot do.
2. **Residual correction.** What is left is fitted in log space,
   ``w0 + w1*z_size + w2*z_intensity + w3*is_linear``, by ridge regression that shrinks ``w``
   toward zero: with fewer than ``min_for_slopes`` measurements only the offset ``w0`` and
   the op term ``w3`` (bmm and linear err differently on a new GPU).
3. **Source-GPU term.** The frozen trees also predict every shape on the GPUs they were trained
   on; the gaps ``log t_source(shape) - log t_zero_shot(shape)`` carry the *shape pattern* of
   each known GPU (which shapes hit a slow kernel, a bad tile count). The remaining residual is
   fitted as ``c + sum_s beta_s * gap_s`` by ridge (``source_ridge``), so a new GPU that behaves
   like a mix of known ones borrows their pattern. Up to ``max_sources`` training GPUs nearest
   in (log peak, log bandwidth) are used.
4. **Local residual (Gaussian process).** Steps 1-3 are global: a few numbers for every shape.
   What they leave is not (on an H100 the spec-only error is a hump over shape size, launch-bound
   shapes 1.6x too slow, mid-size ones too fast, large ones too slow, and it differs by shape
   family). The log residual left after steps 1-3 is smoothed over shape space by a GP with a
   squared-exponential kernel on (log2 m, n, k, batch, roofline time, intensity over ridge, op):
   a shape near a measured one inherits its residual, a shape far from all of them keeps steps
   1-3. Its lengthscale, signal and noise sd are fixed constants picked leave-one-training-GPU-out
   (a handful of points cannot estimate them); the record keeps the support inputs and weights.

This module holds the math only. :func:`hwsurrogate.surrogates.adapt.adapt_gemm` runs it on the
champion model and stores the result (:mod:`hwsurrogate.surrogates.registry.adapted`) together
with the model name and version it corrects, so predictions for the device are reproducible and
a newer champion does not silently reuse a correction fitted to another version. The commands
are ``hws adapt --task gemm`` (:mod:`hwsurrogate.cli.adapt`) and ``hws predict gemm-shots``
(:mod:`hwsurrogate.cli.gemm_shots`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import HwSurrogateError
from hwsurrogate.surrogates.features import DEVICE_DESCRIPTORS, gemm_features
from hwsurrogate.surrogates.fewshot.measurements import (
    check_min_rows,
    check_unique,
    positive_numbers,
    require_columns,
)

#: log-space features of the correction (besides the offset), computed by features.gemm_features
CORRECTION_FEATURES: tuple[str, ...] = ("log2_roofline_ms", "log2_intensity_over_ridge", "is_linear")
#: inputs of the step-4 GP (log2 units, so one lengthscale fits all); the op is one more input
#: scaled by ``GemmAdaptConfig.gp_op_distance`` (bmm and linear residuals barely share)
GP_FEATURES: tuple[str, ...] = (
    "log2_m",
    "log2_n",
    "log2_k",
    "log2_batch",
    "log2_roofline_ms",
    "log2_intensity_over_ridge",
)
MEASUREMENT_COLUMNS: tuple[str, ...] = ("op", "m", "n", "k", "runtime_ms")


class AdaptationError(HwSurrogateError, ValueError):
    """Measurements for adaptation are unusable (too few, NaN, negative, duplicated, name clash)."""


def _grid(lo: float, hi: float, step: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.arange(lo, hi + step / 2, step), 6))


@dataclass(frozen=True)
class GemmAdaptConfig:
    min_measurements: int = 3  # fewer cannot be told from noise
    min_for_slopes: int = 8  # below this only the log-scale offset is fitted
    # from this many measurements the op (is_linear) term is fitted too: one offset shared by
    # bmm and linear let a few linear shapes drag every bmm prediction along (5 shots were worse
    # than 0 on L4/H100 bmm); 3 beat 8 in leave-one-training-GPU-out validation at 5 shots
    min_for_op_term: int = 3
    ridge_offset: float = 0.5  # shrinkage of the offset toward 0, in measurement units
    # shrinkage of the slopes toward 0 (16 beat 4 and 8 at 10 shots leave-one-training-GPU-out)
    ridge_slope: float = 16.0
    calibrate_specs: bool = True  # step 1: effective peak / bandwidth scales
    log2_peak_scales: tuple[float, ...] = _grid(-2.0, 0.5, 0.25)  # candidate log2(a)
    log2_bw_scales: tuple[float, ...] = _grid(-1.5, 0.5, 0.25)  # candidate log2(b)
    # sd of the Gaussian prior on ln(a), ln(b): 0.25 had the lowest leave-one-training-GPU-out
    # MAPE (5 NeuSight training GPUs, 5/10/20 shots) among 0.25, 0.35, 0.5 and 1.0
    spec_prior_sd: float = 0.25
    noise_sd: float = 0.25  # typical log error of one measured shape (scales the data term)
    huber_delta: float = 0.2  # pseudo-Huber knee of the log residuals (robust to outlier shapes)
    # step 3 (source-GPU term): picked by leave-one-training-GPU-out MAPE on NeuSight's 5
    # training GPUs (scored on the held-out GPU's test-file rows, 5 draws x 5/10/20 shots):
    # ridge 0.3 of 0.1/0.3/1/3 (10 shots: 18.5 % without the term, 17.0 % with it)
    source_ridge: float = 0.3
    min_for_sources: int = 5  # the smallest support size validated
    max_sources: int = 5
    use_sources: bool = True
    # step 4 (GP on the residual): picked by leave-one-training-GPU-out MAPE (5 NeuSight training
    # GPUs, their test-file rows, 3 draws x 5/10/20 shots; `python benchmarks/gemm_logo.py gp`):
    # mean 15.22 % for lengthscale 4 / signal 0.2 / noise 0.1 of lengthscale 3/4/6 x (0.2, 0.1),
    # (0.2, 0.05), (0.15, 0.1) (worst 15.53 %); steps 1-3 alone 16.7 %
    use_gp: bool = True
    min_for_gp: int = 5
    gp_lengthscale: float = 4.0  # log2 units: shapes 16x apart in a dimension still share
    gp_signal_sd: float = 0.2  # prior sd of the residual in ln units
    gp_noise_sd: float = 0.1  # per-measurement log noise (how far the GP may ignore one shape)
    gp_op_distance: float = 8.0  # bmm vs linear, in log2 units of the GP inputs
    gp_max_points: int = 1000  # larger supports are subsampled (O(n^3) solve; adapt stays < 2 s)
    # step 1 re-predicts every measured shape at each of the grid's scale pairs: a whole
    # measurement file (thousands of rows) took ~11 s, so larger supports calibrate on a
    # deterministic subsample (scales are two numbers; a few hundred shapes pin them down)
    calibration_max_points: int = 400


@dataclass
class GemmCorrection:
    """A fitted per-device adaptation: spec scales (step 1) and a log-space correction (step 2)."""

    coef: list[float]
    center: list[float]
    scale: list[float]
    features: list[str] = field(default_factory=lambda: list(CORRECTION_FEATURES))
    peak_scale: float = 1.0  # effective peak = spec peak x peak_scale
    bw_scale: float = 1.0  # effective bandwidth = spec bandwidth x bw_scale
    # step 3: training GPUs whose predicted log-time gaps correct the shape pattern
    source_devices: list[str] = field(default_factory=list)
    source_center: list[float] = field(default_factory=list)
    source_coef: list[float] = field(default_factory=list)  # [offset, beta_1, ...]
    # step 4: GP on the residual; empty support = no GP (records written before step 4 existed)
    gp_x: list[list[float]] = field(default_factory=list)  # support inputs (gp_inputs rows)
    gp_alpha: list[float] = field(default_factory=list)  # (K + noise^2 I)^-1 residual
    gp_lengthscale: float = 1.0
    gp_signal_sd: float = 0.0
    gp_op_distance: float = 8.0

    def design(self, feats: pl.DataFrame) -> np.ndarray:
        z = _correction_inputs(feats, self.features)
        z = (z - np.asarray(self.center)) / np.asarray(self.scale)
        return np.column_stack([np.ones(len(z)), z])

    def log_factor(self, feats: pl.DataFrame) -> np.ndarray:
        return self.design(feats) @ np.asarray(self.coef)

    def effective_descriptors(self, descriptors: pl.DataFrame) -> pl.DataFrame:
        """``descriptors`` with peaks and bandwidth multiplied by the calibrated scales."""
        return scale_descriptors(descriptors, self.peak_scale, self.bw_scale)


_PEAK_COLUMNS = ("peak_fp32_gflops", "peak_fp16_gflops")


def scale_descriptors(descriptors: pl.DataFrame, peak_scale: float, bw_scale: float) -> pl.DataFrame:
    """Descriptor rows with peak GFLOP/s columns x ``peak_scale`` and ``mem_bw_gbs`` x ``bw_scale``."""
    cols = [pl.col(c).cast(pl.Float64) * peak_scale for c in _PEAK_COLUMNS if c in descriptors.columns]
    if "mem_bw_gbs" in descriptors.columns:
        cols.append(pl.col("mem_bw_gbs").cast(pl.Float64) * bw_scale)
    return descriptors.with_columns(cols) if cols else descriptors


def _correction_inputs(feats: pl.DataFrame, names: list[str]) -> np.ndarray:
    cols = []
    for name in names:
        if name == "is_linear":
            cols.append((feats["op_code"] == 2).cast(pl.Float64).to_numpy())
        else:
            cols.append(feats[name].to_numpy().astype(np.float64))
    return np.column_stack(cols) if cols else np.zeros((feats.height, 0))


def fit_correction(
    feats: pl.DataFrame, residual_log: np.ndarray, config: GemmAdaptConfig | None = None
) -> GemmCorrection:
    """Ridge fit of ``log(measured) - log(prediction)`` on the correction features (step 2)."""
    config = config or GemmAdaptConfig()
    n = len(residual_log)
    z = _correction_inputs(feats, list(CORRECTION_FEATURES))
    center = z.mean(axis=0)
    scale = z.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    zs = (z - center) / scale
    x = np.column_stack([np.ones(n), zs])
    penalty = np.full(x.shape[1], config.ridge_slope)
    penalty[0] = config.ridge_offset
    if n < config.min_for_slopes:
        penalty[1:] = 1e12  # offset only
        if n >= config.min_for_op_term and "is_linear" in CORRECTION_FEATURES:
            penalty[1 + CORRECTION_FEATURES.index("is_linear")] = config.ridge_slope
    coef = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ residual_log)
    return GemmCorrection(coef.tolist(), center.tolist(), scale.tolist())


def _pseudo_huber(r: np.ndarray, delta: float) -> np.ndarray:
    return delta**2 * (np.sqrt(1.0 + (r / delta) ** 2) - 1.0)


def calibrate_specs(
    runtime: Any, queries: pl.DataFrame, descriptors: pl.DataFrame, y: np.ndarray, config: GemmAdaptConfig
) -> tuple[float, float, np.ndarray]:
    """Step 1: the (peak, bandwidth) scale pair of the grid that best explains ``y``.

    ``runtime`` is the frozen :class:`~.gemm_model.GemmRegressor`; ``queries`` all name the one
    device of ``descriptors``. Returns ``(peak_scale, bw_scale, predictions at that pair)``.
    """
    device = str(descriptors["device_id"][0])
    pa = np.asarray(config.log2_peak_scales, dtype=np.float64)
    pb = np.asarray(config.log2_bw_scales, dtype=np.float64)
    ga, gb = (g.ravel() for g in np.meshgrid(pa, pb, indexing="ij"))
    ids = [f"{device}#cal{i}" for i in range(ga.size)]
    table = pl.concat(
        [
            scale_descriptors(descriptors, float(2.0**a), float(2.0**b)).with_columns(
                pl.lit(i).alias("device_id")
            )
            for i, a, b in zip(ids, ga, gb, strict=True)
        ]
    )
    n = queries.height
    grid_q = (
        queries.drop("device_id")
        .select(pl.all().repeat_by(ga.size).explode())
        .with_columns(pl.Series("device_id", ids * n))
    )
    pred = runtime.predict(grid_q, extra_devices=table).reshape(n, ga.size)
    r = np.log(y)[:, None] - np.log(pred)
    data = _pseudo_huber(r, config.huber_delta).sum(axis=0) / config.noise_sd**2
    prior = ((ga * np.log(2.0)) ** 2 + (gb * np.log(2.0)) ** 2) / (2.0 * config.spec_prior_sd**2)
    best = int(np.argmin(data + prior))
    return float(2.0 ** ga[best]), float(2.0 ** gb[best]), pred[:, best]


def nearest_sources(runtime: Any, descriptors: pl.DataFrame, max_sources: int) -> list[str]:
    """Up to ``max_sources`` training devices of ``runtime`` nearest in (log2 peak, log2 bandwidth).

    Devices without an fp32 (or fp16) peak or a bandwidth are skipped; ties keep the table order.
    """
    table = getattr(runtime, "device_table_", None)
    if table is None or max_sources <= 0:
        return []
    target = descriptors.row(0, named=True)

    def peak(row: dict[str, Any]) -> float:
        p = row.get("peak_fp32_gflops")
        return float(p) if p is not None and np.isfinite(p) else float(row.get("peak_fp16_gflops") or np.nan)

    t_peak, t_bw = peak(target), float(target.get("mem_bw_gbs") or np.nan)
    if not (np.isfinite(t_peak) and np.isfinite(t_bw)):
        return []
    dist = []
    for row in table.iter_rows(named=True):
        p, b = peak(row), float(row.get("mem_bw_gbs") or np.nan)
        if np.isfinite(p) and np.isfinite(b) and p > 0 and b > 0:
            dist.append((float(np.hypot(np.log2(p / t_peak), np.log2(b / t_bw))), str(row["device_id"])))
    dist.sort(key=lambda t: t[0])
    return [d for _, d in dist[:max_sources]]


def source_gaps(
    runtime: Any, queries: pl.DataFrame, descriptors: pl.DataFrame, sources: list[str]
) -> np.ndarray:
    """``log t_s(q) - log t_zero_shot(q)`` for each source device ``s`` (one column each).

    One batched prediction: the queries once on the spec-sheet ``descriptors`` (no calibration)
    and once per source device, whose descriptors the model has baked in.
    """
    n = queries.height
    if not sources:
        return np.zeros((n, 0))
    q = queries.drop("device_id") if "device_id" in queries.columns else queries
    device = str(descriptors["device_id"][0])
    ids = [device, *sources]
    stacked = pl.concat([q.with_columns(pl.lit(d).alias("device_id")) for d in ids], how="diagonal_relaxed")
    z = np.log(runtime.predict(stacked, extra_devices=descriptors)).reshape(len(ids), n).T
    return z[:, 1:] - z[:, :1]


def fit_source_term(
    gaps: np.ndarray, residual_log: np.ndarray, config: GemmAdaptConfig
) -> tuple[list[float], list[float]]:
    """Step 3: ridge fit of ``residual = c + beta . (gaps - center)``; returns (center, [c, *beta])."""
    n = len(residual_log)
    center = gaps.mean(axis=0)
    x = np.column_stack([np.ones(n), gaps - center])
    penalty = np.full(x.shape[1], config.source_ridge)
    penalty[0] = config.ridge_offset
    coef = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ residual_log)
    return center.tolist(), coef.tolist()


def _source_log_factor(
    runtime: Any, correction: GemmCorrection, queries: pl.DataFrame, descriptors: pl.DataFrame
) -> np.ndarray:
    if not correction.source_devices:
        return np.zeros(queries.height)
    gaps = source_gaps(runtime, queries, descriptors, correction.source_devices)
    x = np.column_stack([np.ones(queries.height), gaps - np.asarray(correction.source_center)])
    return x @ np.asarray(correction.source_coef)


def fit_adaptation(
    runtime: Any,
    queries: pl.DataFrame,
    descriptors: pl.DataFrame,
    y: np.ndarray,
    config: GemmAdaptConfig | None = None,
) -> tuple[GemmCorrection, np.ndarray, np.ndarray]:
    """The adaptation steps for one device; returns (correction, spec-only, adapted) runtimes.

    ``queries`` (with ``device_id`` = the device of the one-row ``descriptors``) are the
    measured shapes, ``y`` their runtimes in ms. The trees of ``runtime`` are not refitted.
    """
    config = config or GemmAdaptConfig()
    y = np.asarray(y, dtype=np.float64)
    base = runtime.predict(queries, extra_devices=descriptors)
    peak_scale, bw_scale, calibrated = 1.0, 1.0, base
    if config.calibrate_specs:
        if len(y) > config.calibration_max_points:
            sub = np.sort(
                np.random.default_rng(0).choice(len(y), config.calibration_max_points, replace=False)
            )
            peak_scale, bw_scale, _ = calibrate_specs(runtime, queries[sub], descriptors, y[sub], config)
            calibrated = runtime.predict(
                queries, extra_devices=scale_descriptors(descriptors, peak_scale, bw_scale)
            )
        else:
            peak_scale, bw_scale, calibrated = calibrate_specs(runtime, queries, descriptors, y, config)
    feats = gemm_features(queries, descriptors)
    corr = fit_correction(feats, np.log(y) - np.log(calibrated), config)
    corr.peak_scale, corr.bw_scale = peak_scale, bw_scale
    adapted = calibrated * np.exp(corr.log_factor(feats))
    if config.use_sources and len(y) >= config.min_for_sources:
        sources = nearest_sources(runtime, descriptors, config.max_sources)
        if sources:
            gaps = source_gaps(runtime, queries, descriptors, sources)
            corr.source_center, corr.source_coef = fit_source_term(gaps, np.log(y) - np.log(adapted), config)
            corr.source_devices = sources
            adapted = adapted * np.exp(_source_log_factor(runtime, corr, queries, descriptors))
    if config.use_gp and len(y) >= config.min_for_gp:
        keep = np.arange(len(y))
        if len(y) > config.gp_max_points:  # deterministic subsample: same measurements, same record
            keep = np.sort(np.random.default_rng(0).choice(len(y), config.gp_max_points, replace=False))
        x = gp_inputs(feats, config.gp_op_distance)[keep]
        corr.gp_alpha = fit_gp_residual(x, np.log(y[keep]) - np.log(adapted[keep]), config).tolist()
        corr.gp_x = x.tolist()
        corr.gp_lengthscale, corr.gp_signal_sd = config.gp_lengthscale, config.gp_signal_sd
        corr.gp_op_distance = config.gp_op_distance
        adapted = adapted * np.exp(gp_log_factor(corr, feats))
    return corr, base, adapted


def gp_inputs(feats: pl.DataFrame, op_distance: float) -> np.ndarray:
    """The GP's inputs of featurised queries: :data:`GP_FEATURES` plus ``op_distance`` x is_linear."""
    x = feats.select(GP_FEATURES).to_numpy().astype(np.float64)
    lin = (feats["op_code"] == 2).cast(pl.Float64).to_numpy()
    return np.column_stack([x, op_distance * lin])


def _sq_exp(a: np.ndarray, b: np.ndarray, lengthscale: float, signal_sd: float) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return signal_sd**2 * np.exp(-np.maximum(d2, 0.0) / (2.0 * lengthscale**2))


def fit_gp_residual(x: np.ndarray, residual_log: np.ndarray, config: GemmAdaptConfig) -> np.ndarray:
    """Step 4: the GP weights ``alpha = (K + noise^2 I)^-1 residual`` (zero prior mean)."""
    k = _sq_exp(x, x, config.gp_lengthscale, config.gp_signal_sd)
    k[np.diag_indices_from(k)] += config.gp_noise_sd**2
    return np.linalg.solve(k, residual_log)


def gp_log_factor(correction: GemmCorrection, feats: pl.DataFrame, chunk: int = 8192) -> np.ndarray:
    """The step-4 GP's posterior mean log correction at featurised queries (0 without a GP)."""
    if not correction.gp_alpha:
        return np.zeros(feats.height)
    xs = np.asarray(correction.gp_x, dtype=np.float64)
    alpha = np.asarray(correction.gp_alpha, dtype=np.float64)
    xq = gp_inputs(feats, correction.gp_op_distance)
    out = np.empty(len(xq))
    for i in range(0, len(xq), chunk):  # bounded memory for large query batches
        out[i : i + chunk] = (
            _sq_exp(xq[i : i + chunk], xs, correction.gp_lengthscale, correction.gp_signal_sd) @ alpha
        )
    return out


def predict_with_correction(
    runtime: Any, correction: GemmCorrection, queries: pl.DataFrame, descriptors: pl.DataFrame
) -> np.ndarray:
    """Adapted runtimes (ms) of ``queries`` on the device of the one-row ``descriptors``."""
    effective = correction.effective_descriptors(descriptors)
    base = runtime.predict(queries, extra_devices=effective)
    feats = gemm_features(queries, descriptors)
    log_factor = correction.log_factor(feats) + gp_log_factor(correction, feats)
    return base * np.exp(log_factor + _source_log_factor(runtime, correction, queries, descriptors))


# --------------------------------------------------------------------------- which shapes to measure


def suggest_shapes(
    candidates: pl.DataFrame,
    descriptors: pl.DataFrame,
    n: int,
    *,
    config: GemmAdaptConfig | None = None,
    max_pool: int = 1500,
    seed: int = 0,
) -> np.ndarray:
    """Row indices of ``n`` of ``candidates`` worth measuring on a new GPU (step-4 GP design).

    Greedy maximum posterior variance of the adaptation's own GP: start from the candidate
    nearest the pool's mean shape, then repeatedly add the shape the GP knows least about given
    those chosen. Measured shapes spread over the shape space (sizes, aspect ratios, bmm and
    linear) instead of crowding where most candidates lie. Uses shapes only, never runtimes.
    Picked leave-one-training-GPU-out over k-means medoids and random shapes (see the docs).
    ``descriptors`` is the one-row spec sheet (the GP inputs include roofline time and ridge).
    """
    config = config or GemmAdaptConfig()
    if n <= 0:
        raise AdaptationError(f"suggest_shapes: n must be > 0, got {n}")
    if candidates.height < n:
        raise AdaptationError(f"suggest_shapes: {candidates.height} candidate shapes; need at least n={n}")
    device = str(descriptors["device_id"][0])
    q = check_measurements(
        candidates.with_columns(pl.lit(1.0).alias("runtime_ms")) if "runtime_ms" not in candidates.columns
        else candidates, min_rows=1,
    ).with_columns(pl.lit(device).alias("device_id"))  # fmt: skip
    x_all = gp_inputs(gemm_features(q, descriptors), config.gp_op_distance)
    rng = np.random.default_rng(seed)
    pool = (
        np.sort(rng.choice(len(x_all), max_pool, replace=False))
        if len(x_all) > max_pool
        else np.arange(len(x_all))
    )
    x = x_all[pool]
    ell, sig, noise = config.gp_lengthscale, config.gp_signal_sd, config.gp_noise_sd
    chosen = [int(np.argmin(((x - x.mean(axis=0)) ** 2).sum(axis=1)))]
    for _ in range(n - 1):
        xs = x[chosen]
        k_ss = _sq_exp(xs, xs, ell, sig) + noise**2 * np.eye(len(chosen))
        k_ps = _sq_exp(x, xs, ell, sig)
        var = sig**2 - (k_ps * np.linalg.solve(k_ss, k_ps.T).T).sum(axis=1)
        var[chosen] = -np.inf
        chosen.append(int(np.argmax(var)))
    return np.sort(pool[chosen])


# --------------------------------------------------------------------------- adaptation


def check_measurements(frame: pl.DataFrame, *, min_rows: int = 3) -> pl.DataFrame:
    """Validate GEMM measurements with the shared checks of :mod:`.measurements`; normalise defaults.

    Columns :data:`MEASUREMENT_COLUMNS` (+ ``batch`` = 1, ``dtype`` = fp32, ``layout`` = null when
    absent); sizes and runtimes finite and > 0; one row per shape; at least ``min_rows`` rows.
    """
    require_columns(frame, MEASUREMENT_COLUMNS, error=AdaptationError, hint=" (+ batch, dtype)")
    f = frame
    if "batch" not in f.columns:
        f = f.with_columns(pl.lit(1).alias("batch"))
    if "dtype" not in f.columns:
        f = f.with_columns(pl.lit("fp32").alias("dtype"))
    if "layout" not in f.columns:
        f = f.with_columns(pl.lit(None, dtype=pl.String).alias("layout"))
    positive_numbers(f, ("m", "n", "k", "batch", "runtime_ms"), error=AdaptationError)
    check_unique(
        f,
        ["op", "m", "n", "k", "batch", "dtype", "layout"],
        what="shape",
        describe=lambda r: f"{r['op']} m={r['m']} n={r['n']} k={r['k']}",
        advice="give one runtime per shape (e.g. the median)",
        error=AdaptationError,
    )
    check_min_rows(f, min_rows, what="distinct shapes", error=AdaptationError)
    return f


def adapt_model(
    model: Any,
    device: str,
    measurements: pl.DataFrame,
    descriptors: pl.DataFrame,
    *,
    config: GemmAdaptConfig | None = None,
) -> tuple[GemmCorrection, np.ndarray, np.ndarray]:
    """Fit the adaptation for ``device`` on top of ``model`` (a GemmPyfunc); returns (corr, before, after)."""
    config = config or GemmAdaptConfig()
    meas = check_measurements(measurements, min_rows=config.min_measurements).with_columns(
        pl.lit(device).alias("device_id")
    )
    desc = descriptors.with_columns(pl.lit(device).alias("device_id"))
    y = meas["runtime_ms"].cast(pl.Float64).to_numpy()
    return fit_adaptation(model.runtime, meas, desc, y, config)


def descriptors_for(device: str, measurements: pl.DataFrame, store_root: str | os.PathLike[str] | None) -> pl.DataFrame:
    """Descriptors from the measurements file (columns of the devices schema) or the store's devices table."""
    have = [c for c in DEVICE_DESCRIPTORS if c in measurements.columns]
    if "mem_bw_gbs" in have and ("peak_fp32_gflops" in have or "peak_fp16_gflops" in have):
        row = measurements.select(have).row(0, named=True)
        return pl.DataFrame([{"device_id": device, **row}])
    from hwsurrogate.datasets.store import DatasetStore

    devices = DatasetStore(store_root).read("devices")
    hit = devices.filter(pl.col("device_id") == device)
    if hit.height == 0:
        raise AdaptationError(
            f"no descriptors for device {device!r}: add it to the devices table or give columns "
            "peak_fp32_gflops (or peak_fp16_gflops), mem_bw_gbs, cores in the measurements file"
        )
    return hit
