"""Gradient-boosted trees on flat architecture vectors, one per device, log-latency target.

:class:`LatencyTreeRegressor` follows the scikit-learn estimator contract; ``X`` is a 1-D array
of canonical arch keys of one space (features come from :func:`.graphs.arch_vectors`, the one
feature pipeline shared by training and serving). :class:`MultiDeviceLatencyTrees` keeps one
fitted regressor per device and answers ``predict(arch_keys, device_ids)``.
"""

from __future__ import annotations

import lzma
import pickle
import zlib
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from hwsurrogate.surrogates.features import nas as graphs
from hwsurrogate.surrogates.models import tree_serving
from hwsurrogate.surrogates.models.latency_serving import PerDeviceLatency
from hwsurrogate.surrogates.models.tree_serving import ServesTrees

__all__ = ["LatencyTreeRegressor", "MultiDeviceLatencyTrees"]

_LZMA_MAGIC = b"\xfd7zXZ\x00"  # how pickles made before the switch to zlib start their tree bytes


def _keys(X: object) -> list[str]:
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"X must be a 1-D array of arch keys, got shape {arr.shape}")
    return [str(k) for k in arr]


class LatencyTreeRegressor(ServesTrees, RegressorMixin, BaseEstimator):
    """HistGradientBoosting on ``graphs.arch_vectors(space, X)`` predicting ``log(latency_ms)``.

    Runs single-threaded (``n_threads=1``): on a shared 2-core machine OpenMP threads slow
    boosting down by an order of magnitude.
    """

    _parameter_constraints: dict = {
        "space": [StrOptions(set(graphs.SPACES))],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_leaf_nodes": [Interval(Integral, 2, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "l2_regularization": [Interval(Real, 0, None, closed="left")],
        "n_threads": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        space: str = "nb201",
        *,
        max_iter: int = 300,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 5,
        l2_regularization: float = 0.0,
        n_threads: int = 1,
        random_state: int | None = 0,
    ) -> None:
        self.space = space
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X: object, y: object) -> LatencyTreeRegressor:
        self._validate_params()
        keys = _keys(X)
        y = np.asarray(y, dtype=float)
        if len(keys) == 0:
            raise ValueError("X must not be empty")
        if y.shape != (len(keys),):
            raise ValueError(f"y must have shape ({len(keys)},), got {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError(f"y (latency_ms) has {int((~np.isfinite(y)).sum())} non-finite values")
        if (y <= 0).any():
            raise ValueError(f"y (latency_ms) must be > 0; {int((y <= 0).sum())} values are <= 0")
        features = graphs.arch_vectors(self.space, keys)
        self.regressor_ = HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=min(self.min_samples_leaf, max(1, len(keys) // 2)),
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.random_state,
        )
        with threadpool_limits(self.n_threads):
            self.regressor_.fit(features, np.log(y))
        self.n_features_in_ = features.shape[1]
        return self

    def predict(self, X: object) -> np.ndarray:
        check_is_fitted(self)
        return np.exp(self.predict_log(graphs.arch_vectors(self.space, _keys(X))))

    def predict_log(self, features: np.ndarray) -> np.ndarray:
        """``log(latency_ms)`` from ``arch_vectors`` rows: treelite for small batches, else scikit-learn."""
        if len(features) <= tree_serving.SMALL_BATCH_ROWS:
            return self.predict_trees(self.regressor_, features)
        with threadpool_limits(self.n_threads):
            return self.regressor_.predict(features)


class MultiDeviceLatencyTrees(PerDeviceLatency):
    """One :class:`LatencyTreeRegressor` per device of one space (``predict`` from
    :class:`~.latency_serving.PerDeviceLatency`)."""

    def __init__(self, space: str, template: LatencyTreeRegressor | None = None) -> None:
        self.space = graphs.check_space(space)
        self.template = template or LatencyTreeRegressor(space)

    @property
    def devices(self) -> list[str]:
        return list(self.models_)

    # Pickled (e.g. inside the MLflow model) with the fitted trees zlib-compressed: a boosted
    # model's node arrays shrink ~3.4x. zlib rather than lzma: for 40 devices (21 MB of trees)
    # lzma gave 4.9 MB in 16 s and 0.29 s to decompress, zlib 6.1 MB in 0.6 s and 0.07 s, and
    # this runs on every `hws train latency` and on the first `hws predict latency` after it.
    # Pickles written with lzma (before) still load.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if "models_" in state:
            state["models_"] = zlib.compress(pickle.dumps(state["models_"], protocol=pickle.HIGHEST_PROTOCOL), 6)
        return state

    def __setstate__(self, state: dict) -> None:
        packed = state.get("models_")
        if isinstance(packed, bytes):
            raw = lzma.decompress(packed) if packed.startswith(_LZMA_MAGIC) else zlib.decompress(packed)
            state["models_"] = pickle.loads(raw)
        self.__dict__.update(state)

    def fit(
        self, per_device: dict[str, tuple[Sequence[str], np.ndarray]], *, progress: str | None = None
    ) -> MultiDeviceLatencyTrees:
        """``per_device[device_id] = (arch_keys, latency_ms)``; ``progress`` labels a progress bar."""
        from sklearn.base import clone

        from hwsurrogate.progress import track

        self.models_: dict[str, LatencyTreeRegressor] = {}
        items = list(per_device.items())
        for device, (keys, y) in track(items, progress or f"{self.space}: trees") if progress else items:
            self.models_[device] = clone(self.template).set_params(space=self.space).fit(keys, y)
        return self

    def predict_all(self, arch_keys: Sequence[str]) -> np.ndarray:
        """``(n_archs, n_devices)`` latency in ms, columns in :attr:`devices` order."""
        if not hasattr(self, "models_"):
            raise RuntimeError("MultiDeviceLatencyTrees is not fitted; call fit() first")
        features = graphs.arch_vectors(self.space, list(arch_keys))
        out = np.empty((len(arch_keys), len(self.models_)))
        if len(arch_keys):
            for j, model in enumerate(self.models_.values()):
                out[:, j] = np.exp(model.predict_log(features))
        return out

    def _log_latency(self, device: str, features: np.ndarray) -> np.ndarray:
        return self.models_[device].predict_log(features)

    def predict(self, arch_keys: Sequence[str], device_ids: Sequence[str]) -> np.ndarray:
        """Latency in ms of ``arch_keys[i]`` on ``device_ids[i]`` (features computed once)."""
        if not hasattr(self, "models_"):
            raise RuntimeError("MultiDeviceLatencyTrees is not fitted; call fit() first")
        return super().predict(arch_keys, device_ids)
