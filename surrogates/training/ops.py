"""Training of the operator model ``hws-ops`` on the store's ``ops`` (+ ``gemm``) rows.

Run by ``hws train ops`` (:mod:`hwsurrogate.cli.train`).

Order (nothing reaches MLflow before the data is checked): read the store -> keep the rows of
the chosen devices that have roofline descriptors -> hold out a fixed 20 % of operator shapes
-> MLflow run: params, the training rows as a dataset, fit, per-kind held-out MAPE -> pyfunc
model -> register ``hws-ops`` and move ``champion`` only if it beats the champion on the same
held-out rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.features.gemm import DEVICE_DESCRIPTORS, device_table
from hwsurrogate.surrogates.features.ops import POWER_DESCRIPTOR, power_limits
from hwsurrogate.surrogates.models.ops import OperatorLatencyModel
from hwsurrogate.surrogates.training.splits import group_split

__all__ = ["OpsTrainResult", "ops_training_rows", "train_ops_model"]

EXPERIMENT = "ops"
SHAPE_KEYS = ("op_kind", "op", "phase", "batch", "m", "n", "k", "rows", "cols", "inputs",
              "in_channels", "out_channels", "kernel_size", "input_size", "stride", "padding")  # fmt: skip


@dataclass
class OpsTrainResult:
    run_id: str
    model_uri: str
    version: str | None
    promoted: bool
    metrics: dict[str, float] = field(default_factory=dict)
    model: OperatorLatencyModel | None = None
    test: pl.DataFrame | None = None


def ops_training_rows(
    store: DatasetStore,
    *,
    devices: Sequence[str] | None = None,
    trace_models: Sequence[str] | None = None,
    micro_split: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    """``ops`` rows, ``gemm`` rows (None when the store has none) and the ``devices`` table.

    ``devices``: only these device ids (an id without rows raises); ``trace_models``: keep trace
    rows only of models whose name (the trace file stem up to the first ``-``) is listed;
    ``micro_split``: keep only micro-benchmark rows whose ``extra.split`` is this (e.g. ``train``).
    """
    ops = store.read("ops")
    if ops.height == 0:
        raise TrainingDataError("ops: the store has no operator rows; run `hws data import neusight_ops` "
                                "or `hws collect ops` first")  # fmt: skip
    gemm = store.read("gemm")
    gemm = gemm if gemm.height else None
    table = store.read("devices")
    if devices:
        present = set(ops["device_id"].unique().to_list()) | (
            set(gemm["device_id"].unique().to_list()) if gemm is not None else set()
        )
        empty = [d for d in devices if d not in present]
        if empty:
            raise TrainingDataError(f"ops: no operator or gemm rows for device(s) {empty} in the store")
        ops = ops.filter(pl.col("device_id").is_in(list(devices)))
        gemm = gemm.filter(pl.col("device_id").is_in(list(devices))) if gemm is not None else None
    split = pl.col("extra").str.json_path_match("$.split")
    if trace_models is not None:
        stem = pl.col("model").str.split("-").list.first()
        ops = ops.filter(pl.col("model").is_null() | stem.is_in(list(trace_models)))
    if micro_split is not None:
        ops = ops.filter(pl.col("model").is_not_null() | (split.fill_null(micro_split) == micro_split))
        if gemm is not None:
            gemm = gemm.filter(split.fill_null(micro_split) == micro_split)
    if ops.height == 0:
        raise TrainingDataError("ops: no operator rows left for the chosen devices")
    return ops, gemm, table


def _device_frame(frame: pl.DataFrame, devices: pl.DataFrame) -> pl.DataFrame:
    """Rows of an ops frame as operator-table rows with their device's descriptors beside them."""
    limits = power_limits(devices)  # the board power limit travels with the descriptors (GEMM ceiling)
    power = pl.DataFrame(
        {"device_id": list(limits), POWER_DESCRIPTOR: [None if np.isnan(w) else w for w in limits.values()]},
        schema={"device_id": pl.String, POWER_DESCRIPTOR: pl.Float64},
    )
    described = device_table(devices).join(power, on="device_id", how="left")
    return frame.join(described, on="device_id", how="left").select(
        "device_id", *DEVICE_DESCRIPTORS, POWER_DESCRIPTOR, "op_kind", "op", "phase", "dtype",
        *[c for c in SHAPE_KEYS[3:] if c in frame.columns], "flops", "bytes",
    )  # fmt: skip


