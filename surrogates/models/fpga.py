"""FPGA surrogates: gradient-boosted trees on hls4ml layer summaries and HLSyn pragma vectors.

:class:`FpgaRegressor` (sklearn contract) fits one histogram-GBT per target on the shared
features of :mod:`.features` (targets share inputs, so the features are computed once).
hls4ml targets are fitted as ``log1p`` (resources span 5 decades; DSP ~ multiplications /
reuse factor is a feature); HLSyn targets are fitted in HLSyn's normalised space
(``perf = log2(1e7 / cycles) / 2``, ``util_* = total / U200 capacity``), the same space the
benchmark scores. :class:`FpgaPyfunc` turns predictions back into the task's output columns
(logged to MLflow by :func:`~hwsurrogate.surrogates.registry.pyfunc.log_fpga_model`).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import (
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from hwsurrogate.progress import step, track
from hwsurrogate.surrogates.domain import record_domain
from hwsurrogate.surrogates.models.fpga_serving import (
    HLS4ML_TARGETS,
    HLSYN_TARGETS,
    U200_CAPACITY,
    FpgaFrame,
    FpgaPrediction,
    as_polars,
    physically_consistent,
)
from hwsurrogate.surrogates.models.tree_serving import ServesTrees

__all__ = [
    "HLS4ML_TARGETS",
    "HLSYN_TARGETS",
    "HLSYN_TREE_PARAMS",
    "U200_CAPACITY",
    "FpgaPyfunc",
    "FpgaRegressor",
    "LogTreeEnsemble",
    "fit_validity_classifier",
    "hlsyn_reported_targets",
    "hlsyn_targets",
    "physically_consistent",
]

#: tree settings for HLSyn, chosen on GroupKFold(5) over the training kernels (summed RMSE v18/v20):
#: leaf >= 20 / 31 leaves / 300 it 2.958/2.532, leaf >= 50 / 15 / 300 2.940/2.475,
#: leaf >= 100 / 15 leaves / 150 it 2.948/2.353 (kept; also the cheapest).
HLSYN_TREE_PARAMS: dict[str, float | int] = {
    "min_samples_leaf": 100,
    "max_leaf_nodes": 15,
    "learning_rate": 0.05,
}


def hlsyn_targets(frame: pl.DataFrame) -> pl.DataFrame:
    """HLSyn's normalised regression targets from cycles and resource totals."""
    return frame.select(
        ((1e7 / pl.col("cycles")).log(2) / 2).alias("perf"),
        *((pl.col(r) / cap).alias(f"util_{r}") for r, cap in U200_CAPACITY.items()),
    )


def hlsyn_reported_targets(frame: pl.DataFrame) -> pl.DataFrame:
    """HLSyn's regression targets exactly as its code builds them (``baselines/src/data.py``):
    ``perf = log2(1e7 / cycles) / 2`` and the tool-REPORTED ``util-*`` fractions (2 decimals;
    0 where the report has no resources), kept in the row's ``extra`` JSON by the importer.
    Falls back to ``total / U200 capacity`` where a row has no reported value."""
    ex = pl.col("extra")
    return frame.select(
        ((1e7 / pl.col("cycles")).log(2) / 2).alias("perf"),
        *(
            ex.str.json_path_match(f"$.util_{r}")
            .cast(pl.Float64, strict=False)
            .fill_null(pl.col(r) / cap)
            .fill_null(0.0)
            .alias(f"util_{r}")
            for r, cap in U200_CAPACITY.items()
        ),
    )


