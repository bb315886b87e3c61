"""Served models without scikit-learn: what a one-off ``hws predict`` unpickles.

:func:`freeze` turns a task's fitted model (the object the MLflow pyfunc wraps:
:class:`~.gemm.GemmPyfunc`, :class:`~.fpga.FpgaPyfunc`, or the latency model's per-space tree
predictors) into its frozen form: the same fitted state (device tables, feature settings, training
domain) with every tree model as a treelite checkpoint (:class:`~.tree_serving.FrozenTrees`), and
the predict-time code shared with the trained models (:mod:`.gemm_serving`, :mod:`.fpga_serving`,
:mod:`.latency_serving`). Unpickling it imports treelite, numpy and polars, never scikit-learn,
pandas, scipy.stats, torch or MLflow.

:class:`FrozenServed` answers batches of up to :data:`~.tree_serving.SMALL_BATCH_ROWS` rows with
the frozen form (the trees' answers equal scikit-learn's to 1e-9 relative: the same treelite
import the trained models serve small batches with); larger batches and every other use of the
model (an adapted GEMM device's correction, attributes only the trained model has) go to the
full model, loaded on first need by the loader the caller attaches
(:func:`~hwsurrogate.surrogates.registry.cache.load_served` attaches its pickled copy).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from hwsurrogate.surrogates.models import tree_serving

__all__ = ["FROZEN_FORMAT", "FrozenServed", "freeze"]

#: bumped whenever the frozen classes change incompatibly; a copy of another format is not used
FROZEN_FORMAT = 1


class FrozenServed:
    """A served model's frozen form for small batches, its full model (loaded lazily) for the rest."""

    def __init__(self, task: str, frozen: Any) -> None:
        self.task = task
        self.frozen = frozen
        self.format = FROZEN_FORMAT
        self._load_full: Callable[[], Any] | None = None
        self._full: Any = None

    def attach(self, load_full: Callable[[], Any]) -> FrozenServed:
        """Set how the full (scikit-learn) model is loaded when a call needs it."""
        self._load_full = load_full
        return self

    def full(self) -> Any:
        """The full model, loaded once (``RuntimeError`` when no loader is attached)."""
        if self._full is None:
            if self._load_full is None:
                raise RuntimeError("this frozen model has no full model attached")
            self._full = self._load_full()
        return self._full

    @property
    def devices(self) -> Any:
        return self.frozen.devices

    @property
    def training_domain(self) -> dict[str, Any] | None:
        return self.frozen.training_domain

    def predict_frame(self, queries: Any, **kwargs: Any) -> Any:
        """The task's outputs: the frozen model up to ``SMALL_BATCH_ROWS`` rows, the full one above."""
        if len(queries) <= tree_serving.SMALL_BATCH_ROWS and not kwargs:
            return self.frozen.predict_frame(queries)
        return self.full().predict_frame(queries, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # anything else (e.g. ``runtime`` for an adapted GEMM device) is the full model's
        if name.startswith("_") or name in ("task", "frozen", "format"):
            raise AttributeError(name)
        return getattr(self.full(), name)

    def __getstate__(self) -> dict[str, Any]:
        return {"task": self.task, "frozen": self.frozen, "format": self.format}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_full = None
        self._full = None


def _loaded_class(module: str, name: str) -> type | None:
    """Class ``name`` of ``module`` when that module is imported (an instance of it exists only then)."""
    return getattr(sys.modules.get(f"hwsurrogate.surrogates.models.{module}"), name, None)


def freeze(task: str, model: Any) -> FrozenServed | None:
    """The frozen form of ``task``'s served model, or None where it has none (another model class,
    a GNN, trees treelite cannot import exactly). Imports no model module itself: a model of one
    of the frozen kinds has its (scikit-learn) module imported already."""
    frozen: Any = None
    if task == "gemm" and type(model) is _loaded_class("gemm", "GemmPyfunc"):
        from hwsurrogate.surrogates.models.gemm_serving import FrozenGemm

        frozen = FrozenGemm.of(model)
    elif task in ("fpga-hls4ml", "fpga-hlsyn") and type(model) is _loaded_class("fpga", "FpgaPyfunc"):
        from hwsurrogate.surrogates.models.fpga_serving import FrozenFpga

        frozen = FrozenFpga.of(model)
    elif task == "latency":
        from hwsurrogate.surrogates.models.latency_serving import FrozenLatencyTrees
        from hwsurrogate.surrogates.registry.loading import LatencyModels

        trees = _loaded_class("latency_trees", "MultiDeviceLatencyTrees")
        models = getattr(model, "models", None)
        if type(model) is LatencyModels and models and all(type(m) is trees for m in models.values()):
            spaces = {space: FrozenLatencyTrees.of(m) for space, m in models.items()}
            if all(f is not None for f in spaces.values()):
                frozen = LatencyModels(spaces, model.kind)
    return None if frozen is None else FrozenServed(task, frozen)
