"""How the latency tree models answer, without scikit-learn: shared by the trained and the frozen models.

:class:`PerDeviceLatency` is :class:`~.latency_trees.MultiDeviceLatencyTrees`'s ``predict`` (features
of each architecture computed once, then one model per device); :func:`latency_ms` answers a batch of
``(device_id, space, arch_key)`` queries with one such model per space (the latency pyfunc and the
local served copy both call it). :class:`FrozenLatencyTrees` holds each device's trees as
:class:`~.tree_serving.FrozenTrees`: the served copy of ``hws predict latency`` answers with it
without importing scikit-learn, pandas or torch (:mod:`.frozen`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.surrogates.api import INPUTS
from hwsurrogate.surrogates.features import nas as graphs
from hwsurrogate.surrogates.models.tree_serving import FrozenTrees

__all__ = ["FrozenLatencyTrees", "PerDeviceLatency", "latency_frame", "latency_ms", "latency_training_domain"]


class PerDeviceLatency:
    """One latency model per device of one space; subclasses give :meth:`_log_latency` and ``devices``."""

    space: str

    @property
    def devices(self) -> list[str]:
        raise NotImplementedError

    def _log_latency(self, device: str, features: np.ndarray) -> np.ndarray:
        """``log(latency_ms)`` on ``device`` of ``arch_vectors`` rows."""
        raise NotImplementedError

    def predict(self, arch_keys: Sequence[str], device_ids: Sequence[str]) -> np.ndarray:
        """Latency in ms of ``arch_keys[i]`` on ``device_ids[i]`` (features computed once)."""
        devices = np.asarray(device_ids, dtype=object)
        unknown = sorted(set(devices.tolist()) - set(self.devices))
        if unknown:
            raise ValueError(f"unknown device_id {unknown[0]!r} for space {self.space!r}")
        out = np.empty(len(arch_keys), dtype=np.float64)
        if len(arch_keys) == 0:
            return out
        features = graphs.arch_vectors(self.space, list(arch_keys))
        for device in dict.fromkeys(devices.tolist()):
            rows = np.flatnonzero(devices == device)
            out[rows] = np.exp(self._log_latency(str(device), features[rows]))
        return out


def latency_training_domain(devices: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Device and space: the devices each space's model was fitted on (other queries are refused)."""
    regions: dict[str, dict[str, Any]] = {
        d: {"space": {"values": []}} for devs in devices.values() for d in devs
    }
    for space, devs in devices.items():
        for d in devs:
            regions[d]["space"]["values"].append(space)
    return {"task": "latency", "by": "device_id", "regions": dict(sorted(regions.items()))}


def latency_ms(models: Mapping[str, Any], queries: pl.DataFrame) -> np.ndarray:
    """``latency_ms`` per row of a frame of device_id, space, arch_key, by each space's model.

    A missing column, a null value, an unknown space or an unknown device raises ``ValueError``
    naming it.
    """
    missing = [c for c in INPUTS["latency"] if c not in queries.columns]
    if missing:
        raise ValueError(f"latency queries miss column(s) {missing}; need {list(INPUTS['latency'])}")
    cols: dict[str, np.ndarray] = {}
    for col in INPUTS["latency"]:
        s = queries.get_column(col)
        if s.null_count():
            raise ValueError(f"column {col!r} may not be null (row {int(s.is_null().arg_true()[0])})")
        cols[col] = (s if s.dtype == pl.String else s.cast(pl.String)).to_numpy()
    spaces, devices, keys = cols["space"], cols["device_id"], cols["arch_key"]
    out = np.full(len(spaces), np.nan)
    for space in dict.fromkeys(spaces.tolist()):
        if space not in models:
            raise ValueError(f"unknown space {space!r}; this model answers for {sorted(models)}")
        rows = np.flatnonzero(spaces == space)
        known = set(models[space].devices)
        for d in dict.fromkeys(devices[rows].tolist()):
            if d not in known:
                raise ValueError(
                    f"unknown device_id {d!r} for space {space!r}; known: {', '.join(sorted(known)[:8])}"
                    + (" ..." if len(known) > 8 else "")
                )
        out[rows] = models[space].predict(keys[rows].tolist(), devices[rows].tolist())
    return out


def latency_frame(models: Mapping[str, Any], queries: pl.DataFrame) -> pl.DataFrame:
    """:func:`latency_ms` as a one-column polars frame."""
    return pl.DataFrame({"latency_ms": latency_ms(models, queries)})


class FrozenLatencyTrees(PerDeviceLatency):
    """A fitted :class:`~.latency_trees.MultiDeviceLatencyTrees` as treelite checkpoints, one per device."""

    def __init__(self, space: str, trees: dict[str, FrozenTrees]) -> None:
        self.space = space
        self.trees = trees

    @classmethod
    def of(cls, model: Any) -> FrozenLatencyTrees | None:
        """The frozen form of a fitted MultiDeviceLatencyTrees, or None (another model, or trees treelite cannot import)."""
        fitted = getattr(model, "models_", None)
        if not isinstance(fitted, dict) or not fitted:
            return None
        trees = {}
        for device, regressor in fitted.items():
            frozen = FrozenTrees.of(getattr(regressor, "regressor_", None))
            if frozen is None:
                return None
            trees[str(device)] = frozen
        return cls(str(model.space), trees)

    @property
    def devices(self) -> list[str]:
        return list(self.trees)

    def _log_latency(self, device: str, features: np.ndarray) -> np.ndarray:
        return self.trees[device].predict(features)