def _per_kind_mape(frame: pl.DataFrame, pred: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(pred)
    ape = np.abs(pred / frame["latency_ms"].to_numpy() - 1.0) * 100.0
    scored = frame.with_columns(pl.Series("ape", ape)).filter(pl.Series(ok))
    out = {
        f"test_mape_{k}": float(v)
        for k, v in scored.group_by("op_kind").agg(pl.col("ape").mean()).iter_rows()
    }
    out["test_mape"] = float(np.mean(ape[ok])) if ok.any() else float("nan")
    out["test_covered_share"] = float(ok.mean()) if len(ok) else float("nan")
    return out


def train_ops_model(
    store: DatasetStore,
    *,
    devices: Sequence[str] | None = None,
    register: bool = True,
    test_frac: float = 0.2,
    seed: int = 0,
    trace_models: Sequence[str] | None = None,
    **kw: Any,
) -> OpsTrainResult:
    """Fit the operator model on whatever ``ops`` (+ ``gemm``) rows the store holds for ``devices``.

    ``kw`` are :class:`OperatorLatencyModel` parameters. Logs to MLflow (experiment ``ops``) and
    registers ``hws-ops`` (alias ``champion`` moves only when the held-out MAPE improves).
    """
    import mlflow

    from hwsurrogate.progress import make_progress
    from hwsurrogate.surrogates.registry.ops import OPS_MODEL_NAME, log_ops_model, predict_ops_frame
    from hwsurrogate.surrogates.registry.tracking import (
        dataset_source,
        log_data_versions,
        log_training_dataset,
        register_and_promote,
        start_run,
    )

    ops, gemm, table = ops_training_rows(store, devices=devices, trace_models=trace_models)
    keys = [k for k in SHAPE_KEYS if k in ops.columns]
    train, test = group_split(ops, keys, test_frac=test_frac, seed=seed)
    if train.height == 0 or test.height == 0:
        raise TrainingDataError(
            f"ops: the shape split left {train.height} training and {test.height} test rows"
        )
    if gemm is not None:
        gemm, _ = group_split(gemm, ("op", "m", "n", "k", "batch"), test_frac=test_frac, seed=seed)
    with start_run(EXPERIMENT, run_name="train-ops", task="ops") as run:
        mlflow.log_params({"test_frac": test_frac, "seed": seed, "devices": ",".join(devices or []) or "all",
                           "n_train": train.height, "n_test": test.height,
                           "n_gemm": 0 if gemm is None else gemm.height, **{k: str(v) for k, v in kw.items()}})  # fmt: skip
        log_data_versions(store.read_versions, store=store.root)
        log_training_dataset(
            train.select("device_id", *keys, "latency_ms", "source"),
            name="ops-train",
            source=dataset_source(store, "ops"),
            targets="latency_ms",
        )
        t0 = time.perf_counter()
        with make_progress() as progress:
            task = progress.add_task("fitting operator surrogates (GEMM, vector, conv2d trees)", total=1)
            model = OperatorLatencyModel(**kw).fit(train, table, gemm)
            progress.update(task, total=1, completed=1)
        mlflow.log_metric("fit_seconds", time.perf_counter() - t0)
        scored = _device_frame(test, table)
        pred = predict_ops_frame(model, scored)
        metrics = _per_kind_mape(test, pred)
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict({"devices": model.devices_, "skipped_devices": model.skipped_devices_,
                         "covered_kinds": sorted(model.covered_kinds), "rows": model.n_rows_}, "ops_model.json")  # fmt: skip
        info = log_ops_model(model, scored.head(20))
        version, promoted = None, False
        if register:

            ids = test["measurement_id"]

            def evaluate(uri: str, keys: frozenset[str] | None) -> float:
                mask = np.ones(test.height, dtype=bool) if keys is None else ids.is_in(sorted(keys)).to_numpy()
                if not mask.any():
                    return float("inf")
                try:
                    loaded = mlflow.pyfunc.load_model(uri)
                    p = loaded.predict(scored.filter(mask).to_pandas())["pred_ms"].to_numpy()
                except Exception:  # a champion fitted on other devices cannot score these rows
                    return float("inf")
                y = test["latency_ms"].to_numpy()[mask]
                ok = np.isfinite(p)
                return float(np.mean(np.abs(p[ok] / y[ok] - 1))) if ok.any() else float("inf")

            kinds = sorted(model.covered_kinds)
            version, promoted = register_and_promote(
                info.model_uri,
                OPS_MODEL_NAME,
                evaluate=evaluate,
                holdout_keys=ids.to_list(),
                scope={"devices": list(model.devices_), "op_kinds": kinds},
                description=(
                    f"Operator latency surrogates ({', '.join(kinds)}) on {len(model.devices_)} device(s): "
                    f"{', '.join(model.devices_[:10])}{' ...' if len(model.devices_) > 10 else ''}. Split: "
                    f"{test_frac:.0%} of operator shapes held out by hash (seed {seed}): {train.height} train / "
                    f"{test.height} test rows. Promotion metric: mean |pred/measured - 1| on held-out rows."
                ),
                metric_name="test_ops_mape",
            )
        return OpsTrainResult(run.info.run_id, info.model_uri, version, promoted, metrics, model, test)
