"""Adapting a surrogate to an unseen device: fit from a few measurements, then persist."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hwsurrogate.settings import get_settings
from hwsurrogate.surrogates.domain import record_domain
from hwsurrogate.surrogates.features import DEVICE_DESCRIPTORS
from hwsurrogate.surrogates.fewshot.gemm import (
    AdaptationError,
    GemmAdaptConfig,
    adapt_model,
    check_measurements,
    descriptors_for,
    predict_with_correction,
)
from hwsurrogate.surrogates.fewshot.hlsyn import (
    check_hlsyn_measurements,
    fit_kernel_correction,
    from_hlsyn_space,
    to_hlsyn_space,
)
from hwsurrogate.surrogates.registry.adapted import (
    HELDOUT_FOLDS,
    AdaptedGemmDevice,
    AdaptedHlsynKernel,
    AdaptedRecords,
    heldout_folds,
    save_adapted,
    save_adapted_kernel,
)
from hwsurrogate.surrogates.registry.cache import load_gemm_champion
from hwsurrogate.surrogates.training.metrics import mape

if TYPE_CHECKING:  # program_graphs imports torch: only when a kernel has a graph
    from hwsurrogate.surrogates.features.program_graphs import LoopNest


def adapt_gemm(
    device: str,
    measurements: pl.DataFrame,
    *,
    store_root: str | os.PathLike[str] | None = None,
    predictor: Any = None,
    config: GemmAdaptConfig | None = None,
) -> tuple[AdaptedGemmDevice, Path]:
    """Adapt the champion ``hws-gemm`` (or ``predictor``) to ``device`` and persist the record."""
    root = store_root if store_root is not None else get_settings(fresh=True).store  # a directory or s3:// URI
    check_measurements(
        measurements, min_rows=(config or GemmAdaptConfig()).min_measurements
    )  # before any loading
    t_load = time.perf_counter()
    if predictor is None:
        predictor = load_gemm_champion(root)
    t_fit = time.perf_counter()
    from hwsurrogate.surrogates.registry.loading import native_model

    model = native_model(predictor.model) or predictor.model
    if device in model.devices:
        raise AdaptationError(
            f"device {device!r} is already known to {predictor.name} v{predictor.version} (trained on it); "
            "choose a new name for an unseen device"
        )
    desc = descriptors_for(device, measurements, root)
    corr, before, after = adapt_model(model, device, measurements, desc, config=config)
    meas = check_measurements(measurements, min_rows=1).with_columns(pl.lit(device).alias("device_id"))
    y = meas["runtime_ms"].cast(pl.Float64).to_numpy()
    table = desc.row(0, named=True)
    record = AdaptedGemmDevice(
        device_id=device,
        model_name=predictor.name,
        model_version=str(predictor.version),
        descriptors={c: table.get(c) for c in DEVICE_DESCRIPTORS},
        correction=corr,
        n_measurements=len(y),
        fit_mape_before=mape(y, before),
        fit_mape_after=mape(y, after),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_seconds=round(t_fit - t_load, 3),
        fit_seconds=round(time.perf_counter() - t_fit, 3),
        domain=record_domain("gemm", meas),
    )
    t_heldout = time.perf_counter()
    record.heldout_mape, record.heldout_method = heldout_gemm(model, record, meas, desc, config)
    record.heldout_seconds = round(time.perf_counter() - t_heldout, 3)
    return record, save_adapted(record, root)


def heldout_gemm(
    model: Any,
    record: AdaptedGemmDevice,
    measurements: pl.DataFrame,
    descriptors: pl.DataFrame,
    config: GemmAdaptConfig | None = None,
) -> tuple[float | None, str]:
    """MAPE (%) of each measured shape predicted by an adaptation fitted without it, and the method.

    :data:`HELDOUT_FOLDS`-fold (leave-one-out up to 5 shapes), each fold re-adapted through the
    same public fit as the record; (None, why) when too few shapes to leave any out. This, not
    ``fit_mape_after`` (the error on the fitted shapes), is what to expect on new shapes. Not
    leave-one-out at 10 shapes: each re-adaptation costs as much as the adaptation itself (0.1-0.4 s
    on the shared 2-core CPU), and 10 of them took 1.2-3.7 s (benchmarks/adapt_heldout.py).
    """
    config = config or GemmAdaptConfig()
    folds, method = heldout_folds(measurements.height, config.min_measurements, max_folds=HELDOUT_FOLDS)
    if folds is None:
        return None, method
    y = measurements["runtime_ms"].cast(pl.Float64).to_numpy()
    pred = np.full(len(y), np.nan)
    for f in np.unique(folds):
        out = pl.Series(folds == f)
        corr, _, _ = adapt_model(
            model, record.device_id, measurements.filter(~out), descriptors, config=config
        )
        pred[out.to_numpy()] = predict_with_correction(
            model.runtime, corr, measurements.filter(out), record.descriptor_frame()
        )
    return mape(y, pred), method


def predict_adapted(model: Any, record: AdaptedGemmDevice, queries: pl.DataFrame) -> pl.DataFrame:
    """Runtime (and power when the model has one for the device: never for adapted ones) of queries."""
    q = queries.with_columns(pl.lit(record.device_id).alias("device_id"))
    runtime = predict_with_correction(model.runtime, record.correction, q, record.descriptor_frame())
    return pl.DataFrame(
        {"runtime_ms": runtime, "power_w": [None] * q.height, "energy_j": [None] * q.height},
        schema={"runtime_ms": pl.Float64, "power_w": pl.Float64, "energy_j": pl.Float64},
    )


# --------------------------------------------------------------------------- HLS kernels
HLSYN_TARGET_NAMES = ("perf", "util_lut", "util_ff", "util_dsp", "util_bram")


def _summed_rmse(y: np.ndarray, p: np.ndarray) -> float:
    """Summed per-target RMSE over the designs that report the target (empty reports skipped)."""
    err = (y - p) ** 2
    known = np.isfinite(err).any(axis=0)
    return float(np.sqrt(np.nanmean(err[:, known], axis=0)).sum())


def adapt_hlsyn_kernel(
    kernel: str,
    measurements: pl.DataFrame,
    *,
    store_root: str | os.PathLike[str] | None = None,
    predictor: Any = None,
    prior_designs: float = 10.0,
    neighbours: int = 0,
    pragma_model: bool = True,
) -> tuple[AdaptedHlsynKernel, Path]:
    """Adapt the served ``fpga-hlsyn`` model to ``kernel`` from a few synthesised designs; persist it.

    The measurements are checked first (:func:`.fewshot.hlsyn.check_hlsyn_measurements`), and a
    kernel already adapted is refused before any model loads (nothing is overwritten). The
    correction is :func:`.fewshot.hlsyn.fit_kernel_correction` of the served model's predictions;
    its held-out error re-fits it without each fold of designs. ``pragma_model``: the pragma
    residual model on top of the affine map (used per target once 10 designs measure it, with
    fewer designs the 3 nearest measured designs' residual; chosen on training kernels, see
    :mod:`.fewshot.hlsyn`); ``neighbours`` > 0 instead adds back the
    remaining residual of the measured designs nearest in pragma space (the earlier method, now
    a variant of ``hws bench fpga-hlsyn-fewshot``).

    Loop-nest features: when the store holds ``kernel``'s program graph (a known HLSyn kernel; the
    graph is an input, not a label), the residual model also takes the designs' loop-nest features
    and unroll-regime flags (:func:`.program_graphs.unroll_regime_flags`) and the record keeps the kernel's loop nest (:class:`.program_graphs.LoopNest`), so serving
    needs no graph; the measured designs' pragma keys are checked against the graph first (a
    ``ValueError`` naming the key and the row). Without a graph the model uses the pragmas alone;
    ``record.correction.loop_source`` says which.
    """
    root = store_root if store_root is not None else get_settings(fresh=True).store  # a directory or s3:// URI
    meas = check_hlsyn_measurements(measurements, kernel)
    existing = AdaptedRecords(root, "fpga-hlsyn").path(kernel)
    if existing.exists():
        raise ValueError(f"kernel {kernel!r} is already adapted ({existing}); nothing was overwritten")
    pragmas = meas["pragmas"].to_list()
    nest = hlsyn_loop_nest(kernel, root)
    if nest is not None:  # the measured designs' pragmas must be the graph's placeholders
        from hwsurrogate.surrogates.features.program_graphs import pragma_values

        pragma_values(nest, pragmas)
    t_load = time.perf_counter()
    if predictor is None:
        from hwsurrogate.surrogates.registry.cache import load_served

        predictor = load_served("fpga-hlsyn", store_root=root)
    t_fit = time.perf_counter()
    zero = to_hlsyn_space(predictor.predict(meas.select("kernel", "pragmas", "tool")))
    y = to_hlsyn_space(meas)
    corr = fit_kernel_correction(zero, y, HLSYN_TARGET_NAMES, prior_designs=prior_designs, pragmas=pragmas,
                                 neighbours=neighbours, pragma_model=pragma_model, loop_nest=nest)  # fmt: skip
    if corr.loop_nest is not None:
        corr.loop_source = (
            f"program graph of kernel {kernel!r} in the store: loop-nest features and unroll-regime flags "
            "in the residual model"
        )
    elif not corr.pragma_model:
        corr.loop_source = "not used: no pragma residual model (fewer than 10 designs, or another method)"
    else:
        corr.loop_source = (
            f"none: the store has no program graph of kernel {kernel!r}; the residual model uses the pragmas alone"
        )
    record = AdaptedHlsynKernel(
        device_id=kernel,
        model_name=str(predictor.name),
        model_version=str(predictor.version),
        correction=corr,
        n_designs=meas.height,
        fit_rmse_before=_summed_rmse(y, zero),
        fit_rmse_after=_summed_rmse(y, corr.apply(zero, pragmas)),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_seconds=round(t_fit - t_load, 3),
        fit_seconds=round(time.perf_counter() - t_fit, 3),
    )
    folds, record.heldout_method = heldout_folds(meas.height, 3, max_folds=HELDOUT_FOLDS)
    if folds is not None:
        pred = np.full_like(y, np.nan)
        for f in np.unique(folds):
            out = folds == f
            fit_p = [pragmas[i] for i in np.flatnonzero(~out)]
            c = fit_kernel_correction(zero[~out], y[~out], HLSYN_TARGET_NAMES, prior_designs=prior_designs,
                                      pragmas=fit_p, neighbours=neighbours, pragma_model=pragma_model,
                                      loop_nest=nest)  # fmt: skip
            pred[out] = c.apply(zero[out], [pragmas[i] for i in np.flatnonzero(out)])
        record.heldout_rmse = _summed_rmse(y, pred)
    return record, save_adapted_kernel(record, root)


def hlsyn_loop_nest(kernel: str, store_root: str | os.PathLike[str]) -> LoopNest | None:
    """The loop nest of ``kernel``'s program graph in the store's ``program_graphs`` table (HLSyn
    kernels), or None when the store has no graph of that kernel; a malformed graph is a
    ``ValueError`` naming the field."""
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.training.fpga import hlsyn_graph_rows

    rows = hlsyn_graph_rows(DatasetStore(store_root))
    rows = rows.filter(pl.col("kernel") == kernel) if rows.height else rows
    if rows.height == 0:
        return None
    from hwsurrogate.surrogates.features.program_graphs import LoopNest, kernel_graphs  # imports torch

    return LoopNest.of(kernel_graphs(rows)[kernel])


def predict_hlsyn_adapted(
    outputs: pl.DataFrame, record: AdaptedHlsynKernel, pragmas: list[str]
) -> pl.DataFrame:
    """The served model's ``fpga-hlsyn`` outputs of one kernel's designs (``pragmas``: their JSON)
    with the kernel's correction applied."""
    corrected = from_hlsyn_space(record.correction.apply(to_hlsyn_space(outputs), pragmas))
    return outputs.with_columns(*(pl.Series(k, v, dtype=pl.Float64) for k, v in corrected.items()))
