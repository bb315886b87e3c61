"""GEMM runtime / power surrogates: gradient-boosted trees on the roofline-normalised target.

:class:`GemmRegressor` follows the scikit-learn estimator contract. ``X`` is a frame (polars or
pandas) with the ``gemm`` task's input columns; the device descriptor table given as
``devices`` is validated and baked into the fitted estimator (``device_table_``), so a
pickled/logged model predicts for every device it was trained on without the store, and an
unknown device raises :class:`~.features.gemm.UnknownGemmDeviceError` (a ``ValueError``) naming it.

``target="roofline_ratio"`` (default for runtime) fits ``log(runtime / roofline_ms)``: the tree
learns the *utilisation* of the roofline bound, which carries over to larger shapes and to
faster devices; ``target="log"`` fits the log of the raw value (power, or devices without
descriptors).

:class:`GemmPyfunc` is the ``gemm`` task's model: runtime + optional power model,
``energy_j = power_w * runtime_ms / 1000``; :mod:`hwsurrogate.surrogates.registry.pyfunc` logs it
to MLflow.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from hwsurrogate.surrogates.domain import record_domain
from hwsurrogate.surrogates.features.gemm import (
    GEMM_FEATURE_VERSION,
    device_table,
    gemm_feature_names,
)
from hwsurrogate.surrogates.models.gemm_serving import INDEX_ATTR, GemmFrame, GemmPrediction, as_polars
from hwsurrogate.surrogates.models.tree_serving import ServesTrees

__all__ = ["GemmPyfunc", "GemmRegressor", "as_polars", "power_rows"]


class GemmRegressor(GemmPrediction, ServesTrees, RegressorMixin, BaseEstimator):
    """Histogram gradient-boosted trees on analytical GEMM features.

    Parameters
    ----------
    devices : polars.DataFrame or None
        Descriptor table (``devices`` schema) covering every device in ``X``; baked in at fit.
    target : {"roofline_ratio", "log"}
        What the trees fit: ``log(y / roofline_ms)`` or ``log(y)``.
    device_features : bool
        Include absolute device descriptors (peak, bandwidth, SMs, L2, clock) as features.
        Relative features (intensity over ridge point, waves per SM count) are always used.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "devices": [pl.DataFrame, None],
        "target": [StrOptions({"roofline_ratio", "log"})],
        "device_features": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_leaf_nodes": [Interval(Integral, 2, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "l2_regularization": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        devices: pl.DataFrame | None = None,
        target: str = "roofline_ratio",
        device_features: bool = True,
        max_iter: int = 600,
        learning_rate: float = 0.08,
        max_leaf_nodes: int = 63,
        min_samples_leaf: int = 10,
        l2_regularization: float = 0.0,
        random_state: int | None = 0,
    ) -> None:
        self.devices = devices
        self.target = target
        self.device_features = device_features
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop(INDEX_ATTR, None)
        return state

    def fit(self, X: Any, y: Any) -> GemmRegressor:
        self._validate_params()
        if self.devices is None:
            raise ValueError("GemmRegressor needs devices=<descriptor table> covering the training devices")
        y = np.asarray(y, dtype=np.float64).ravel()
        q = as_polars(X)
        if q.height == 0 or y.size == 0:
            raise ValueError("X and y must not be empty")
        if q.height != y.size:
            raise ValueError(f"X has {q.height} rows but y has {y.size}")
        if not np.isfinite(y).all():
            raise ValueError(f"y has {int((~np.isfinite(y)).sum())} non-finite values (NaN/inf)")
        if (y <= 0).any():
            raise ValueError(f"y must be > 0 (log target); {int((y <= 0).sum())} values are <= 0")
        used = q["device_id"].cast(pl.String).unique()
        self.device_table_ = device_table(self.devices).filter(pl.col("device_id").is_in(used.to_list()))
        self.__dict__.pop(INDEX_ATTR, None)
        self.empty_features_ = None
        self.feature_version_ = GEMM_FEATURE_VERSION
        x, roof = self._features(q)
        self.empty_features_ = np.flatnonzero(np.isnan(x).all(axis=0))
        x[:, self.empty_features_] = 0.0
        z = np.log(y / roof) if self.target == "roofline_ratio" else np.log(y)
        self.model_ = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            random_state=self.random_state,
        ).fit(x, z)
        self.feature_names_ = gemm_feature_names(device_features=self.device_features)
        self.n_features_in_ = x.shape[1]
        self.devices_ = self.device_table_["device_id"].to_list()
        # what this model has seen (device, op, dtype, shape ranges): the dispatch checks queries against it
        self.training_domain_ = record_domain("gemm", q)
        return self

    def _log_values(self, x: np.ndarray) -> np.ndarray:
        return self.predict_trees(self.model_, x)

    def _compiled_for(self, rows: int) -> Any:
        return self.compiled_for(self.model_, rows)

    def predict(self, X: Any, *, extra_devices: pl.DataFrame | None = None) -> np.ndarray:
        """Predicted values in the target's unit; ``extra_devices`` adds descriptors of adapted devices."""
        check_is_fitted(self)
        return super().predict(X, extra_devices=extra_devices)

    def predict_log_ratio(self, X: Any, *, extra_devices: pl.DataFrame | None = None) -> np.ndarray:
        """The fitted log-space value (log utilisation ratio or log value) before exponentiation."""
        check_is_fitted(self)
        return super().predict_log_ratio(X, extra_devices=extra_devices)


def power_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows whose power is a trustworthy in-kernel reading (``power_trusted`` not False, power set)."""
    if "power_w" not in frame.columns:
        return frame.head(0)
    keep = pl.col("power_w").is_not_null()
    if "power_trusted" in frame.columns:
        keep = keep & pl.col("power_trusted").fill_null(False)
    return frame.filter(keep)


class GemmPyfunc(GemmFrame):
    """The ``gemm`` task's model: ``predict_frame(queries) -> runtime_ms, power_w, energy_j``.

    Logged to MLflow by :func:`~hwsurrogate.surrogates.registry.pyfunc.log_gemm_model`; usable
    directly too (``hws adapt --task gemm`` keeps it pickled). ``predict_frame``, ``devices`` and
    ``training_domain`` come from :class:`~.gemm_serving.GemmFrame`.
    """

    def __init__(self, runtime: GemmRegressor, power: GemmRegressor | None = None) -> None:
        self.runtime = runtime
        self.power = power
