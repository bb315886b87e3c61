"""Serving fitted scikit-learn tree ensembles: treelite for small batches, scikit-learn for large ones.

scikit-learn predicts tree by tree, one Cython call (and one OpenMP region) per tree: for the
one-query requests the service answers most, a 600-tree model spends milliseconds in that
dispatch and almost nothing in the trees. treelite's General Tree Inference Library (GTIL,
``treelite.gtil.predict``) walks a whole imported model (``treelite.sklearn.import_model``) in
one C++ call instead. Per row it is slower than scikit-learn's loop, so batches above
:data:`SMALL_BATCH_ROWS` rows go to ``model.predict``. Where tl2cgen and a C compiler are
present, each model version is also compiled once to a shared library (:mod:`.compiled_trees`,
built in a detached process, cached by the hash of the model's bytes); once built,
:class:`TreeRunner` answers through it instead of GTIL, for batches up to
:data:`COMPILED_BATCH_ROWS` rows. The thresholds are measured, not guessed:
``python benchmarks/tree_serving.py`` times both on the served models for growing batches
(results in ``bench-results/tree-serving.json``, figures in ``docs/service.md``).

Answers equal scikit-learn's to 1e-9 relative (not bit for bit: the float sums differ in the
last bits, measured <= 2.3e-15 relative; ``tests/surrogates/test_tree_serving.py`` holds it).

:func:`positive_proba_trees` does the same for a binary classifier's ``predict_proba(x)[:, 1]``
(the HLSyn validity classifier).

:class:`ServesTrees` is the mixin the models use: ``self.predict_trees(model, x)`` builds the
treelite model lazily on the first small batch and keeps it on the instance, excluded from
pickling (a treelite model does not pickle): registered MLflow models and the local pickle
cache hold only the scikit-learn trees, and pickles made before this module load unchanged.
``self.compiled_for(model, rows)`` hands over the loaded compiled library itself, so a caller
with several models on one feature matrix (a GEMM query's runtime and power) calls them at once
(:func:`~.compiled_trees.predict_together`); :meth:`FrozenTrees.compiled_for` does the same.

:class:`FrozenTrees` is a fitted tree model without scikit-learn: its treelite checkpoint
(``treelite.Model.serialize_bytes``) and feature count, answering through its compiled library
(where built) or GTIL at any batch size.
The scikit-learn-free served copies of :mod:`.frozen` hold them, so a one-off ``hws predict``
never imports scikit-learn. This module imports neither scikit-learn nor treelite at import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hwsurrogate.surrogates.models import compiled_trees

__all__ = [
    "COMPILED_BATCH_ROWS",
    "SMALL_BATCH_ROWS",
    "FrozenTrees",
    "ServesTrees",
    "TreeRunner",
    "positive_proba_trees",
    "predict_trees",
    "servable",
    "to_treelite",
]

#: batches up to this many rows go through treelite's GTIL, larger ones through scikit-learn.
#: Measured (``benchmarks/tree_serving.py``, bench-results/tree-serving.json): on the GEMM runtime
#: (79 trees) and power (300 trees) models GTIL on one thread beats scikit-learn on one thread (as
#: the service runs calls under 512 rows) up to 64 rows and loses from 128 on.
SMALL_BATCH_ROWS = 64

#: batches up to this many rows go through the compiled trees where built (:mod:`.compiled_trees`),
#: larger ones through scikit-learn. Measured as SMALL_BATCH_ROWS is (see the benchmark).
COMPILED_BATCH_ROWS = 128

#: instance attribute holding the built treelite models; never pickled
CACHE_ATTR = "_treelite_models"


def servable(model: Any) -> bool:
    """Whether treelite imports ``model`` exactly: a fitted squared-error histogram-GBT regressor,
    a binary histogram-GBT classifier (no categorical splits), or a single-output forest regressor."""
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )

    if type(model) in (HistGradientBoostingRegressor, HistGradientBoostingClassifier):
        categorical = getattr(model, "is_categorical_", None)
        return (
            model.loss in ("squared_error", "log_loss")
            and model.n_trees_per_iteration_ == 1
            and (categorical is None or not np.any(categorical))
            and bool(getattr(model, "_predictors", None))
        )
    if type(model) in (RandomForestRegressor, ExtraTreesRegressor):
        return bool(getattr(model, "estimators_", None)) and model.n_outputs_ == 1
    return False


def _fitted_trees(model: Any) -> int:
    """Identity of the fitted trees (a refit replaces the list, so the cache rebuilds)."""
    return id(getattr(model, "_predictors", None) or model.estimators_)


def _is_regressor(model: Any) -> bool:
    from sklearn.base import is_regressor

    return bool(is_regressor(model))


def _is_binary_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model)) and len(model.classes_) == 2


def to_treelite(model: Any) -> Any:
    """``treelite.sklearn.import_model(model)`` (imports treelite on first use)."""
    import treelite.sklearn

    return treelite.sklearn.import_model(model)


def _treelite(
    model: Any, x: np.ndarray, cache: dict | None, max_rows: int | None, accepts: Callable[[Any], bool]
) -> np.ndarray | None:
    """treelite's answer per row (compiled, else GTIL) for a small batch, or None where
    scikit-learn must answer. ``accepts(model)`` (regressor, binary classifier) is checked with
    :func:`servable` when the model's entry is built; a cached entry skips both."""
    small = SMALL_BATCH_ROWS if max_rows is None else max_rows
    limit = max(small, COMPILED_BATCH_ROWS) if max_rows is None else max_rows
    if x.ndim != 2 or not 0 < x.shape[0] <= limit:
        return None
    entry = cache.get(id(model)) if cache is not None else None
    if entry is None or entry[0] is not model or entry[1] != _fitted_trees(model):
        if x.shape[0] > small or not accepts(model) or not servable(model):
            return None  # compiled trees answer mid-size batches only once built for this model
        entry = None
    if x.shape[1] != model.n_features_in_:
        return None  # scikit-learn's own error names the mismatch (GTIL would pad with NaN)
    if entry is None:
        entry = (model, _fitted_trees(model), TreeRunner(to_treelite(model)))
        if cache is not None:
            cache[id(model)] = entry
    runner = entry[2]
    if x.shape[0] > small and runner.compiled_ready() is None:
        return None
    return runner.predict(x)