class FpgaRegressor(FpgaPrediction, ServesTrees, RegressorMixin, BaseEstimator):
    """One gradient-boosted tree per target on FPGA design features.

    Parameters
    ----------
    kind : {"hls4ml", "hlsyn"}
        Which feature pipeline (:func:`.features.hls4ml.hls4ml_features` or :func:`.features.hlsyn.hlsyn_features`).
    targets : tuple of str
        Names of the columns of ``y`` (a frame) or of its columns in order (an array).
    log_target : bool
        Fit ``log1p(y)`` (resources, cycles) instead of ``y``.
    graph_stats : polars.DataFrame or None
        Per-kernel program-graph statistics (hlsyn); baked into the fitted model.
    graphs : polars.DataFrame or None
        ``program_graphs`` rows (hlsyn): adds the analytical loop-nest features of
        :func:`.program_graphs.loop_features`; baked into the fitted model.
    physics : bool
        hlsyn only (needs ``graphs``): fit ``perf`` as a residual on ``-0.5 * log2(sequential
        loop iterations)`` and utilisations as ``log2(util + 0.01)``; predictions are returned in
        HLSyn's space. Chosen over plain targets on training-kernel GroupKFold (see docs/fpga-hlsyn.md).
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "kind": [StrOptions({"hls4ml", "hlsyn"})],
        "targets": [tuple, list],
        "log_target": ["boolean"],
        "graph_stats": [pl.DataFrame, None],
        "graphs": [pl.DataFrame, None],
        "physics": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_leaf_nodes": [Interval(Integral, 2, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        kind: str = "hls4ml",
        targets: tuple[str, ...] = HLS4ML_TARGETS,
        log_target: bool = True,
        graph_stats: pl.DataFrame | None = None,
        graphs: pl.DataFrame | None = None,
        physics: bool = False,
        max_iter: int = 400,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 5,
        random_state: int | None = 0,
    ) -> None:
        self.kind = kind
        self.targets = targets
        self.log_target = log_target
        self.graph_stats = graph_stats
        self.graphs = graphs
        self.physics = physics
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> FpgaRegressor:
        self._validate_params()
        q = as_polars(X)
        if q.height == 0:
            raise ValueError("X must not be empty")
        if isinstance(y, pl.DataFrame):
            missing = [t for t in self.targets if t not in y.columns]
            if missing:
                raise ValueError(f"y misses target column(s) {missing}")
            ymat = y.select(pl.col(t).cast(pl.Float64) for t in self.targets).to_numpy()
        else:
            ymat = np.asarray(y, dtype=np.float64).reshape(q.height, -1)
        if ymat.shape != (q.height, len(self.targets)):
            raise ValueError(f"y has shape {ymat.shape}; expected ({q.height}, {len(self.targets)})")
        if self.log_target and (ymat[np.isfinite(ymat)] < 0).any():
            raise ValueError("log_target=True needs y >= 0")
        if self.physics and (self.kind != "hlsyn" or self.graphs is None):
            raise ValueError("physics=True needs kind='hlsyn' and the program graphs (parameter 'graphs')")
        if self.kind == "hls4ml":
            self.parts_ = tuple(sorted(q["part"].cast(pl.String).drop_nulls().unique().to_list()))
            # what this model has seen (part, strategy, io_type, precision and reuse-factor ranges)
            self.training_domain_ = record_domain("fpga-hls4ml", q)
            units = q["bram_unit"].drop_nulls().unique().to_list() if "bram_unit" in q.columns else []
            self.bram_unit_ = units[0] if len(units) == 1 else None
        else:
            self.training_domain_ = record_domain("fpga-hlsyn", q)  # kernels and tools seen
        self.graph_stats_ = self.graph_stats
        self.empty_features_ = None
        with step(f"fpga-{self.kind}: features of {q.height:,} designs"):
            x = self._features(q)
        self.empty_features_ = np.flatnonzero(np.isnan(x).all(axis=0))
        x[:, self.empty_features_] = 0.0
        self.n_features_in_ = x.shape[1]
        self.models_: dict[str, HistGradientBoostingRegressor | None] = {}
        for j, t in track(
            list(enumerate(self.targets)), f"fpga-{self.kind}: fitting {len(self.targets)} targets"
        ):
            ok = np.isfinite(ymat[:, j])
            if ok.sum() < 2:
                self.models_[t] = None  # no usable rows for this target: predicts NaN
                continue
            z = np.log1p(ymat[ok, j]) if self.log_target else ymat[ok, j]
            if self._physics_on(t):
                z = (
                    ymat[ok, j] - self._perf_base(x[ok])
                    if t == "perf"
                    else np.log2(np.clip(ymat[ok, j], 0, None) + 0.01)
                )
            self.models_[t] = HistGradientBoostingRegressor(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf,
                random_state=self.random_state,
            ).fit(x[ok], z)
        self.n_features_in_ = x.shape[1]
        return self

    def _target_values(self, target: str, x: np.ndarray) -> np.ndarray | None:
        m = self.models_[target]
        return None if m is None else self.predict_trees(m, x)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._predict(X)


class LogTreeEnsemble(ServesTrees, RegressorMixin, BaseEstimator):
    """Mean of a histogram-GBT and an extra-trees forest, both fitted on ``log(y)``.

    For positive, multiplicative targets (power): a log-space fit makes the squared loss a
    relative-error loss (close to what MAPE scores), and averaging two different tree
    families lowers the variance of either on kernels unlike the training ones. ``predict``
    returns ``exp`` of the averaged log prediction (a geometric mean of the two models).
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        n_estimators: int = 150,
        min_samples_leaf: int = 3,
        random_state: int | None = 0,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> LogTreeEnsemble:
        self._validate_params()
        x = np.asarray(X, dtype=np.float64)
        yv = np.asarray(y, dtype=np.float64).ravel()
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"X must be a non-empty 2-D array; got shape {x.shape}")
        if yv.shape[0] != x.shape[0]:
            raise ValueError(f"y has {yv.shape[0]} rows; X has {x.shape[0]}")
        bad = ~np.isfinite(yv) | (yv <= 0)
        if bad.any():
            raise ValueError(
                f"y must be finite and > 0 (log target); {int(bad.sum())} rows are not, e.g. row {int(np.flatnonzero(bad)[0])}"
            )
        if not np.isfinite(x).all():
            col = int(np.flatnonzero(~np.isfinite(x).all(axis=0))[0])
            raise ValueError(f"X has NaN/inf values in column {col}")
        z = np.log(yv)
        self.gbt_ = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=self.learning_rate, random_state=self.random_state
        ).fit(x, z)
        self.forest_ = ExtraTreesRegressor(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=0.5,
            n_jobs=1,
            random_state=self.random_state,
        ).fit(x, z)
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {x.shape}; expected (n, {self.n_features_in_})")
        return np.exp((self.predict_trees(self.gbt_, x) + self.predict_trees(self.forest_, x)) / 2)


class FpgaPyfunc(FpgaFrame, ServesTrees):
    """The served model of ``fpga-hls4ml`` / ``fpga-hlsyn``: queries in, the task's outputs out.

    hls4ml outputs are made physically consistent (:func:`physically_consistent`); rows where a
    value had to be clipped carry a ``note`` column (only present when some row has one).
    """

    def __init__(self, task: str, regressor: FpgaRegressor, classifier: Any = None) -> None:
        self.task = task
        self.regressor = regressor
        self.classifier = classifier

    def _valid_prob(self, x: np.ndarray) -> np.ndarray:
        return self.positive_proba_trees(self.classifier, x)


def fit_validity_classifier(
    regressor: FpgaRegressor, X: Any, valid: np.ndarray, *, max_iter: int = 300
) -> Any:
    """Valid/invalid classifier on the regressor's (fitted) feature pipeline."""
    x = regressor._features(X)
    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, random_state=0).fit(
        x, np.asarray(valid, dtype=int)
    )
