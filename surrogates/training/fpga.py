"""Training of the ``fpga-hls4ml`` and ``fpga-hlsyn`` models on the ``fpga`` table.

Run by ``hws train fpga-hls4ml`` / ``hws train fpga-hlsyn`` (:mod:`hwsurrogate.cli.train`).

Same order as every trainer: check the frame (raises before any MLflow run) -> fixed held-out
split (hls4ml: 20 % of models by name; hlsyn: HLSyn's held-out kernels) -> run: params,
dataset, fit, metrics + parity plots per target and split, pyfunc with signature -> register
and promote only if the held-out error beats the champion's on the same rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.progress import step, track
from hwsurrogate.surrogates.api import INPUTS, MODEL_NAMES
from hwsurrogate.surrogates.features.hlsyn import program_graph_stats
from hwsurrogate.surrogates.models.fpga import (
    HLS4ML_TARGETS,
    HLSYN_TARGETS,
    HLSYN_TREE_PARAMS,
    FpgaPyfunc,
    FpgaRegressor,
    fit_validity_classifier,
    hlsyn_targets,
)
from hwsurrogate.surrogates.registry.tracking import (
    check_training_frame,
    dataset_source,
    log_data_versions,
    log_regression_report,
    log_training_dataset,
    predict_with,
    register_and_promote,
    start_run,
)
from hwsurrogate.surrogates.training.metrics import regression_metrics
from hwsurrogate.surrogates.training.splits import HLSYN_TEST_KERNELS, group_split


@dataclass(frozen=True)
class FpgaTrainConfig:
    sources: tuple[str, ...] = ()
    stage: str = "hls_estimate"
    test_frac: float = 0.2  # hls4ml: fraction of models held out
    max_iter: int = 300
    learning_rate: float = 0.05
    seed: int = 0
    register: bool = True
    model: str = "tree"  # fpga-hlsyn: "tree" (gradient boosting) or "gnn" (program-graph GNN)
    gnn_seconds: float = 200.0  # fpga-hlsyn GNN: wall-clock cap on training


@dataclass
class FpgaTrainResult:
    run_id: str
    model_uri: str
    version: str | None
    promoted: bool
    metrics: dict[str, float] = field(default_factory=dict)
    model: FpgaPyfunc | None = None
    test: pl.DataFrame | None = None


def evaluate_smape(task: str, test: pl.DataFrame, targets: tuple[str, ...]):
    """Mean SMAPE over the task's regression outputs on held-out rows (lower wins) of a registered
    model URI or a fitted model (``hws tune``'s trials); ``keys`` restricts them to those
    measurement ids (``None``: all of ``test``)."""

    def evaluate(model: Any, keys: frozenset[str] | None) -> float:
        part = test if keys is None else test.filter(pl.col("measurement_id").is_in(sorted(keys)))
        if part.height == 0:
            return float("inf")
        try:
            pred = predict_with(model, part.select(INPUTS[task]))
        except Exception:
            return float("inf")
        scores = []
        for t in targets:
            y = part[t].cast(pl.Float64).to_numpy()
            ok = np.isfinite(y)
            if ok.any():
                scores.append(regression_metrics(y[ok], pred[t].cast(pl.Float64).to_numpy()[ok])["smape"])
        return float(np.mean(scores)) if scores else float("inf")

    return evaluate


def _check(frame: pl.DataFrame, task: str, targets: tuple[str, ...]) -> None:
    check_training_frame(frame, list(targets), what=task, min_rows=10, required=INPUTS[task])
    for t in targets:
        s = frame[t].cast(pl.Float64)
        if s.is_nan().any():
            raise TrainingDataError(f"{task}: target {t!r} has {int(s.is_nan().sum())} NaN values")


def _run(
    task: str,
    train: pl.DataFrame,
    test: pl.DataFrame,
    reg: FpgaRegressor,
    y_train: pl.DataFrame,
    report_targets: tuple[str, ...],
    config: FpgaTrainConfig,
    store: DatasetStore,
    classifier_rows: pl.DataFrame | None = None,
) -> FpgaTrainResult:
    import mlflow

    from hwsurrogate.surrogates.registry.pyfunc import log_fpga_model

    with start_run("fpga", run_name=f"train-{task}", task=task) as run:
        mlflow.log_params({k: str(v) for k, v in asdict(config).items()})
        mlflow.log_params({"n_train": train.height, "n_test": test.height})
        log_data_versions(store.read_versions, store=store.root)
        log_training_dataset(
            train.select(*INPUTS[task], *report_targets), name=f"{task}-train",
            source=dataset_source(store, "fpga"), targets=report_targets[0],
        )  # fmt: skip
        reg.fit(train, y_train)
        clf = None
        if classifier_rows is not None and classifier_rows.height and classifier_rows["valid"].n_unique() > 1:
            with step(f"{task}: validity classifier on {classifier_rows.height:,} designs"):
                clf = fit_validity_classifier(reg, classifier_rows, classifier_rows["valid"].to_numpy())
        model = FpgaPyfunc(task, reg, clf)
        metrics: dict[str, float] = {}
        for split, part in track((("train", train), ("test", test)), f"{task}: scoring train and test"):
            pred = model.predict_frame(part)
            for t in report_targets:
                y = part[t].cast(pl.Float64).to_numpy()
                p = pred[t].cast(pl.Float64).to_numpy()
                ok = np.isfinite(y) & np.isfinite(p)
                if ok.sum() >= 2:
                    m = log_regression_report(
                        y[ok], p[ok], split=split, target=t, log_scale=bool((y[ok] > 0).all())
                    )
                    metrics.update({f"{split}_{t}_{k}": v for k, v in m.items()})
        with step(f"{task}: logging the model to MLflow"):
            info = log_fpga_model(model, test if test.height else train, INPUTS[task])
        version, promoted = None, False
        if config.register:
            sources = sorted(set(train["source"].to_list()) | set(test["source"].to_list()))
            kernels = sorted(set(test["kernel"].to_list()))
            version, promoted = register_and_promote(
                info.model_uri, MODEL_NAMES[task], evaluate=evaluate_smape(task, test, report_targets),
                holdout_keys=test["measurement_id"].to_list(),
                scope={"sources": sources, "domains": sorted(set(train["domain"].to_list()))},
                description=(
                    f"{task} surrogate of {', '.join(report_targets)} ({type(reg).__name__}). Sources: "
                    f"{', '.join(sources)}. Split: held-out kernels {', '.join(kernels[:10])}"
                    f"{' ...' if len(kernels) > 10 else ''} ({train.height} train / {test.height} test rows). "
                    + ", ".join(f"test {t} SMAPE {metrics[f'test_{t}_smape']:.1f}%"
                                for t in report_targets if f"test_{t}_smape" in metrics)
                ),
                metric_name="test_mean_smape",
            )  # fmt: skip
        return FpgaTrainResult(run.info.run_id, info.model_uri, version, promoted, metrics, model, test)


def hls4ml_split(store: DatasetStore, config: FpgaTrainConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, test) of the hls4ml rows of ``config.stage``: ``config.test_frac`` of the models
    (kernels) held out by hash (``config.seed``); checked before any run."""
    frame = store.read("fpga")
    frame = frame.filter((pl.col("domain") == "hls4ml") & (pl.col("stage") == config.stage))
    if config.sources:
        frame = frame.filter(pl.col("source").is_in(list(config.sources)))
    frame = frame.filter(pl.col("lut").is_not_null())  # failed syntheses have no labels
    _check(frame, "fpga-hls4ml", HLS4ML_TARGETS)
    train, test = group_split(frame, ["kernel"], test_frac=config.test_frac, seed=config.seed)
    if train.height < 2 or test.height == 0:
        raise TrainingDataError(f"fpga-hls4ml: split left {train.height} train / {test.height} test rows")
    return train, test


def hls4ml_regressor(config: FpgaTrainConfig) -> FpgaRegressor:
    """The (unfitted) ``fpga-hls4ml`` regressor with ``config``'s hyper-parameters."""
    return FpgaRegressor(kind="hls4ml", targets=HLS4ML_TARGETS, max_iter=config.max_iter,
                         learning_rate=config.learning_rate, random_state=config.seed)  # fmt: skip


def train_hls4ml_model(
    store: DatasetStore | None = None, config: FpgaTrainConfig | None = None
) -> FpgaTrainResult:
    config = config or FpgaTrainConfig()
    store = store or DatasetStore()
    train, test = hls4ml_split(store, config)
    reg = hls4ml_regressor(config)
    return _run("fpga-hls4ml", train, test, reg, train.select(HLS4ML_TARGETS), HLS4ML_TARGETS, config, store)


def hlsyn_frame(
    store: DatasetStore, domains: tuple[str, ...] = ("hlsyn",)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """HLSyn/HARP design rows (with a ``tool_tag`` v18/v20/v21 column) and per-kernel graph stats."""
    frame = store.read("fpga").filter(
        pl.col("domain").is_in(list(domains)) & (pl.col("stage") == "hls_estimate")
    )
    frame = frame.with_columns(pl.col("extra").str.json_path_match("$.tool_tag").alias("tool_tag"))
    graphs = store.read("program_graphs")
    graphs = graphs.filter(pl.col("domain") == "hlsyn") if graphs.height else graphs
    return frame, program_graph_stats(graphs)


#: HLSyn's ``min_allowed_latency``: regression keeps designs with perf >= 100 cycles, valid or not.
HLSYN_MIN_CYCLES = 100.0


def hlsyn_protocol_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """HLSyn's regression rows (``baselines/src/data.py`` with ``invalid=False``): every design
    whose latency is >= 100 cycles, INCLUDING invalid designs (over-utilised, util > 1) and designs
    whose resource report is empty (util 0). Reproduces the published train-mean floor exactly."""
    return frame.filter(pl.col("cycles") >= HLSYN_MIN_CYCLES)


def hlsyn_graph_rows(store: DatasetStore) -> pl.DataFrame:
    """The ``program_graphs`` rows of the HLSyn kernels (nodes/edges JSON, one row per kernel)."""
    graphs = store.read("program_graphs")
    return graphs.filter(pl.col("domain") == "hlsyn") if graphs.height else graphs


def regression_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Designs with a latency and resources (zero LUT or cycles mean 'no result', not zero)."""
    return frame.filter((pl.col("cycles") > 0) & (pl.col("lut") > 0))


def train_hlsyn_model(
    store: DatasetStore | None = None, config: FpgaTrainConfig | None = None
) -> FpgaTrainResult:
    config = config or FpgaTrainConfig()
    store = store or DatasetStore()
    frame, gstats = hlsyn_frame(store)
    if config.sources:
        frame = frame.filter(pl.col("source").is_in(list(config.sources)))
    reg_rows = regression_rows(frame)
    _check(reg_rows, "fpga-hlsyn", ("cycles", "lut", "ff", "dsp", "bram"))
    test_kernels = sorted(set(HLSYN_TEST_KERNELS["v18"]) | set(HLSYN_TEST_KERNELS["v20"]))
    is_test = pl.col("kernel").is_in(test_kernels)
    train, test = reg_rows.filter(~is_test), reg_rows.filter(is_test)
    if train.height < 2:
        raise TrainingDataError(f"fpga-hlsyn: only {train.height} training rows outside the held-out kernels")
    if test.height == 0:  # small or custom data: fall back to a kernel split
        train, test = group_split(reg_rows, ["kernel"], test_frac=config.test_frac, seed=config.seed)
    graphs = hlsyn_graph_rows(store)
    cls_rows = frame.filter(pl.col("valid").is_not_null() & ~is_test)
    if config.model == "gnn":
        return _train_hlsyn_gnn(train, test, graphs, config, store)
    if config.model != "tree":
        raise ValueError(f"fpga-hlsyn: model must be 'tree' or 'gnn', got {config.model!r}")
    physics = graphs.height > 0  # loop-nest features + physics targets, as in `hws bench fpga-hlsyn`
    reg = FpgaRegressor(kind="hlsyn", targets=HLSYN_TARGETS, log_target=False, graph_stats=gstats,
                        graphs=graphs if physics else None, physics=physics, max_iter=config.max_iter,
                        min_samples_leaf=HLSYN_TREE_PARAMS["min_samples_leaf"],
                        max_leaf_nodes=HLSYN_TREE_PARAMS["max_leaf_nodes"], learning_rate=config.learning_rate,
                        random_state=config.seed)  # fmt: skip
    return _run("fpga-hlsyn", train, test, reg, hlsyn_targets(train), ("cycles", "lut", "ff", "dsp", "bram"), config,
                store, classifier_rows=cls_rows)  # fmt: skip


def _train_hlsyn_gnn(
    train: pl.DataFrame,
    test: pl.DataFrame,
    graphs: pl.DataFrame,
    config: FpgaTrainConfig,
    store: DatasetStore,
) -> FpgaTrainResult:
    """The program-graph GNN (:mod:`.hlsyn_gnn`) through the same MLflow run/registry path as the tree.

    Only kernels with a program graph can be encoded; the validity output stays empty (null)."""
    from hwsurrogate.surrogates.features.program_graphs import kernel_graphs
    from hwsurrogate.surrogates.models.hlsyn_gnn import HlsynGNNConfig, HlsynGNNRegressor

    if graphs.height == 0:
        raise TrainingDataError(
            "fpga-hlsyn --model gnn needs program graphs: run `hws data import hlsyn` first"
        )
    kg = kernel_graphs(graphs)
    known = pl.col("kernel").is_in(sorted(kg))
    train, test = train.filter(known), test.filter(known)
    if train.height < 2 or test.height == 0:
        raise TrainingDataError(
            f"fpga-hlsyn --model gnn: {train.height} train / {test.height} test rows have a program graph"
        )
    gnn = HlsynGNNRegressor(kg, HlsynGNNConfig(seed=config.seed, max_seconds=config.gnn_seconds))
    return _run("fpga-hlsyn", train, test, gnn, hlsyn_targets(train), ("cycles", "lut", "ff", "dsp", "bram"), config,
                store)  # fmt: skip