def _gtil_rows(tl: Any, x: np.ndarray) -> np.ndarray:
    """One thread of treelite's GTIL on a float64 feature matrix: one value per row."""
    import treelite.gtil

    return treelite.gtil.predict(tl, np.ascontiguousarray(x), nthread=1).reshape(x.shape[0])


class TreeRunner:
    """One treelite model's answers: its compiled library (:mod:`.compiled_trees`) once built and
    verified, treelite's GTIL until then. The first call asks for a build of this model version
    (a detached process); whether it is done is checked at most once a second."""

    __slots__ = ("_next_check", "_requested", "compiled", "key", "model")

    def __init__(self, model: Any, checkpoint: bytes | None = None) -> None:
        self.model = model
        self.key = compiled_trees.model_key(model.serialize_bytes() if checkpoint is None else checkpoint)
        self.compiled: compiled_trees.CompiledTrees | None = None
        self._next_check = 0.0
        self._requested = False

    @property
    def checkpoint(self) -> bytes:
        """The treelite checkpoint, serialised again from the model (the same bytes: treelite's
        format round-trips exactly), so a runner does not hold a second copy of its trees."""
        return self.model.serialize_bytes()

    def compiled_ready(self) -> compiled_trees.CompiledTrees | None:
        """The compiled library when built (checked at most once a second), else None. The build
        is asked for once, again while the cache's build slots are taken (``"busy"``)."""
        if self.compiled is None and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + 1.0
            if compiled_trees.enabled():
                self.compiled = compiled_trees.ready(self.key)
                if self.compiled is None and not self._requested:
                    self._requested = compiled_trees.request_build(self.key, self.checkpoint) != "busy"
        return self.compiled

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One value per row of the float64 matrix ``x`` (compiled where built, else GTIL)."""
        compiled = self.compiled_ready()
        if compiled is not None:
            out = compiled.predict(x)
            if out is not None:
                return out
        return _gtil_rows(self.model, x)


def predict_trees(
    model: Any,
    x: np.ndarray,
    *,
    cache: dict[int, tuple[Any, int, Any]] | None = None,
    max_rows: int | None = None,
) -> np.ndarray:
    """``model.predict(x)`` for a fitted tree regressor; small batches through treelite's GTIL.

    ``cache`` maps ``id(model)`` to ``(model, trees identity, treelite model)``; without one the
    treelite model is rebuilt on every call (tests, one-off use). ``max_rows`` defaults to
    :data:`SMALL_BATCH_ROWS`, read at call time (a benchmark sets it to 0 for scikit-learn only).
    """
    x = np.asarray(x, dtype=np.float64)
    out = _treelite(model, x, cache, max_rows, _is_regressor)
    return model.predict(x) if out is None else out


def positive_proba_trees(
    model: Any,
    x: np.ndarray,
    *,
    cache: dict[int, tuple[Any, int, Any]] | None = None,
    max_rows: int | None = None,
) -> np.ndarray:
    """``model.predict_proba(x)[:, 1]`` for a fitted binary classifier, as :func:`predict_trees`."""
    x = np.asarray(x, dtype=np.float64)
    out = _treelite(model, x, cache, max_rows, _is_binary_classifier)
    return model.predict_proba(x)[:, 1] if out is None else out


class ServesTrees:
    """Mixin for a model holding fitted scikit-learn trees: :meth:`predict_trees` with a per-instance
    treelite cache that pickling leaves out (see the module docstring)."""

    def _tree_cache(self) -> dict[int, tuple[Any, int, Any]]:
        cache = self.__dict__.get(CACHE_ATTR)
        if cache is None:  # first small batch, or an instance unpickled without it
            cache = self.__dict__[CACHE_ATTR] = {}
        return cache

    def predict_trees(self, model: Any, x: np.ndarray) -> np.ndarray:
        """``model.predict(x)``, through treelite for small batches (the built model kept here)."""
        return predict_trees(model, x, cache=self._tree_cache())

    def positive_proba_trees(self, model: Any, x: np.ndarray) -> np.ndarray:
        """``model.predict_proba(x)[:, 1]`` of a binary classifier, as :meth:`predict_trees`."""
        return positive_proba_trees(model, x, cache=self._tree_cache())

    def compiled_for(self, model: Any, rows: int) -> compiled_trees.CompiledTrees | None:
        """The compiled library :meth:`predict_trees` would answer a batch of ``rows`` rows with
        (built and loaded, the batch within :data:`COMPILED_BATCH_ROWS`), else None. Only a model
        that answered a small batch here before has one (that call checked it and asked for the
        build); the caller calls it directly (:func:`~.compiled_trees.predict_together`)."""
        entry = self.__dict__.get(CACHE_ATTR, {}).get(id(model))
        if entry is None or entry[0] is not model or entry[1] != _fitted_trees(model):
            return None
        if not 0 < rows <= COMPILED_BATCH_ROWS:  # read at call time (a benchmark sets it to 0)
            return None
        return entry[2].compiled_ready()

    def __getstate__(self) -> dict[str, Any]:
        parent = getattr(super(), "__getstate__", None)  # BaseEstimator's; object's from Python 3.11
        state = dict(parent() if parent is not None else self.__dict__)
        state.pop(CACHE_ATTR, None)
        return state


class FrozenTrees:
    """A fitted tree regressor (or binary classifier's positive probability) as a treelite checkpoint.

    ``predict(x)`` equals the scikit-learn model's ``predict(x)`` (``predict_proba(x)[:, 1]``) to
    1e-9 relative, through GTIL on one thread, without importing scikit-learn. Pickles as the
    checkpoint bytes (``treelite.Model.serialize_bytes``); the treelite model is rebuilt
    (``deserialize_bytes``) on the first prediction after unpickling.
    """

    __slots__ = ("_model", "checkpoint", "n_features")

    def __init__(self, checkpoint: bytes, n_features: int) -> None:
        self.checkpoint = checkpoint
        self.n_features = int(n_features)
        self._model: Any = None

    @classmethod
    def of(cls, model: Any) -> FrozenTrees | None:
        """The frozen form of a fitted scikit-learn tree model, or None where treelite cannot import it
        exactly (:func:`servable`) or it is a classifier with more than two classes."""
        if model is None or not servable(model):
            return None
        if hasattr(model, "classes_") and len(model.classes_) != 2:
            return None
        return cls(to_treelite(model).serialize_bytes(), model.n_features_in_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One value per row of the float64 feature matrix ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"X has shape {x.shape}; these trees take (n, {self.n_features})")
        if x.shape[0] == 0:
            return np.empty(0)
        if self._model is None:
            import treelite

            self._model = TreeRunner(treelite.Model.deserialize_bytes(self.checkpoint), self.checkpoint)
            self.checkpoint = None  # the treelite model holds the trees; pickling serialises it again
        return self._model.predict(x)

    def compiled_for(self, rows: int) -> compiled_trees.CompiledTrees | None:
        """The compiled library :meth:`predict` answers ``rows`` rows with (once built and
        loaded), else None; only after a first prediction (which asked for the build)."""
        return None if self._model is None or rows <= 0 else self._model.compiled_ready()

    def __getstate__(self) -> dict[str, Any]:
        checkpoint = self.checkpoint if self.checkpoint is not None else self._model.checkpoint
        return {"checkpoint": checkpoint, "n_features": self.n_features}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.checkpoint = state["checkpoint"]
        self.n_features = int(state["n_features"])
        self._model = None
