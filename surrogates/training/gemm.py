"""Training of the ``gemm`` model: GEMM runtime (+ power, energy) trees on the store's ``gemm`` table.

Run by ``hws train gemm`` (:mod:`hwsurrogate.cli.train`).

Order (nothing reaches MLflow before the data is checked): read the store -> check the frame
(rows, NaN targets, devices without rows or without descriptors) -> fixed held-out split by
(m, n, k) shape -> MLflow run: params, training dataset, fit, metrics and parity plots per
split, pyfunc model with signature and input example -> register ``hws-gemm`` and move alias
``champion`` only if the new version has a lower held-out runtime MAPE than the champion.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.api import INPUTS, MODEL_NAMES
from hwsurrogate.surrogates.features.gemm import device_table
from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor, power_rows
from hwsurrogate.surrogates.registry.tracking import (
    check_training_frame,
    dataset_source,
    log_data_versions,
    log_regression_report,
    log_training_dataset,
    register_and_promote,
    start_run,
)
from hwsurrogate.surrogates.training.metrics import regression_metrics
from hwsurrogate.surrogates.training.splits import group_split

EXPERIMENT = "gemm"
SHAPE_KEYS = ("m", "n", "k", "batch")


@dataclass(frozen=True)
class GemmTrainConfig:
    sources: tuple[str, ...] = ()  # empty: every source
    devices: tuple[str, ...] = ()  # empty: every device with roofline descriptors
    test_frac: float = 0.2  # fraction of (m, n, k, batch) shapes held out
    seed: int = 0
    max_train_rows: int = 150_000  # subsample for speed on small machines (0: all)
    max_iter: int = 300
    learning_rate: float = 0.1
    min_power_rows: int = 50  # below this no power model is fitted
    register: bool = True
    # single cold launches (no warm-up, e.g. GPPerf's naive tiled kernel) are not steady-state
    # timings of the device; mixed in, they teach the model a 100x slower "kernel" it cannot see
    include_cold_launches: bool = False


@dataclass
class GemmTrainResult:
    run_id: str
    model_uri: str
    version: str | None
    promoted: bool
    metrics: dict[str, float] = field(default_factory=dict)
    model: GemmPyfunc | None = None
    test: pl.DataFrame | None = None


def load_gemm_frame(store: DatasetStore, config: GemmTrainConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The training rows and the devices table, checked; raises TrainingDataError before any run."""
    frame = store.read("gemm")
    if config.sources:
        frame = frame.filter(pl.col("source").is_in(list(config.sources)))
    if not config.include_cold_launches and "extra" in frame.columns:
        cold = pl.col("extra").str.json_path_match("$.cold_launch").fill_null("false") == "true"
        frame = frame.filter(~cold)
    devices = store.read("devices")
    if config.devices:
        present = set(frame["device_id"].unique().to_list()) if frame.height else set()
        empty = [d for d in config.devices if d not in present]
        if empty:
            raise TrainingDataError(f"gemm: no rows for device(s) {empty} in the store")
        frame = frame.filter(pl.col("device_id").is_in(list(config.devices)))
    check_training_frame(frame, ["runtime_ms"], what="gemm", min_rows=10, required=INPUTS["gemm"])
    bad = frame.filter(pl.col("runtime_ms").is_null() | ~pl.col("runtime_ms").is_finite())
    if bad.height:
        raise TrainingDataError(f"gemm: {bad.height} rows have a NaN/missing runtime_ms target")
    table = (
        device_table(devices)
        if devices.height
        else pl.DataFrame({"device_id": []}, schema={"device_id": pl.String})
    )
    described = (
        table.filter(
            (pl.col("peak_fp32_gflops").is_not_null() | pl.col("peak_fp16_gflops").is_not_null())
            & pl.col("mem_bw_gbs").is_not_null()
        )["device_id"].to_list()
        if table.height
        else []
    )
    used = sorted(frame["device_id"].unique().to_list())
    undescribed = [d for d in used if d not in described]
    if undescribed and config.devices:
        raise TrainingDataError(
            f"gemm: device(s) {undescribed} have no peak GFLOP/s + mem_bw_gbs descriptors in the devices table"
        )
    if undescribed:
        frame = frame.filter(pl.col("device_id").is_in(described))
        if frame.height == 0:
            raise TrainingDataError(f"gemm: no device among {undescribed[:5]} has roofline descriptors")
    return frame, devices


