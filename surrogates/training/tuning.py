"""What ``hws tune TASK`` may search, and each task's search set-up (no Ray here).

:data:`TUNABLE` names, per task, the hyper-parameters a search space may vary and the values
each accepts (:class:`Param`); :func:`parse_space` checks a ``--space`` JSON against it, naming
the parameter or value it refuses. :func:`tune_setup` prepares one task's search from the store,
with the task's own functions, so a search sees what ``hws train TASK`` sees:

- the task's fixed held-out split, made once (gemm: shapes; latency: HELP's test architectures;
  fpga-hls4ml: models);
- ``fit(config)``: the task's model fitted on the training part with ``config`` over the base
  configuration (run in a Ray worker by :func:`hwsurrogate.surrogates.distributed.tune_task`);
- ``evaluate(model, keys)``: the task's promotion score, the very function its ``train_*_model``
  hands to :func:`~hwsurrogate.surrogates.registry.tracking.register_and_promote`, so a trial is
  scored on the same rows and by the same metric as a registered version;
- ``train_winner(config)``: the task's ``train_*_model`` with the winning values (it registers,
  and ``register_and_promote`` decides promotion).

Tunable: ``gemm`` (:class:`~.gemm.GemmTrainConfig`), ``latency`` (the per-device trees,
:class:`~hwsurrogate.surrogates.models.latency_trees.LatencyTreeRegressor`, and the cap on
training architectures) and ``fpga-hls4ml`` (:class:`~.fpga.FpgaTrainConfig`). A task is added
with its parameters in :data:`TUNABLE`, a default space and a ``_<task>_setup`` function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.datasets.store import DatasetStore

__all__ = ["DEFAULT_SPACES", "TUNABLE", "Param", "TuneSetup", "parse_space", "tune_setup"]


@dataclass(frozen=True)
class Param:
    """One tunable hyper-parameter: its type and the interval its values lie in."""

    kind: type  # int or float
    low: float = 0.0
    low_open: bool = True  # (low, ...) rather than [low, ...)
    high: float | None = None  # inclusive

    def describe(self) -> str:
        """``positive ints``, ``floats >= 0``, ``ints >= 2`` ... (what an error message says)."""
        name = f"{self.kind.__name__}s"
        if self.low == 0 and self.low_open and self.high is None:
            return f"positive {name}"
        bound = f"{name} {'>' if self.low_open else '>='} {self.low:g}"
        return bound + (f" and <= {self.high:g}" if self.high is not None else "")

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if value < self.low or (self.low_open and value == self.low):
            return False
        return self.high is None or value <= self.high


_TREE_PARAMS = {"max_iter": Param(int), "learning_rate": Param(float)}

#: tasks ``hws tune`` searches, with the parameters a search space may name
TUNABLE: dict[str, dict[str, Param]] = {
    "gemm": _TREE_PARAMS | {"max_train_rows": Param(int)},
    "latency": _TREE_PARAMS | {
        "max_leaf_nodes": Param(int, 2, low_open=False), "min_samples_leaf": Param(int),
        "l2_regularization": Param(float, 0, low_open=False), "max_train_archs": Param(int, 2, low_open=False),
    },  # fmt: skip
    "fpga-hls4ml": dict(_TREE_PARAMS),
}
#: the search space when ``--space`` is not given: every combination is one trial
DEFAULT_SPACES: dict[str, dict[str, list[Any]]] = {
    "gemm": {"max_iter": [100, 300], "learning_rate": [0.05, 0.1, 0.2]},
    "latency": {"max_iter": [150, 300], "learning_rate": [0.05, 0.1]},
    "fpga-hls4ml": {"max_iter": [150, 300], "learning_rate": [0.05, 0.1]},
}


def parse_space(task: str, text: str | None) -> dict[str, list[Any]]:
    """A search space from JSON (``{"max_iter": [100, 300]}``); every key and value is checked by name."""
    if task not in TUNABLE:
        raise ValueError(f"hws tune: task {task!r} cannot be tuned; tunable tasks: {sorted(TUNABLE)}")
    if text is None:
        return {k: list(v) for k, v in DEFAULT_SPACES[task].items()}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--space: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            '--space: expected a JSON object of parameter -> list of values, e.g. {"max_iter": [100, 300]}'
        )
    allowed = TUNABLE[task]
    space: dict[str, list[Any]] = {}
    for key, values in raw.items():
        if key not in allowed:
            raise ValueError(f"--space: {task} has no parameter {key!r}; tunable: {sorted(allowed)}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"--space: {key} must be a non-empty list of values, got {values!r}")
        param = allowed[key]
        for v in values:
            if not param.accepts(v):
                raise ValueError(f"--space: {key} values must be {param.describe()}, got {v!r}")
        space[key] = [param.kind(v) for v in values]
    return space


@dataclass(frozen=True)
class TuneSetup:
    """One task's search, prepared on the driver (see the module doc). ``fit`` and ``evaluate``
    are picklable: they travel to the Ray workers with the training and held-out rows."""

    task: str
    experiment: str  # the MLflow experiment of the task's training runs
    metric: str  # the held-out score of every trial, e.g. test_runtime_mape
    higher_is_better: bool
    fit: Callable[[dict[str, Any]], Any]
    evaluate: Callable[[Any, frozenset[str] | None], float]
    holdout_keys: frozenset[str]  # what the task's versions record as their held-out rows
    train_winner: Callable[[dict[str, Any]], tuple[str | None, bool]]
    base: dict[str, Any]  # the configuration every trial starts from (logged on the parent run)
    split: str  # how the held-out rows were chosen (logged)
    n_train: int
    n_test: int

    @property
    def shared_metric(self) -> str:
        """The score on the rows held out from the champion too (what promotion compares)."""
        return "shared_" + self.metric.removeprefix("test_")


def tune_setup(
    task: str,
    store: DatasetStore | None = None,
    *,
    sources: Sequence[str] = (),
    devices: Sequence[str] = (),
    arch_space: str = "all",
    test_frac: float | None = None,
    seed: int | None = None,
) -> TuneSetup:
    """Read and split ``task``'s rows once (raising before any run on bad data); its :class:`TuneSetup`.

    Options a task does not take are refused by name: ``devices`` (not fpga-hls4ml), ``sources``
    (not latency), ``arch_space`` (latency only), ``test_frac`` and ``seed`` (latency's split is fixed).
    """
    if task not in TUNABLE:
        raise ValueError(f"hws tune: task {task!r} cannot be tuned; tunable tasks: {sorted(TUNABLE)}")
    store = store or DatasetStore()
    refused = {
        "gemm": {"--arch-space": arch_space != "all"},
        "latency": {"--source": bool(sources), "--test-frac": test_frac is not None, "--seed": seed is not None},
        "fpga-hls4ml": {"--device": bool(devices), "--arch-space": arch_space != "all"},
    }[task]  # fmt: skip
    given = [option for option, present in refused.items() if present]
    if given:
        raise ValueError(f"hws tune {task}: {given[0]} does not apply to {task}"
                         + (" (its held-out split is HELP's fixed test architectures)" if task == "latency" else ""))  # fmt: skip
    frac = 0.2 if test_frac is None else test_frac
    if task == "gemm":
        return _gemm_setup(store, tuple(sources), tuple(devices), frac, seed or 0)
    if task == "latency":
        return _latency_setup(store, tuple(devices), arch_space)
    return _hls4ml_setup(store, tuple(sources), frac, seed or 0)


# ------------------------------------------------------------------------------------------ gemm
def _fit_gemm(config: dict[str, Any], *, train: pl.DataFrame, devices: pl.DataFrame, base: Any) -> Any:
    from hwsurrogate.surrogates.training.gemm import fit_gemm

    return fit_gemm(train, devices, replace(base, **config))


def _gemm_setup(store: DatasetStore, sources: tuple[str, ...], devices: tuple[str, ...], test_frac: float,
                seed: int) -> TuneSetup:  # fmt: skip
    from hwsurrogate.surrogates.training.gemm import (
        EXPERIMENT,
        GemmTrainConfig,
        evaluate_mape,
        load_gemm_frame,
        split_gemm_frame,
        train_gemm_model,
    )

    base = GemmTrainConfig(sources=sources, devices=devices, test_frac=test_frac, seed=seed)
    frame, described = load_gemm_frame(store, base)
    train, test = split_gemm_frame(frame, base)

    def train_winner(best: dict[str, Any]) -> tuple[str | None, bool]:
        res = train_gemm_model(store, replace(base, **best, register=True))
        return res.version, res.promoted

    return TuneSetup(
        "gemm", EXPERIMENT, "test_runtime_mape", False, partial(_fit_gemm, train=train, devices=described, base=base),
        evaluate_mape(test), frozenset(test["measurement_id"].to_list()), train_winner, asdict(base),
        "shape(m,n,k,batch)", train.height, test.height,
    )  # fmt: skip


# --------------------------------------------------------------------------------------- latency
#: what a latency trial runs when its space does not set a value (``hws train latency``'s defaults)
LATENCY_MAX_TRAIN_ARCHS = 4000


def _fit_latency(config: dict[str, Any], *, splits: dict[str, Any]) -> Any:
    from hwsurrogate.surrogates.models.latency_trees import LatencyTreeRegressor
    from hwsurrogate.surrogates.registry.pyfunc import LatencyPyfunc
    from hwsurrogate.surrogates.training.latency import fit_latency_space

    tree = {k: v for k, v in config.items() if k != "max_train_archs"}
    cap = int(config.get("max_train_archs", LATENCY_MAX_TRAIN_ARCHS))
    models = {space: fit_latency_space(space, split, model="tree", max_train_archs=cap,
                                       tree=LatencyTreeRegressor(space, **tree))
              for space, split in splits.items()}  # fmt: skip
    return LatencyPyfunc(models, kind="tree")


def _latency_setup(store: DatasetStore, devices: tuple[str, ...], arch_space: str) -> TuneSetup:
    from hwsurrogate.surrogates.models.latency_trees import LatencyTreeRegressor
    from hwsurrogate.surrogates.training.latency import (
        EXPERIMENT,
        check_latency_frame,
        evaluate_spearman,
        latency_test_queries,
        latency_training_frame,
        split_latency_frame,
        train_latency_model,
    )

    frame = check_latency_frame(latency_training_frame(store, arch_space), devices=devices or None)
    if devices:
        frame = frame.filter(pl.col("device_id").is_in(list(devices)))
    splits = split_latency_frame(frame, max_train_archs=2)  # every trial's cap is >= 2
    test = latency_test_queries(splits)

    def train_winner(best: dict[str, Any]) -> tuple[str | None, bool]:
        tree = LatencyTreeRegressor(**{k: v for k, v in best.items() if k != "max_train_archs"})
        res = train_latency_model(frame, model="tree", devices=devices or None, tree=tree, register=True,
                                  max_train_archs=int(best.get("max_train_archs", LATENCY_MAX_TRAIN_ARCHS)),
                                  data_versions=store.read_versions)  # fmt: skip
        return res.version, res.promoted

    n_train = sum(len(s.train[:LATENCY_MAX_TRAIN_ARCHS]) for s in splits.values())
    base = {"model": "tree", "arch_space": arch_space, "devices": list(devices),
            "max_train_archs": LATENCY_MAX_TRAIN_ARCHS} | {
        k: v for k, v in LatencyTreeRegressor().get_params().items() if k != "space"}  # fmt: skip
    return TuneSetup(
        "latency", EXPERIMENT, "test_mean_device_spearman", True, partial(_fit_latency, splits=splits),
        evaluate_spearman(test), frozenset(test["key"].to_list()) if test.height else frozenset(), train_winner,
        base, "HELP test indices (900/4000 + 1000), else 20% by md5(arch_key)", n_train, test.height,
    )  # fmt: skip


# ----------------------------------------------------------------------------------- fpga-hls4ml
def _fit_hls4ml(config: dict[str, Any], *, train: pl.DataFrame, base: Any) -> Any:
    from hwsurrogate.surrogates.models.fpga import HLS4ML_TARGETS, FpgaPyfunc
    from hwsurrogate.surrogates.training.fpga import hls4ml_regressor

    reg = hls4ml_regressor(replace(base, **config))
    return FpgaPyfunc("fpga-hls4ml", reg.fit(train, train.select(HLS4ML_TARGETS)))


def _hls4ml_setup(store: DatasetStore, sources: tuple[str, ...], test_frac: float, seed: int) -> TuneSetup:
    from hwsurrogate.surrogates.models.fpga import HLS4ML_TARGETS
    from hwsurrogate.surrogates.training.fpga import (
        FpgaTrainConfig,
        evaluate_smape,
        hls4ml_split,
        train_hls4ml_model,
    )

    base = FpgaTrainConfig(sources=sources, test_frac=test_frac, seed=seed)
    train, test = hls4ml_split(store, base)

    def train_winner(best: dict[str, Any]) -> tuple[str | None, bool]:
        res = train_hls4ml_model(store, replace(base, **best, register=True))
        return res.version, res.promoted

    return TuneSetup(
        "fpga-hls4ml", "fpga", "test_mean_smape", False, partial(_fit_hls4ml, train=train, base=base),
        evaluate_smape("fpga-hls4ml", test, HLS4ML_TARGETS), frozenset(test["measurement_id"].to_list()),
        train_winner, asdict(base), f"{test_frac:.0%} of the models (kernel) by hash, seed {seed}",
        train.height, test.height,
    )  # fmt: skip
