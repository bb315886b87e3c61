"""Training of the ``latency`` model: per-device architecture latency models, logged and registered.

Run by ``hws train latency`` (:mod:`hwsurrogate.cli.train`).

One multi-device predictor per space (``nb201``, ``fbnet``, ``ofa``) for every device in the
store (or the ``--device`` ones): boosted trees per device (``--model tree``, default) or one
GNN with a head per device (``--model gnn``). The served pyfunc
(:class:`~hwsurrogate.surrogates.registry.pyfunc.LatencyPyfunc`) answers
``device_id, space, arch_key -> latency_ms``.

Fixed test split (the same for every version, so champions are compared fairly): HELP's test
indices (the 1000 architectures after the first 900 NB201 / 4000 FBNet and OFA) when a space
has them, otherwise the 20 % of architectures with the smallest md5 of their key. Training uses
the other architectures (at most ``--max-train-archs`` per space, lowest indices first).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.api import MODEL_NAMES
from hwsurrogate.surrogates.features import nas as graphs
from hwsurrogate.surrogates.training.latency_data import to_wide
from hwsurrogate.surrogates.training.metrics import spearman
from hwsurrogate.surrogates.training.splits import latency_test_mask

if TYPE_CHECKING:
    from hwsurrogate.surrogates.models.latency_trees import LatencyTreeRegressor

EXPERIMENT = "hws-latency"
ModelKind = Literal["tree", "gnn"]


@dataclass(frozen=True)
class LatencySplit:
    """One space's rows, wide (``arch_key`` + one latency column per device), and its fixed split.

    ``train`` holds every non-test row index, lowest architecture index first (a cap takes the
    first ones); ``test`` the held-out ones.
    """

    wide: pl.DataFrame
    devices: list[str]
    train: np.ndarray
    test: np.ndarray


@dataclass
class LatencyTrainingResult:
    run_id: str
    model_uri: str
    version: str | None
    promoted: bool
    metrics: dict[str, float] = field(default_factory=dict)
    pyfunc: Any = None


def check_latency_frame(frame: pl.DataFrame, *, devices: Sequence[str] | None = None) -> pl.DataFrame:
    """Validate long latency rows before anything is logged; raise :class:`TrainingDataError`."""
    from hwsurrogate.surrogates.registry.tracking import check_training_frame

    check_training_frame(
        frame,
        ["latency_ms"],
        what="latency training data",
        min_rows=1,
        required=("device_id", "space", "arch_key"),
    )
    lat = frame["latency_ms"].cast(pl.Float64)
    bad = lat.is_null() | ~lat.is_finite() | (lat <= 0)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise TrainingDataError(
            f"latency training data: latency_ms must be finite and > 0; {int(bad.sum())} bad rows, first on "
            f"device_id {frame['device_id'][i]!r} arch_key {frame['arch_key'][i]!r} (value {lat[i]!r})"
        )
    spaces = set(frame["space"].unique().to_list())
    unsupported = sorted(spaces - set(graphs.SPACES))
    if unsupported:
        raise TrainingDataError(f"latency training data: space(s) {unsupported} have no architecture encoder")
    if devices:
        present = set(frame["device_id"].unique().to_list())
        empty = [d for d in devices if d not in present]
        if empty:
            raise TrainingDataError(f"latency training data: device_id {empty[0]!r} has no rows")
    for space in sorted(spaces):  # every arch key must parse before a run is started
        graphs.arch_vectors(space, frame.filter(pl.col("space") == space)["arch_key"].unique())
    if "arch_index" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("arch_index"))
    return frame


def split_latency_frame(frame: pl.DataFrame, *, max_train_archs: int = 4000) -> dict[str, LatencySplit]:
    """Each space's :class:`LatencySplit` (see the module doc for the fixed test split); raises
    :class:`TrainingDataError` when fewer than 2 training architectures remain under the cap."""
    splits: dict[str, LatencySplit] = {}
    for space in sorted(frame["space"].unique().to_list()):
        wide, devs = to_wide(frame.filter(pl.col("space") == space))
        test = latency_test_mask(wide, space)
        train_idx = np.flatnonzero(~test)
        if min(len(train_idx), max_train_archs) < 2:
            raise TrainingDataError(
                f"{space}: {min(len(train_idx), max_train_archs)} training architectures; need at least 2"
            )
        splits[space] = LatencySplit(wide, devs, train_idx, np.flatnonzero(test))
    return splits


def fit_latency_space(
    space: str,
    split: LatencySplit,
    *,
    model: ModelKind = "tree",
    max_train_archs: int = 4000,
    gnn_seconds: float = 240.0,
    gnn_config: Any = None,
    tree: LatencyTreeRegressor | None = None,
) -> Any:
    """The space's fitted multi-device predictor on its first ``max_train_archs`` training rows.

    ``tree``: the per-device tree's hyper-parameters (an unfitted :class:`LatencyTreeRegressor`;
    default its defaults); ``gnn_config`` those of the GNN.
    """
    keys = split.wide["arch_key"].to_list()
    Y = split.wide.select(split.devices).to_numpy().astype(float)
    tr = split.train[:max_train_archs]
    return _fit_space(space, [keys[i] for i in tr], Y[tr], split.devices, model, gnn_seconds, gnn_config, tree)


def _fit_space(
    space: str,
    keys: list[str],
    Y: np.ndarray,
    devices: list[str],
    kind: ModelKind,
    gnn_seconds: float,
    gnn_config: Any = None,
    tree: LatencyTreeRegressor | None = None,
) -> Any:
    if kind == "tree":
        from hwsurrogate.surrogates.models.latency_trees import MultiDeviceLatencyTrees

        per_device = {}
        for j, d in enumerate(devices):
            ok = np.isfinite(Y[:, j])
            if ok.sum() < 2:
                raise TrainingDataError(
                    f"device_id {d!r} has {int(ok.sum())} training rows in {space}; need 2"
                )
            per_device[d] = ([k for k, o in zip(keys, ok, strict=True) if o], Y[ok, j])
        return MultiDeviceLatencyTrees(space, tree).fit(per_device, progress=f"{space}: trees per device")
    from hwsurrogate.surrogates.models.latency_gnn import GNNConfig, MultiDeviceLatencyGNN

    cfg = gnn_config or GNNConfig(max_seconds=gnn_seconds)
    return MultiDeviceLatencyGNN(space, devices, cfg).fit(keys, Y)


def _per_device_spearman(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    out = []
    for j in range(truth.shape[1]):
        ok = np.isfinite(truth[:, j])
        out.append(spearman(truth[ok, j], pred[ok, j]) if ok.sum() > 2 else np.nan)
    return np.array(out, dtype=float)


def train_latency_model(
    frame: pl.DataFrame,
    *,
    model: ModelKind = "tree",
    devices: Sequence[str] | None = None,
    max_train_archs: int = 4000,
    gnn_seconds: float = 240.0,
    gnn_config: Any = None,
    register: bool = True,
    data_versions: dict[str, int] | None = None,
    tree: LatencyTreeRegressor | None = None,
    store: DatasetStore | None = None,
) -> LatencyTrainingResult:
    """Train on long latency rows, log to MLflow, register ``hws-latency`` (see module doc).

    ``data_versions``: the store table versions ``frame`` was read at (``store.read_versions``),
    logged as the run's ``data_versions`` param. ``tree``: the per-device trees' hyper-parameters
    (an unfitted :class:`~hwsurrogate.surrogates.models.latency_trees.LatencyTreeRegressor`).
    ``store``: the store ``frame`` came from, logged as the dataset's source (default: the configured one).
    """
    import mlflow

    from hwsurrogate.surrogates.registry.pyfunc import LatencyPyfunc, log_latency_model
    from hwsurrogate.surrogates.registry.tracking import (
        dataset_source,
        log_data_versions,
        log_regression_report,
        log_training_dataset,
        register_and_promote,
        start_run,
    )

    if model not in ("tree", "gnn"):
        raise ValueError(f"model must be 'tree' or 'gnn', got {model!r}")
    frame = check_latency_frame(frame, devices=devices)
    if devices:
        frame = frame.filter(pl.col("device_id").is_in(list(devices)))
    spaces = sorted(frame["space"].unique().to_list())
    # ---- split (no MLflow yet: a bad frame raises before a run exists)
    prepared = split_latency_frame(frame, max_train_archs=max_train_archs)
    t0 = time.perf_counter()
    with start_run(EXPERIMENT, run_name=f"latency-{model}", task="latency", model_kind=model) as run:
        log_data_versions(data_versions or {})
        mlflow.log_params(
            {
                "model": model,
                "spaces": ",".join(spaces),
                "n_devices": int(frame["device_id"].n_unique()),
                "max_train_archs": max_train_archs,
                "test_split": "HELP test indices (900/4000 + 1000), else 20% by md5(arch_key)",
            }
        )
        if model == "tree" and tree is not None:
            mlflow.log_params({f"tree.{k}": v for k, v in tree.get_params().items() if k != "space"})
        log_training_dataset(
            frame.select("device_id", "space", "arch_index", "arch_key", "latency_ms"),
            name="latency",
            source=dataset_source(store, "latency"),
            targets="latency_ms",
        )
        models: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for space in spaces:
            p = prepared[space]
            wide, devs = p.wide, p.devices
            keys = wide["arch_key"].to_list()
            Y = wide.select(devs).to_numpy().astype(float)
            tr = p.train[:max_train_archs]
            fitted = fit_latency_space(space, p, model=model, max_train_archs=max_train_archs,
                                       gnn_seconds=gnn_seconds, gnn_config=gnn_config, tree=tree)  # fmt: skip
            models[space] = fitted
            for split, idx in (("train", tr), ("test", p.test)):
                if len(idx) == 0:
                    continue
                sub_keys = [keys[i] for i in idx]
                P = fitted.predict_all(sub_keys)
                T = Y[idx]
                ok = np.isfinite(T)
                rep = log_regression_report(T[ok], P[ok], split=f"{split}_{space}", target="latency_ms")
                rho = _per_device_spearman(T, P)
                metrics[f"{split}_{space}_mean_device_spearman"] = float(np.nanmean(rho))
                metrics[f"{split}_{space}_mape"] = rep["mape"]
                for d, r in zip(devs, rho, strict=True):
                    if np.isfinite(r):
                        mlflow.log_metric(f"{split}_{space}_spearman/{d}", float(r))
        mlflow.log_metrics(metrics)
        mlflow.log_metric("train_seconds", time.perf_counter() - t0)
        if model == "gnn":
            mlflow.log_dict({s: m.params() for s, m in models.items()}, "gnn_config.json")
        pyfunc = LatencyPyfunc(models, kind=model)
        mlflow.log_dict(pyfunc.devices, "devices.json")
        first = frame.group_by("space").first().sort("space")
        example = first.select("device_id", "space", "arch_key").to_pandas()
        info = log_latency_model(pyfunc, example)
    test_queries = latency_test_queries(prepared)
    version, promoted = None, False
    if register:
        all_devices = sorted(frame["device_id"].unique().to_list())
        test_metrics = [
            v for k, v in metrics.items() if k.startswith("test_") and k.endswith("_mean_device_spearman")
        ]
        version, promoted = register_and_promote(
            info.model_uri,
            MODEL_NAMES["latency"],
            evaluate=evaluate_spearman(test_queries),
            holdout_keys=test_queries["key"].to_list() if test_queries.height else [],
            scope={"spaces": spaces, "devices": all_devices},
            description=(
                f"Latency surrogate ({model}) of {', '.join(spaces)} on {len(all_devices)} device(s): "
                f"{', '.join(all_devices[:10])}{' ...' if len(all_devices) > 10 else ''}. Split: HELP's test "
                f"architectures (900/4000 + 1000), else 20% by md5(arch_key); at most {max_train_archs} "
                f"training architectures per space. Test mean per-device Spearman "
                f"{float(np.mean(test_metrics)) if test_metrics else float('nan'):.3f}."
            ),
            higher_is_better=True,
            metric_name="test_mean_device_spearman",
        )
    return LatencyTrainingResult(
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        version=version,
        promoted=promoted,
        metrics=metrics,
        pyfunc=pyfunc,
    )


def latency_test_queries(splits: dict[str, LatencySplit]) -> pl.DataFrame:
    """The held-out rows, long: ``arch_key, device_id, latency_ms, space`` and their ``key``
    (``space|arch_key|device_id``, what a version records as its held-out rows)."""
    parts = []
    for space, p in splits.items():
        wide = p.wide[p.test]
        long = wide.unpivot(
            index=["arch_key"], on=p.devices, variable_name="device_id", value_name="latency_ms"
        )
        parts.append(long.drop_nulls("latency_ms").with_columns(pl.lit(space).alias("space")))
    if not parts:
        return pl.DataFrame()
    test = pl.concat(parts, how="diagonal")
    return test.with_columns(pl.concat_str("space", "arch_key", "device_id", separator="|").alias("key"))


def evaluate_spearman(test: pl.DataFrame):
    """Score a registered model URI or a fitted model (``hws tune``'s trials) on held-out rows
    (:func:`latency_test_queries`): ``evaluate(model, keys)``, see :func:`_evaluate`."""

    def evaluate(model: Any, keys: frozenset[str] | None) -> float:
        return _evaluate(model, test, keys)

    return evaluate


def _evaluate(model: Any, test: pl.DataFrame, keys: frozenset[str] | None = None) -> float:
    """Mean per-(space, device) Spearman of a model (URI or fitted) on held-out rows (-1 if it cannot
    answer); ``keys`` (``space|arch_key|device_id``) restricts the rows, ``None`` keeps all."""
    from hwsurrogate.surrogates.registry.tracking import predict_with

    if keys is not None and test.height:
        test = test.filter(pl.col("key").is_in(sorted(keys)))
    if test.height == 0:
        return float("nan")
    if isinstance(model, str):
        import mlflow

        model = mlflow.pyfunc.load_model(model)  # loaded outside the try: a broken URI is an error
    try:
        pred = predict_with(model, test.select("device_id", "space", "arch_key"))["latency_ms"].to_numpy()
    except Exception:  # an older champion that does not know some device or space loses
        return -1.0
    scored = test.with_columns(pl.Series("pred", pred))
    rhos = [
        spearman(g["latency_ms"], g["pred"]) for _, g in scored.group_by("space", "device_id") if g.height > 2
    ]
    return float(np.nanmean(rhos)) if rhos else float("nan")


def latency_training_frame(store: DatasetStore, space: str = "all") -> pl.DataFrame:
    """Long latency rows of ``space`` (``"all"``: every space with an encoder) for training.

    Raises :class:`TrainingDataError` when the store has none.
    """
    scan = store.scan("latency")
    if space != "all":
        scan = scan.filter(pl.col("space") == space)
    else:
        scan = scan.filter(pl.col("space").is_in(list(graphs.SPACES)))
    frame = scan.select("device_id", "space", "arch_index", "arch_key", "latency_ms").collect()
    if frame.height == 0:
        raise TrainingDataError(
            "no latency rows in the store; run `hws data import help` (and latbench) first"
        )
    return frame