def split_gemm_frame(frame: pl.DataFrame, config: GemmTrainConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, test): ``config.test_frac`` of the (m, n, k, batch) shapes held out by hash (``config.seed``)."""
    train, test = group_split(frame, SHAPE_KEYS, test_frac=config.test_frac, seed=config.seed)
    if train.height == 0 or test.height == 0:
        raise TrainingDataError(
            f"gemm: the shape split left {train.height} training and {test.height} test rows; need more shapes"
        )
    return train, test


def evaluate_mape(test: pl.DataFrame):
    """Score a registered model URI (or a fitted model: ``hws tune``'s trials) on held-out test
    rows (runtime MAPE %, lower wins).

    ``keys`` restricts the rows to those measurement ids (the rows held out from both models
    being compared); ``None`` scores all of ``test``.
    """
    from hwsurrogate.surrogates.registry.tracking import predict_with

    def evaluate(model: Any, keys: frozenset[str] | None) -> float:
        part = test if keys is None else test.filter(pl.col("measurement_id").is_in(sorted(keys)))
        if part.height == 0:
            return float("inf")
        try:
            pred = predict_with(model, part.select(INPUTS["gemm"]))["runtime_ms"].to_numpy()
        except Exception:  # a champion trained on other devices cannot score this test set
            return float("inf")
        return regression_metrics(part["runtime_ms"].to_numpy(), pred)["mape"]

    return evaluate


def fit_gemm(train: pl.DataFrame, devices: pl.DataFrame, config: GemmTrainConfig) -> GemmPyfunc:
    """Fit the runtime model (roofline-ratio target) and, when enough trusted rows, the power model."""
    if config.max_train_rows and train.height > config.max_train_rows:
        train = train.sample(config.max_train_rows, seed=config.seed)
    runtime = GemmRegressor(
        devices=devices,
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        random_state=config.seed,
    ).fit(train, train["runtime_ms"])
    power = None
    prow = power_rows(train)
    if prow.height >= config.min_power_rows:
        power = GemmRegressor(
            devices=devices, target="log", max_iter=config.max_iter, learning_rate=config.learning_rate,
            random_state=config.seed,
        ).fit(prow, prow["power_w"])  # fmt: skip
    return GemmPyfunc(runtime, power)


def train_gemm_model(
    store: DatasetStore | None = None, config: GemmTrainConfig | None = None
) -> GemmTrainResult:
    """Train, log and register the ``gemm`` model; see the module docstring for the order."""
    import mlflow

    from hwsurrogate.surrogates.registry.pyfunc import log_gemm_model

    config = config or GemmTrainConfig()
    store = store or DatasetStore()
    frame, devices = load_gemm_frame(store, config)
    train, test = split_gemm_frame(frame, config)
    with start_run(EXPERIMENT, run_name="train-gemm", task="gemm") as run:
        mlflow.log_params({k: str(v) for k, v in asdict(config).items()})
        mlflow.log_params({"n_train": train.height, "n_test": test.height, "split": "shape(m,n,k,batch)"})
        log_data_versions(store.read_versions, store=store.root)
        log_training_dataset(
            train.select(*INPUTS["gemm"], "runtime_ms", "power_w", "source"),
            name="gemm-train",
            source=dataset_source(store, "gemm"),
            targets="runtime_ms",
        )
        t0 = time.perf_counter()
        model = fit_gemm(train, devices, config)
        mlflow.log_metric("fit_seconds", time.perf_counter() - t0)
        metrics: dict[str, float] = {}
        for split, part in (("train", train.sample(min(train.height, 20_000), seed=1)), ("test", test)):
            pred = model.predict_frame(part)
            m = log_regression_report(part["runtime_ms"].to_numpy(), pred["runtime_ms"].to_numpy(),
                                      split=split, target="runtime_ms")  # fmt: skip
            metrics.update({f"{split}_runtime_ms_{k}": v for k, v in m.items()})
            if model.power is not None:
                prow = power_rows(part)
                if prow.height:
                    pp = model.predict_frame(prow)["power_w"].to_numpy()
                    m = log_regression_report(prow["power_w"].to_numpy(), pp, split=split, target="power_w")
                    metrics.update({f"{split}_power_w_{k}": v for k, v in m.items()})
        mlflow.log_dict({"devices": model.devices, "descriptors": device_table(devices).filter(
            pl.col("device_id").is_in(model.devices)).to_dicts()}, "devices.json")  # fmt: skip
        info = log_gemm_model(model, test)
        version, promoted = (None, False)
        if config.register:
            sources = sorted(frame["source"].unique().to_list())
            version, promoted = register_and_promote(
                info.model_uri,
                MODEL_NAMES["gemm"],
                evaluate=evaluate_mape(test),
                holdout_keys=test["measurement_id"].to_list(),
                scope={"devices": list(model.devices), "sources": sources},
                description=(
                    f"GEMM runtime{' and power' if model.power is not None else ''} surrogate "
                    f"(HistGradientBoosting on the roofline ratio). Sources: {', '.join(sources)}. "
                    f"{len(model.devices)} device(s): {', '.join(model.devices[:12])}"
                    f"{' ...' if len(model.devices) > 12 else ''}. Split: {config.test_frac:.0%} of the "
                    f"shapes (m, n, k, batch) held out by hash (seed {config.seed}): {train.height} train / "
                    f"{test.height} test rows. Test runtime MAPE {metrics['test_runtime_ms_mape']:.2f}%."
                ),
                metric_name="test_runtime_mape",
            )
            if promoted:  # the first `hws adapt --task gemm` then skips the MLflow load
                from hwsurrogate.surrogates.registry.cache import cache_champion

                cache_champion(model, MODEL_NAMES["gemm"], str(version), run.info.run_id, store.root)
        return GemmTrainResult(run.info.run_id, info.model_uri, version, promoted, metrics, model, test)
