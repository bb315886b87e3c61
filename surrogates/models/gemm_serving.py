"""How a fitted GEMM model answers, without scikit-learn: shared by the trained and the frozen models.

:class:`GemmPrediction` is everything :class:`~.gemm.GemmRegressor` does at predict time except
walking its trees (features through :mod:`~hwsurrogate.surrogates.features.gemm`, the trained
devices' index, the roofline-ratio target); :class:`GemmFrame` is the task model's
``predict_frame`` (runtime + power -> energy). :class:`~.gemm.GemmRegressor` and
:class:`~.gemm.GemmPyfunc` inherit them and answer with scikit-learn's trees (treelite for small
batches); :class:`FrozenGemmRegressor` and :class:`FrozenGemm` carry the same fitted state with
the trees as :class:`~.tree_serving.FrozenTrees`, so the local served copy of ``hws predict gemm``
answers without importing scikit-learn or pandas (:mod:`.frozen`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.surrogates.features.gemm import (
    GEMM_FEATURE_VERSION,
    DeviceIndex,
    device_table,
    gemm_feature_arrays,
    gemm_feature_names,
    gemm_query_arrays,
    stack_features,
)
from hwsurrogate.surrogates.models.compiled_trees import CompiledTrees, predict_together
from hwsurrogate.surrogates.models.tree_serving import FrozenTrees

__all__ = ["FrozenGemm", "FrozenGemmRegressor", "GemmFrame", "GemmPrediction", "as_polars", "output_frame"]

#: instance attribute holding the trained devices' DeviceIndex (rebuilt after unpickling)
INDEX_ATTR = "_device_index_cache"
#: instance attribute of a GemmFrame: whether the power model's features are the runtime model's
SHARED_ATTR = "_power_shares_features_cache"
#: instance attribute of a GemmFrame: whether the power model's feature matrix is the runtime model's
MATRIX_ATTR = "_power_shares_matrix_cache"


def as_polars(X: Any) -> pl.DataFrame:
    """Accept polars, pandas or a list of dicts as a query frame (pandas is never imported here)."""
    if isinstance(X, pl.DataFrame):
        return X
    pd = sys.modules.get("pandas")  # a pandas frame exists only where pandas is imported
    if pd is not None and isinstance(X, pd.DataFrame):
        return pl.from_pandas(X)
    if isinstance(X, (list, dict)):
        return pl.DataFrame(X)
    raise TypeError(f"queries must be a polars or pandas DataFrame, got {type(X).__name__}")


class GemmPrediction:
    """Predict-time behaviour of a fitted GEMM regressor; subclasses give :meth:`_log_values`.

    Reads the fitted attributes ``target``, ``device_features``, ``device_table_``,
    ``empty_features_`` and ``feature_version_``.
    """

    def _log_values(self, x: np.ndarray) -> np.ndarray:
        """The trees' values (log space) for the feature matrix ``x``."""
        raise NotImplementedError

    def _compiled_for(self, rows: int) -> CompiledTrees | None:
        """The compiled library :meth:`_log_values` would answer ``rows`` rows with, else None
        (:meth:`GemmFrame.predict_frame` then calls it together with the other model's)."""
        return None

    def _device_table(self, extra_devices: pl.DataFrame | None) -> pl.DataFrame | DeviceIndex:
        if extra_devices is not None and extra_devices.height:
            extra = device_table(extra_devices)
            return pl.concat(
                [self.device_table_.filter(~pl.col("device_id").is_in(extra["device_id"].to_list())), extra]
            )
        # the trained devices: indexed once per instance (left out of pickles)
        index = self.__dict__.get(INDEX_ATTR)
        if index is None:
            index = self.__dict__[INDEX_ATTR] = DeviceIndex(self.device_table_)
        return index

    def _check_version(self) -> None:
        fitted_with = getattr(self, "feature_version_", 1)
        if fitted_with != GEMM_FEATURE_VERSION:
            raise ValueError(
                f"this GEMM model was fitted with feature pipeline v{fitted_with}; the installed "
                f"pipeline is v{GEMM_FEATURE_VERSION}: retrain it (`hws train gemm`)"
            )

    def _features_of(
        self, cols: dict[str, np.ndarray], device_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(X, roofline_ms) from :func:`~.features.gemm.gemm_feature_arrays` columns."""
        x = stack_features(cols, gemm_feature_names(device_features=self.device_features))
        roof = cols["roofline_ms"]
        empty = getattr(self, "empty_features_", None)
        if empty is not None and len(empty):
            # descriptors no training device states: a constant (scikit-learn cannot bin all-NaN)
            x[:, empty] = 0.0
        if self.target == "roofline_ratio" and np.count_nonzero(np.isfinite(roof)) != len(roof):
            bad = device_ids[int(np.flatnonzero(~np.isfinite(roof))[0])]
            raise ValueError(
                f"device {bad!r} lacks the peak_fp32_gflops/peak_fp16_gflops and mem_bw_gbs descriptors "
                "that the roofline-ratio target needs"
            )
        return x, roof

    def _features(self, X: Any, extra_devices: pl.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        self._check_version()
        q = gemm_query_arrays(as_polars(X))
        cols = gemm_feature_arrays(q, self._device_table(extra_devices))
        return self._features_of(cols, q["device_id"])

    def _values(self, x: np.ndarray, roof: np.ndarray) -> np.ndarray:
        return self._from_log(self._log_values(x), roof)

    def _from_log(self, z: np.ndarray, roof: np.ndarray) -> np.ndarray:
        """Values in the target's unit from the trees' values ``z`` (log space)."""
        return np.exp(z) * roof if self.target == "roofline_ratio" else np.exp(z)

    def predict(self, X: Any, *, extra_devices: pl.DataFrame | None = None) -> np.ndarray:
        """Predicted values in the target's unit; ``extra_devices`` adds descriptors of adapted devices."""
        return self._values(*self._features(X, extra_devices))

    def predict_log_ratio(self, X: Any, *, extra_devices: pl.DataFrame | None = None) -> np.ndarray:
        """The fitted log-space value (log utilisation ratio or log value) before exponentiation."""
        x, _ = self._features(X, extra_devices)
        return self._log_values(x)

    def _feature_columns(self, q: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:func:`~.features.gemm.gemm_feature_arrays` of checked query arrays on the trained devices."""
        self._check_version()
        return gemm_feature_arrays(q, self._device_table(None))

    def _predict_columns(self, cols: dict[str, np.ndarray], device_ids: np.ndarray) -> np.ndarray:
        """:meth:`predict` from :meth:`_feature_columns` (computed by this model or one with the same
        descriptors for these devices, see :meth:`GemmFrame._power_shares_features`)."""
        self._check_version()
        return self._values(*self._features_of(cols, device_ids))


def _blanked(model: Any) -> np.ndarray:
    """The feature columns a fitted GEMM model sets to 0 (``empty_features_``; none if unset)."""
    empty = getattr(model, "empty_features_", None)
    return np.asarray([] if empty is None else empty, dtype=np.int64).ravel()


class GemmFrame:
    """The ``gemm`` task's ``predict_frame``: ``runtime`` and optional ``power`` (both :class:`GemmPrediction`)."""

    runtime: Any
    power: Any

    @property
    def devices(self) -> list[str]:
        return list(self.runtime.devices_)

    @property
    def training_domain(self) -> dict[str, Any] | None:
        """The runtime model's training domain; None for models fitted before domains were recorded."""
        return getattr(self.runtime, "training_domain_", None)

    def predict_frame(self, queries: Any, *, extra_devices: pl.DataFrame | None = None) -> pl.DataFrame:
        q = as_polars(queries)  # a missing column: gemm_query_arrays names it, on either path
        if extra_devices is not None and extra_devices.height:
            runtime, power = self._predict_with_extra(q, extra_devices)
        else:  # the trained devices: queries checked and features built once for both models
            arrays = gemm_query_arrays(q)
            ids = arrays["device_id"]
            cols = self.runtime._feature_columns(arrays)
            known = self.power._device_table(None).row if self.power is not None else {}
            if known and all(d in known for d in ids) and self._power_shares_features():
                if self._power_shares_matrix():
                    runtime, power = self._predict_both(cols, ids)
                else:
                    runtime = self.runtime._predict_columns(cols, ids)
                    power = self.power._predict_columns(cols, ids)
            else:
                runtime = self.runtime._predict_columns(cols, ids)
                power = np.full(q.height, np.nan)
                if known and (mask := np.fromiter((d in known for d in ids), bool, q.height)).any():
                    part = {k: v[mask] for k, v in arrays.items()}
                    power[mask] = self.power._predict_columns(
                        self.power._feature_columns(part), part["device_id"]
                    )
        return output_frame(runtime, power)

    def _power_shares_features(self) -> bool:
        """Whether every device of the power model has the runtime model's descriptors (as when both
        were fitted on one devices table): then the runtime model's features serve both. Checked
        once per instance."""
        shared = self.__dict__.get(SHARED_ATTR)
        if shared is None:
            mine, theirs = self.power._device_table(None), self.runtime._device_table(None)
            shared = all(
                d in theirs.row
                and all(
                    np.array_equal(v[int(mine.row[d])], theirs.values[c][int(theirs.row[d])], equal_nan=True)
                    for c, v in mine.values.items()
                )
                for d in mine.ids
            )
            self.__dict__[SHARED_ATTR] = shared
        return shared

    def _power_shares_matrix(self) -> bool:
        """Whether the power model's feature matrix is the runtime model's (the same columns and
        blanked columns, and no roofline check the runtime model skips): then one matrix and,
        where both are compiled, one call answer both. Checked once per instance."""
        shared = self.__dict__.get(MATRIX_ATTR)
        if shared is None:
            r, p = self.runtime, self.power
            shared = (
                r.device_features == p.device_features
                and np.array_equal(_blanked(r), _blanked(p))
                and (p.target != "roofline_ratio" or r.target == "roofline_ratio")
            )
            self.__dict__[MATRIX_ATTR] = shared
        return shared

    def _predict_both(self, cols: Mapping[str, np.ndarray], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Runtime and power from one feature matrix (:meth:`_power_shares_matrix`): both models'
        compiled trees in one call (:func:`~.compiled_trees.predict_together`: one copy of the
        rows, one missing-value pass) where both are built, else each model's own trees."""
        runtime, power = self.runtime, self.power
        power._check_version()
        x, roof = runtime._features_of(cols, ids)
        n = len(x)
        libs = (runtime._compiled_for(n), power._compiled_for(n))
        z = predict_together(libs, x) if libs[0] is not None and libs[1] is not None else None
        if z is None:
            return runtime._values(x, roof), power._values(x, roof)
        return runtime._from_log(z[0], roof), power._from_log(z[1], roof)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(SHARED_ATTR, None)
        state.pop(MATRIX_ATTR, None)
        return state

    def _predict_with_extra(
        self, q: pl.DataFrame, extra_devices: pl.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        runtime = self.runtime.predict(q, extra_devices=extra_devices)
        power = np.full(q.height, np.nan)
        if self.power is not None:
            known = set(self.power.devices_) | set(extra_devices["device_id"].to_list())
            mask = q["device_id"].cast(pl.String).is_in(list(known)).to_numpy()
            if mask.any():
                power[mask] = self.power.predict(q.filter(pl.Series(mask)), extra_devices=extra_devices)
        return runtime, power


#: an output frame of up to this many rows is built from Python values (see :func:`output_frame`)
FEW_OUTPUT_ROWS = 24
_OUTPUT_SCHEMA = {"runtime_ms": pl.Float64, "power_w": pl.Float64, "energy_j": pl.Float64}


def output_frame(runtime: np.ndarray, power: np.ndarray) -> pl.DataFrame:
    """The ``gemm`` task's output frame: ``runtime_ms``, ``power_w`` and ``energy_j = power_w *
    runtime_ms / 1000``, NaN power and energy as null ("no value").

    Up to :data:`FEW_OUTPUT_ROWS` rows it is built from Python values (``pl.from_dicts``: ~7 us
    for one row where a frame of numpy columns takes ~20 us); the same frame either way. Larger
    frames from three Series (measured on the 2-core machine, load ~1.7: ~20 us at 22 to 128
    rows, against ~29 us for a frame from a dict of numpy columns)."""
    if len(runtime) <= FEW_OUTPUT_ROWS:
        rows = []
        nulls = False  # Python floats are read as Float64; a column of nulls only is not: the schema then
        for r, p in zip(runtime.tolist(), power.tolist(), strict=True):
            e = p * r / 1000.0  # the same IEEE operations as the columns' below
            if e != e:
                nulls = True
                e = None
            rows.append({"runtime_ms": r, "power_w": None if p != p else p, "energy_j": e})
        return pl.from_dicts(rows, schema=_OUTPUT_SCHEMA if nulls else None)
    energy = power * runtime / 1000.0
    return pl.DataFrame(
        [
            pl.Series("runtime_ms", runtime, dtype=pl.Float64),
            _nan_to_null("power_w", power),
            _nan_to_null("energy_j", energy),
        ]
    )


def _nan_to_null(name: str, values: np.ndarray) -> pl.Series:
    """A Float64 column with NaN as null (what the task's output frame states for "no value")."""
    return pl.Series(name, values, dtype=pl.Float64, nan_to_null=True)


# --------------------------------------------------------------------------- frozen (no scikit-learn)

#: fitted attributes a frozen GEMM regressor keeps (the trees become FrozenTrees)
_STATE = (
    "target",
    "device_features",
    "device_table_",
    "empty_features_",
    "feature_version_",
    "feature_names_",
    "n_features_in_",
    "devices_",
    "training_domain_",
)


class FrozenGemmRegressor(GemmPrediction):
    """A fitted :class:`~.gemm.GemmRegressor`'s state and trees (:class:`~.tree_serving.FrozenTrees`)."""

    def __init__(self, trees: FrozenTrees, state: dict[str, Any]) -> None:
        self.trees = trees
        for name in _STATE:
            if name in state:
                setattr(self, name, state[name])

    @classmethod
    def of(cls, model: Any) -> FrozenGemmRegressor | None:
        """The frozen form of a fitted GemmRegressor, or None where its trees cannot be frozen."""
        trees = FrozenTrees.of(getattr(model, "model_", None))
        if trees is None:
            return None
        return cls(trees, {name: getattr(model, name) for name in _STATE if hasattr(model, name)})

    def _log_values(self, x: np.ndarray) -> np.ndarray:
        return self.trees.predict(x)

    def _compiled_for(self, rows: int) -> CompiledTrees | None:
        return self.trees.compiled_for(rows)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(INDEX_ATTR, None)
        return state


class FrozenGemm(GemmFrame):
    """The frozen form of :class:`~.gemm.GemmPyfunc` (runtime + optional power)."""

    def __init__(self, runtime: FrozenGemmRegressor, power: FrozenGemmRegressor | None = None) -> None:
        self.runtime = runtime
        self.power = power

    @classmethod
    def of(cls, model: Any) -> FrozenGemm | None:
        runtime = FrozenGemmRegressor.of(model.runtime)
        power = FrozenGemmRegressor.of(model.power) if model.power is not None else None
        if runtime is None or (model.power is not None and power is None):
            return None
        return cls(runtime, power)
